"""The micro-batch graph: one run = one offset range of one storage-topic partition.

    storage topic ─► read_batch ─┬─► publish_records ─► kafka/<state>, kafka/<image>
                                 ├─► write_postgres ──► postgres/dicom_*_meta
                                 ├─► write_doris ─────► doris/dicom_*_meta
                                 ├─► write_rejects ───► kafka/<dlq>, postgres/dicom_ingest_error
                                 └─► commit_offsets (after all of the above)

Each write is its own op, so "re-execute from failure" in the UI redoes only the
write that failed; ``read_batch``'s output is kept by the IO manager for that.
Run config holds only the offset range; everything else is read from Kafka.
"""

import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from dagster import (
    AssetIn,
    AssetKey,
    AssetOut,
    AssetSpec,
    Config,
    Failure,
    FreshnessPolicy,
    In,
    MetadataValue,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    TableColumn,
    TableRecord,
    TableSchema,
    graph_multi_asset,
    op,
)

from wado_pipeline.core import schema as S
from wado_pipeline.core.batch import GroupedBatch, group
from wado_pipeline.core.batching import OffsetRange
from wado_pipeline.core.dead_letter import dead_letter, payload_for_table
from wado_pipeline.core.parallel import process_records, shutdown_pool
from wado_pipeline.core.wire import encode_row, image_key, state_key
from wado_pipeline.resources.doris import DorisResource
from wado_pipeline.resources.ingest import IngestSettings
from wado_pipeline.resources.kafka import KafkaResource, OffsetRangeUnavailable, OutgoingMessage
from wado_pipeline.resources.postgres import PostgresResource
from wado_pipeline.settings import Settings

GROUP = "ingest"


class BatchConfig(Config):
    """The batch: a partition's offset range [start, end). No message content."""

    topic: str
    partition: int
    start: int
    end: int


@dataclass
class Batch:
    """What ``read_batch`` hands to the write ops."""

    range: OffsetRange
    grouped: GroupedBatch
    timings: dict[str, float] = field(default_factory=dict)


def asset_keys(settings: Settings) -> dict[str, AssetKey]:
    """Every asset key of the pipeline, named after where the data lives."""
    keys = {
        "storage": AssetKey(["kafka", settings.storage_topic]),
        "state_topic": AssetKey(["kafka", settings.state_topic]),
        "image_topic": AssetKey(["kafka", settings.image_topic]),
        "dlq_topic": AssetKey(["kafka", settings.dlq_topic]),
        "pg_errors": AssetKey(["postgres", S.INGEST_ERROR.name]),
        "group_offsets": AssetKey(["kafka", "consumer_groups", settings.consumer_group]),
    }
    for t in S.PIPELINE_TABLES:
        keys[f"pg_{t.name}"] = AssetKey(["postgres", t.name])
        keys[f"doris_{t.name}"] = AssetKey(["doris", t.name])
    return keys


_storage_pooled = False


def pool_dagster_storage(instance) -> None:
    """Keep one pooled connection to Dagster's PostgreSQL storage for this run worker.

    dagster-postgres opens a new connection for every event it stores (NullPool, to
    suit long-lived processes). A batch run stores ~120 events; measured here, the
    connection set-up alone (TLS + SCRAM, ~9 ms each) took 3.0 s of a 4.5 s run. A run
    worker is one short-lived process with one instance, so holding a connection is
    safe; this is the pooling Dagster itself applies in its webserver."""
    global _storage_pooled
    if not _storage_pooled:
        instance.optimize_for_webserver(statement_timeout=60_000, pool_recycle=3600, max_overflow=2)
        _storage_pooled = True


def _stage(batch: Batch, name: str, started: float) -> None:
    batch.timings[name] = round(time.perf_counter() - started, 4)


@op(ins={"storage": In(Nothing)}, out=Out(Batch))
def read_batch(
    context: OpExecutionContext, config: BatchConfig, kafka: KafkaResource, ingest: IngestSettings
) -> Batch:
    """Read exactly the configured offset range, parse every message, group the rows."""
    pool_dagster_storage(context.instance)
    rng = OffsetRange(config.topic, config.partition, config.start, config.end)
    t0 = time.perf_counter()
    try:
        records = kafka.read_range(rng.topic, rng.partition, rng.start, rng.end)
    except OffsetRangeUnavailable as exc:
        raise Failure(description=str(exc), allow_retries=False) from exc
    batch = Batch(rng, GroupedBatch())
    _stage(batch, "read_s", t0)
    t1 = time.perf_counter()
    try:
        batch.grouped = group(process_records(records, ingest.roots, ingest.parse_workers))
    finally:
        shutdown_pool()  # a run worker must not end with live pool processes
    _stage(batch, "parse_s", t1)
    g = batch.grouped
    if not g.reconciles:
        raise Failure(
            f"counts do not reconcile: {g.consumed} != {g.accepted} + {len(g.rejections)}"
        )
    context.log.info(
        f"{rng.run_key}: {g.consumed} consumed, {g.accepted} accepted, "
        f"{len(g.rejections)} rejected {g.rejects_by_reason()}, "
        f"{len(g.states)} series, {len(g.images)} instances"
    )
    return batch


def _table_rows(g: GroupedBatch) -> dict[str, list[dict]]:
    return {
        S.OBJECT_META.name: g.objects,
        S.STATE_META.name: g.states,
        S.IMAGE_META.name: g.images,
    }


def _common_metadata(batch: Batch) -> dict:
    g = batch.grouped
    return {
        "offset_range": f"{batch.range.topic}[{batch.range.partition}] "
        f"{batch.range.start}..{batch.range.end - 1}",
        "consumed": g.consumed,
        "accepted": g.accepted,
        "rejected": len(g.rejections),
        "rejects_by_reason": MetadataValue.json(g.rejects_by_reason()),
        "warnings_by_column": MetadataValue.json(dict(g.warnings)),
    }


@op(out={"state": Out(Nothing), "image": Out(Nothing)})
def publish_records(
    context: OpExecutionContext, batch: Batch, kafka: KafkaResource, ingest: IngestSettings
):
    """State records (keyed by series) and image records (keyed by SOP instance)."""
    t0 = time.perf_counter()
    g = batch.grouped
    n_state = kafka.publish(
        ingest.state_topic, [OutgoingMessage(state_key(r), encode_row(r)) for r in g.states]
    )
    n_image = kafka.publish(
        ingest.image_topic, [OutgoingMessage(image_key(r), encode_row(r)) for r in g.images]
    )
    elapsed = round(time.perf_counter() - t0, 4)
    meta = _common_metadata(batch)
    yield Output(None, "state", metadata={**meta, "messages": n_state, "publish_s": elapsed})
    yield Output(None, "image", metadata={**meta, "messages": n_image, "publish_s": elapsed})


# Columns shown in the UI's preview of a batch: no names, birth dates or IDs of patients.
PREVIEW_COLUMNS = {
    S.OBJECT_META.name: (
        "trace_id",
        "tenant_id",
        "transfer_syntax_uid",
        "file_size",
        "number_of_frames",
        "transfer_status",
        "created_time",
    ),
    S.STATE_META.name: (
        "tenant_id",
        "modality",
        "series_number",
        "body_part_examined",
        "series_related_instances",
        "updated_time",
    ),
    S.IMAGE_META.name: (
        "tenant_id",
        "instance_number",
        "width",
        "columns",
        "bits_stored",
        "photometric_interpretation",
        "transfer_syntax_uid",
        "updated_time",
    ),
}
PREVIEW_ROWS = 5


def preview(table: str, rows: list[dict]) -> MetadataValue:
    """A few rows of the batch, safe columns only, as a table for the UI."""
    cols = PREVIEW_COLUMNS[table]
    return MetadataValue.table(
        records=[
            TableRecord({c: None if r.get(c) is None else str(r[c]) for c in cols})
            for r in rows[:PREVIEW_ROWS]
        ],
        schema=TableSchema(columns=[TableColumn(c, "string") for c in cols]),
    )


def _write_outputs(batch: Batch, counts: dict[str, int], elapsed: float):
    meta = _common_metadata(batch)
    rows = _table_rows(batch.grouped)
    for t in S.PIPELINE_TABLES:
        yield Output(
            None,
            t.name,
            metadata={
                **meta,
                "rows_upserted": counts.get(t.name, 0),
                "write_s": elapsed,
                "preview": preview(t.name, rows[t.name]),
            },
        )


_TABLE_OUTS = {t.name: Out(Nothing) for t in S.PIPELINE_TABLES}


@op(out=_TABLE_OUTS)
def write_postgres(context: OpExecutionContext, batch: Batch, postgres: PostgresResource):
    """Upsert the three index tables in one PostgreSQL transaction."""
    t0 = time.perf_counter()
    postgres.ensure_tables()
    counts = postgres.write_batch(_table_rows(batch.grouped))
    yield from _write_outputs(batch, counts, round(time.perf_counter() - t0, 4))


@op(out=_TABLE_OUTS)
def write_doris(context: OpExecutionContext, batch: Batch, doris: DorisResource):
    """Upsert the same three tables into Doris (or its MariaDB stand-in)."""
    t0 = time.perf_counter()
    doris.ensure_tables()
    rows = _table_rows(batch.grouped)
    if doris.load_mode == "stream_load":
        rng = batch.range
        results = doris.stream_load_batch(rows, rng.topic, rng.partition, rng.start, rng.end)
        for name, r in results.items():
            context.log.info(f"Stream Load {name}: {r.outcome} ({r.status}), label {r.label}")
        counts = {name: len(r) for name, r in rows.items()}
    else:
        counts = doris.write_batch(rows)
    yield from _write_outputs(batch, counts, round(time.perf_counter() - t0, 4))


@op(out={"dlq": Out(Nothing), "errors": Out(Nothing)})
def write_rejects(
    context: OpExecutionContext,
    batch: Batch,
    kafka: KafkaResource,
    postgres: PostgresResource,
    ingest: IngestSettings,
):
    """Rejected messages: the original value to the dead-letter topic (reason, source
    partition and offset in headers) and a row in ``dicom_ingest_error`` that keeps the
    full original value, even when the dead letter had to be cut to fit its topic."""
    g, rng = batch.grouped, batch.range
    letters = [dead_letter(r, rng.topic, context.run_id) for r in g.rejections]
    n, cut = kafka.publish_dead_letters(ingest.dlq_topic, letters)
    if cut:
        context.log.warning(f"{cut} dead letter(s) cut to fit {ingest.dlq_topic}")
    now = datetime.now().replace(tzinfo=None)
    rows = []
    for r in g.rejections:
        payload, encoding = payload_for_table(r.payload)
        rows.append(
            {
                "topic": rng.topic,
                "partition": r.partition,
                "offset": r.offset,
                "reason": str(r.reason),
                "detail": r.detail,
                "trace_id": r.trace_id,
                "run_id": context.run_id,
                "payload": payload,
                "payload_encoding": encoding,
                "created_time": now,
            }
        )
    if rows:
        postgres.ensure_tables()
        postgres.write_batch({S.INGEST_ERROR.name: rows})
    by_reason = dict(Counter(str(r.reason) for r in g.rejections))
    meta = {"rejected": n, "rejects_by_reason": MetadataValue.json(by_reason)}
    yield Output(None, "dlq", metadata={**meta, "dead_letters_cut": cut})
    yield Output(None, "errors", metadata=meta)


@op(
    ins={
        "published": In(Nothing),
        "postgres": In(Nothing),
        "doris": In(Nothing),
        "rejects": In(Nothing),
    },
    out=Out(Nothing),
)
def commit_offsets(
    context: OpExecutionContext, batch: Batch, kafka: KafkaResource, ingest: IngestSettings
):
    """After every write succeeded: record the range as processed. The group's offset
    moves only over a contiguous prefix of processed ranges (``core.progress``), so a
    failed earlier batch holds it and Kafka tools show the lag."""
    rng = batch.range
    progress = kafka.commit_processed(
        ingest.consumer_group, rng.topic, rng.partition, rng.start, rng.end
    )
    held = progress.committed < rng.end
    context.log.info(
        f"group {ingest.consumer_group} at {rng.topic}[{rng.partition}]={progress.committed}"
        + (f" (held by unprocessed offsets below {rng.start})" if held else "")
        + f"; stage times {batch.timings}"
    )
    yield Output(
        None,
        metadata={
            # peak memory of this run worker and of its parsing pool (for the benchmark)
            "worker_peak_rss_mb": round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
            ),
            "pool_peak_rss_mb": round(
                resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
            ),
            "topic": rng.topic,
            "partition": rng.partition,
            "committed_offset": progress.committed,
            "held_below_range": held,
            **{k: v for k, v in batch.timings.items()},
        },
    )


def build_ingest_assets(settings: Settings):
    """The storage topic (external) and the graph-backed multi-asset of one batch."""
    keys = asset_keys(settings)
    storage = AssetSpec(
        keys["storage"],
        description="Store messages published by the DICOM receiver (one per stored file).",
        kinds={"kafka"},
        group_name=GROUP,
    )
    outs = {
        "state_topic": AssetOut(key=keys["state_topic"], kinds={"kafka"}, dagster_type=Nothing),
        "image_topic": AssetOut(key=keys["image_topic"], kinds={"kafka"}, dagster_type=Nothing),
        "dlq_topic": AssetOut(key=keys["dlq_topic"], kinds={"kafka"}, dagster_type=Nothing),
        "pg_errors": AssetOut(key=keys["pg_errors"], kinds={"postgres"}, dagster_type=Nothing),
        "group_offsets": AssetOut(
            key=keys["group_offsets"],
            kinds={"kafka"},
            dagster_type=Nothing,
            description="The consumer group's committed offsets, advanced after every write "
            "of a batch succeeded (what Kafka tools read the lag from).",
        ),
    }
    # Fresh while batches keep landing; stale when nothing was written for a while
    # (no traffic, or the pipeline is stuck: the UI and freshness checks tell which).
    freshness = FreshnessPolicy.time_window(
        fail_window=timedelta(seconds=settings.freshness_fail_seconds),
        warn_window=timedelta(seconds=settings.freshness_warn_seconds),
    )
    for t in S.PIPELINE_TABLES:
        for prefix, kind in (("pg", "postgres"), ("doris", "doris")):
            outs[f"{prefix}_{t.name}"] = AssetOut(
                key=keys[f"{prefix}_{t.name}"],
                kinds={kind},
                dagster_type=Nothing,
                description=f"{t.name} in {kind.capitalize()}, upserted by every batch.",
            )

    @graph_multi_asset(
        name="ingest_batch",
        outs=outs,
        ins={"storage": AssetIn(key=keys["storage"], dagster_type=Nothing)},
        group_name=GROUP,
    )
    def ingest_batch(storage):
        batch = read_batch(storage)
        state, image = publish_records(batch)
        pg = write_postgres(batch)
        dr = write_doris(batch)
        dlq, errors = write_rejects(batch)
        committed = commit_offsets(
            batch,
            published=[state, image],
            postgres=list(pg),
            doris=list(dr),
            rejects=[dlq, errors],
        )
        result = {
            "state_topic": state,
            "image_topic": image,
            "dlq_topic": dlq,
            "pg_errors": errors,
            "group_offsets": committed,
        }
        for t, o in zip(S.PIPELINE_TABLES, pg, strict=True):
            result[f"pg_{t.name}"] = o
        for t, o in zip(S.PIPELINE_TABLES, dr, strict=True):
            result[f"doris_{t.name}"] = o
        return result

    # graph_multi_asset does not carry AssetOut.freshness_policy over (Dagster 1.13),
    # so the policy is set on the specs afterwards.
    tables = {keys[f"{p}_{t.name}"] for t in S.PIPELINE_TABLES for p in ("pg", "doris")}
    ingest_batch = ingest_batch.map_asset_specs(
        lambda spec: (
            spec.replace_attributes(freshness_policy=freshness) if spec.key in tables else spec
        )
    )
    return storage, ingest_batch
