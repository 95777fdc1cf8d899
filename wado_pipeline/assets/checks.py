"""Asset checks: the storage topic's data-loss check, and the checks of every batch.

The batch checks verify the written tables independently of the code that wrote them:
they read the batches' offset ranges from Kafka again, take the keys of every message
the error table does not list as rejected, and look those keys up in PostgreSQL and
Doris.

They run in their own job (``verify_batches``, launched by a schedule once a minute when
batches landed), over every range that succeeded since the last verification, not as a
step of each batch run. In the batch run they cost 0.5-2 s of re-reading Kafka on the
path to the next batch, and seven checks' events and execution rows in Dagster's
storage per run; verified together, they cost that once a minute (docs/sizing.md).
"""

from collections import Counter

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    RunsFilter,
    asset_check,
    multi_asset_check,
)

from wado_pipeline.assets import batch_steps
from wado_pipeline.core import schema as S
from wado_pipeline.core.message import parse_store_message
from wado_pipeline.core.planning import OffsetRange, merge_ranges, unprocessed_ranges
from wado_pipeline.core.progress import PartitionProgress
from wado_pipeline.core.rejection import Rejected
from wado_pipeline.core.run_contract import (
    DORIS,
    LOST_CHECK,
    PARTITION_TAG,
    POSTGRES,
    TABLE_SINKS,
    UNPROCESSED_CHECK,
    VERIFIED_TAG,
    Sink,
    partition_tag,
    range_from_tags,
)
from wado_pipeline.resources.dagster_instance.dagster_runs import (
    IN_FLIGHT,
    failed_runs_by_range,
    ranges_to_verify,
    verified_through,
)
from wado_pipeline.resources.doris import DorisBackend
from wado_pipeline.resources.ingest_settings import IngestSettings
from wado_pipeline.resources.kafka import KafkaResource
from wado_pipeline.resources.postgres import PostgresResource
from wado_pipeline.resources.sql import queries

BATCH_KEYS = "batch_keys"
REJECTS = "batch_rejects"
# Runs one verification covers at most (the rest: the next one, a minute later).
VERIFY_MAX_RUNS = 500


def build_storage_checks(storage_key: AssetKey, job_name: str):
    """The storage topic's checks: ``no_offsets_lost`` and ``no_failed_batches``."""
    return [_lost_check(storage_key), _unprocessed_check(storage_key, job_name)]


def _lost_check(storage_key: AssetKey):
    @asset_check(
        asset=storage_key,
        name=LOST_CHECK,
        description=(
            "Fails when messages expired from the storage topic before the pipeline "
            "processed them. The sensor reports each lost range when it sees one; run "
            "by hand, this compares the consumer group's committed offsets with the "
            "first offsets Kafka still holds."
        ),
    )
    def no_offsets_lost(kafka: KafkaResource, ingest: IngestSettings) -> AssetCheckResult:
        topic = ingest.storage_topic
        offsets, progress = kafka.topic_progress(ingest.consumer_group, topic) or ([], {})
        committed = {p: g.committed for p, g in progress.items()}
        lost = {
            str(o.partition): f"{committed[o.partition]}..{o.beginning - 1}"
            for o in offsets
            if o.partition in committed and committed[o.partition] < o.beginning
        }
        return AssetCheckResult(
            passed=not lost,
            severity=AssetCheckSeverity.ERROR,
            metadata={"lost_ranges": lost or "none"},
        )

    return no_offsets_lost


def _unprocessed_check(storage_key: AssetKey, job_name: str):
    @asset_check(
        asset=storage_key,
        name=UNPROCESSED_CHECK,
        description=(
            "Fails while a range of the storage topic was handed to a run and is neither "
            "processed nor in flight (its run failed and retries are spent, or its worker "
            "died); names the range and the failed run. The consumer group's offset stays "
            "below such a range, so Kafka tools show the lag. The sensor reports changes "
            "as they happen and relaunches the range with backoff; run by hand, this "
            "compares recent failed runs with the group's progress."
        ),
    )
    def no_failed_batches(
        context: AssetCheckExecutionContext, kafka: KafkaResource, ingest: IngestSettings
    ) -> AssetCheckResult:
        topic = ingest.storage_topic
        offsets, progress = kafka.topic_progress(ingest.consumer_group, topic) or ([], {})
        instance = context.instance
        unprocessed = {}
        for o in offsets:
            ptag = partition_tag(topic, o.partition)
            done = progress.get(o.partition, PartitionProgress(o.beginning))
            inflight = instance.get_runs(
                RunsFilter(job_name=job_name, statuses=IN_FLIGHT, tags={PARTITION_TAG: ptag})
            )
            covered = [r for r in (range_from_tags(x.tags) for x in inflight) if r is not None]
            for (start, end), run_id in failed_runs_by_range(instance, job_name, ptag).items():
                gaps = [
                    (max(s, start), min(e, end))
                    for s, e in unprocessed_ranges(done, end, covered)
                    if s < end and start < e
                ]
                for s, e in gaps:
                    unprocessed[OffsetRange(topic, o.partition, s, e)] = run_id
        return AssetCheckResult(
            passed=not unprocessed,
            severity=AssetCheckSeverity.ERROR,
            description="\n".join(
                f"{rng.described} unprocessed (failed run {run_id})"
                for rng, run_id in sorted(unprocessed.items(), key=lambda kv: str(kv[0]))
            )
            or "every range of a failed run was processed since",
            metadata={
                "unprocessed_ranges": sorted(
                    f"{r.partition}:{r.start}-{r.end}" for r in unprocessed
                )
                or "none"
            },
        )

    return no_failed_batches


def _expected_keys(records, rejected: set[tuple[int, int]]) -> dict[str, list[tuple]]:
    """Keys the tables must hold for ``records``; ``rejected``: (partition, offset)."""
    keys: dict[str, set[tuple]] = {t.name: set() for t in S.PIPELINE_TABLES}
    for r in records:
        try:
            m = parse_store_message(r.value)
        except Rejected:
            continue  # then it must be in the error table; counted by the caller
        keys[S.OBJECT_META.name].add((m.trace_id,))  # a receipt, even when its file failed
        if (r.partition, r.offset) in rejected:
            continue
        keys[S.STATE_META.name].add((m.tenant_id, m.study_uid, m.series_uid))
        keys[S.IMAGE_META.name].add((m.tenant_id, m.study_uid, m.series_uid, m.sop_uid))
    return {name: sorted(k) for name, k in keys.items()}


def _batch_check_specs(keys: dict[str, AssetKey]) -> list[AssetCheckSpec]:
    # One check per table and batch, not one per property: each check costs Dagster
    # three stored events and a check-execution row per run (docs/sizing.md).
    specs = [
        AssetCheckSpec(
            BATCH_KEYS,
            asset=keys[sink.output(t.name)],
            description="Every key of the batch's accepted messages is in the table, no row "
            "of the batch has a NULL in a (Doris) key column"
            + (", and no key is stored twice." if sink is POSTGRES else "."),
        )
        for t in S.PIPELINE_TABLES
        for sink in TABLE_SINKS
    ]
    specs.append(
        AssetCheckSpec(
            REJECTS,
            asset=keys["pg_errors"],
            description="Messages of the batch rejected with a reason (warning).",
        )
    )
    return specs


def _ranges_text(ranges: list[OffsetRange]) -> str:
    text = "; ".join(str(r) for r in ranges)
    if len(text) > 500:
        text = text[:480] + f" … ({len(ranges)} ranges)"
    return text or "none since the last verification"


def _read_batches(kafka: KafkaResource, postgres: PostgresResource, ranges: list[OffsetRange]):
    """The ranges' records (what retention left of them) and their rejections."""
    records, rejected = [], {}
    err = postgres.tables[S.INGEST_ERROR.name]
    for rng in ranges:
        records.extend(batch_steps.read_readable(kafka, rng)[0])
        with postgres.engine.connect() as conn:
            found = queries.rejections_in(conn, err, rng.topic, rng.partition, rng.start, rng.end)
        rejected.update({(rng.partition, offset): reason for offset, reason in found})
    return records, rejected


def _key_results(sink: Sink, res, tables, keys, expected, context_counts):
    """``batch_keys`` of one sink's selected tables."""
    with res.engine.connect() as conn:
        for t in tables:
            want = expected[t.name]
            found = queries.key_counts(conn, t, res.tables[t.name], want)
            counts = {
                **context_counts,
                "expected_keys": len(want),
                "found_keys": found.found,
                "rows_with_null_keys": found.null_key_rows,
            }
            if sink is POSTGRES:  # Doris' unique key model cannot hold duplicates
                counts["duplicate_keys"] = found.duplicate_keys
            yield AssetCheckResult(
                asset_key=keys[sink.output(t.name)],
                check_name=BATCH_KEYS,
                passed=counts["found_keys"] == len(want)
                and counts["rows_with_null_keys"] == 0
                and not counts.get("duplicate_keys"),
                metadata=counts,
            )


def _rejects_result(key: AssetKey, rejected: dict, context_counts) -> AssetCheckResult:
    return AssetCheckResult(
        asset_key=key,
        check_name=REJECTS,
        passed=not rejected,
        severity=AssetCheckSeverity.WARN,
        metadata={
            **context_counts,
            "rejected": len(rejected),
            "rejects_by_reason": dict(Counter(rejected.values())) or "none",
        },
    )


def build_batch_checks(keys: dict[str, AssetKey]):
    """One multi-asset check op over the batches written since the last verification.

    It records how far it got in its run's ``wado/verified_through`` tag, the next one
    starts there. When a key is missing it does not move on: the next verification
    covers the same runs again, so the check stays failed until the rows are there
    (a sink rebuild), not until the next good batch."""
    specs = _batch_check_specs(keys)

    # can_subset: a run that rebuilds some sinks runs only their checks.
    @multi_asset_check(specs=specs, name="batch_checks", can_subset=True)
    def batch_checks(
        context: AssetCheckExecutionContext,
        kafka: KafkaResource,
        postgres: PostgresResource,
        doris: DorisBackend,
        ingest: IngestSettings,
    ):
        selected = context.selected_asset_check_keys
        chosen = {k.asset_key for k in selected}
        instance = context.instance
        since = verified_through(instance)
        spans, n_runs, newest = ranges_to_verify(
            instance, since, ingest.storage_topic, VERIFY_MAX_RUNS
        )
        ranges = merge_ranges(spans)
        records, rejected = _read_batches(kafka, postgres, ranges)
        expected = _expected_keys(records, set(rejected))
        counts = {"runs_verified": n_runs, "offset_ranges": _ranges_text(ranges)}
        results = []
        for sink, res in ((POSTGRES, postgres), (DORIS, doris)):
            mine = [t for t in S.PIPELINE_TABLES if keys[sink.output(t.name)] in chosen]
            if mine:
                results.extend(_key_results(sink, res, mine, keys, expected, counts))
        if keys["pg_errors"] in chosen:
            results.append(_rejects_result(keys["pg_errors"], rejected, counts))
        keys_missing = False
        for r in results:
            if AssetCheckKey(r.asset_key, r.check_name) in selected:
                keys_missing |= r.check_name == BATCH_KEYS and not r.passed
                yield r
        # A verification of only some checks (chosen in the UI) does not move the mark.
        moved = newest if len(selected) == len(specs) and not keys_missing else since
        instance.add_run_tags(context.run.run_id, {VERIFIED_TAG: repr(moved)})

    return [batch_checks]
