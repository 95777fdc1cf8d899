"""The ops of one batch: each calls its step (``steps``) and reports to Dagster.

    read_batch ──► write_postgres ──► postgres/dicom_*_meta (first: rows visible soonest),
                     │                postgres/dicom_ingest_error (rejects, if any)
                     ├─► publish_records ─► kafka/<state>, kafka/<image>, kafka/<dlq> (if any)
                     └─► write_doris ─────► doris/dicom_*_meta (routine_load: after publish)
                           └─► commit_offsets (after all of the above)

Each system is written by its own op, so "re-execute from failure" in the UI redoes only
the writes that failed; ``read_batch``'s output is kept by the IO manager for that. The
rejects go with the system they land in (no op of their own: every op is stored events
in every run, docs/sizing.md), and their assets materialize only in a batch that had
rejects.
"""

import resource
import time
from typing import Optional

from dagster import (
    Config,
    Failure,
    In,
    MetadataValue,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    op,
)

from wado_pipeline.assets import batch_steps
from wado_pipeline.assets.batch_steps import Batch
from wado_pipeline.assets.config_fields import optional
from wado_pipeline.assets.keys import topic_key
from wado_pipeline.assets.metadata import batch_metadata, table_metadata
from wado_pipeline.core import schema as S
from wado_pipeline.core.dicom.parallel import shutdown_pool
from wado_pipeline.core.planning import OffsetRange, claim_past, pending_ranges
from wado_pipeline.core.progress import PartitionProgress
from wado_pipeline.core.run_contract import (
    PENDING_TAG,
    READ_OP,
    pending_tag,
    ranges_from_pending_tag,
)
from wado_pipeline.dagster_internals import PARENT_RUN_ID_TAG
from wado_pipeline.instance.storage_pool import pool_dagster_storage
from wado_pipeline.resources.dagster_instance.dagster_runs import (
    claimed_ranges,
    launched_without_range,
    sensor_cursor,
    sensor_running,
)
from wado_pipeline.resources.doris import DorisBackend
from wado_pipeline.resources.ingest_settings import IngestSettings
from wado_pipeline.resources.kafka import (
    CodecUnavailable,
    KafkaResource,
    OffsetRangeUnavailable,
)
from wado_pipeline.resources.lost_offsets import lost_offsets_evaluation
from wado_pipeline.resources.postgres import PostgresResource
from wado_pipeline.resources.sql.backend import SqlBackend, TablesNotReady

TABLE_OUTS = {t.name: Out(Nothing) for t in S.PIPELINE_TABLES}


_TOPIC = (
    "Storage topic to read (WADO_STORAGE_TOPIC). Leave out, with the other three, to process "
    "what is pending in every partition."
)
_PARTITION = (
    "Partition of the storage topic (0-based). A run's tags `wado/partition` and "
    "`wado/offsets` name the range of a batch you want to run again."
)
_END = (
    "End offset of the batch (exclusive). `wado-pipeline lag` shows each partition's end and "
    "committed offsets."
)


class BatchConfig(Config):
    """The batch: a partition's offset range [start, end). No message content.

    Leave all four fields out ("Materialize all" in the UI) to process what is pending
    in every partition now, up to the batch cap per partition; the run records the
    ranges it took in its ``wado/pending`` tag and its metadata, and a re-execution
    replays exactly those ranges."""

    # Optional[...], not X | None: see config_fields.optional
    topic: Optional[str] = optional(_TOPIC)  # noqa: UP045
    partition: Optional[int] = optional(_PARTITION)  # noqa: UP045
    start: Optional[int] = optional("First offset of the batch (inclusive).")  # noqa: UP045
    end: Optional[int] = optional(_END)  # noqa: UP045


def _configured_range(config: BatchConfig) -> OffsetRange | None:
    values = (config.topic, config.partition, config.start, config.end)
    if all(v is None for v in values):
        return None
    if any(v is None for v in values):
        raise Failure(
            description="Give all four of topic, partition, start and end, or none of them "
            "(none: process what is pending in every partition now).",
            allow_retries=False,
        )
    return OffsetRange(config.topic, config.partition, config.start, config.end)


SENSOR_SYNC_SECONDS = 30.0


def _left_out(context: OpExecutionContext) -> set:
    """The batch's assets this run does not write (empty: every sink is selected)."""
    every = set(context.assets_def.node_keys_by_output_name.values())
    return every - context.selected_asset_keys


def _resolve_pending(
    context: OpExecutionContext, kafka: KafkaResource, ingest: IngestSettings
) -> list[OffsetRange]:
    """The ranges of a run launched without one: what is pending per partition now.

    Only the sensor hands out offsets: while it runs, it writes this run's ranges into
    the run's ``wado/pending`` tag at its next tick, and the run waits for that tag (its
    own record). A re-execution takes its parent's ranges. With the sensor stopped (or
    silent for ``SENSOR_SYNC_SECONDS``: no daemon), the run takes what is pending past
    the sensor's cursor, other such runs' claims and the group's progress, and records
    it in the same tag, which the sensor skips once it runs again."""
    instance, topic = context.instance, ingest.storage_topic
    stored = instance.get_run_by_id(context.run_id) or context.run
    tags = stored.tags
    if PENDING_TAG in tags:  # assigned already, or a re-execution that copied the tag
        return ranges_from_pending_tag(topic, tags[PENDING_TAG])
    parent_id = stored.parent_run_id or tags.get(PARENT_RUN_ID_TAG)
    parent = instance.get_run_by_id(parent_id) if parent_id else None
    if parent is not None and PENDING_TAG in parent.tags:  # a re-execution: the same ranges
        instance.add_run_tags(context.run_id, {PENDING_TAG: parent.tags[PENDING_TAG]})
        return ranges_from_pending_tag(topic, parent.tags[PENDING_TAG])
    if sensor_running(instance):
        assigned = _await_assignment(instance, context.run_id)
        if assigned is not None:
            return ranges_from_pending_tag(topic, assigned)
        context.log.warning(
            f"the sensor assigned no range within {SENSOR_SYNC_SECONDS:g} s (is the daemon "
            "running?); taking what is pending past its cursor"
        )
    ranges = _pending_past_the_sensor(instance, kafka, ingest, context.run_id)
    instance.add_run_tags(context.run_id, {PENDING_TAG: pending_tag(ranges)})
    return ranges


def _await_assignment(instance, run_id: str) -> str | None:
    """This run's ``wado/pending`` tag once the sensor has written it, or None after
    ``SENSOR_SYNC_SECONDS``."""
    deadline = time.monotonic() + SENSOR_SYNC_SECONDS
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if run is not None and PENDING_TAG in run.tags:
            return run.tags[PENDING_TAG]
        time.sleep(0.5)
    return None


def _pending_past_the_sensor(
    instance, kafka: KafkaResource, ingest: IngestSettings, run_id: str
) -> list[OffsetRange]:
    """What is pending per partition past the sensor's cursor (or the group's offset),
    other such runs' claims and what is processed, up to the batch cap each."""
    topic = ingest.storage_topic
    found = kafka.topic_progress(ingest.consumer_group, topic)
    if found is None:
        raise Failure(description=f"topic {topic} does not exist", allow_retries=False)
    offsets, progress = found
    cursor = sensor_cursor(instance, topic)
    others = claimed_ranges(
        [r for r in launched_without_range(instance) if r.run_id != run_id], topic
    )
    starts = {}
    for o in offsets:
        p = o.partition
        done = progress.get(p, PartitionProgress(o.beginning))
        state = cursor.partitions.get(p) if cursor else None
        start = state.next if state else done.committed
        taken = [*others.get(p, []), *done.done, (0, done.committed)]
        starts[p] = claim_past(start, taken)
    bounds = {o.partition: (o.beginning, o.end) for o in offsets}
    return pending_ranges(topic, bounds, starts, ingest.max_batch_messages)


@op(name=READ_OP, ins={"storage": In(Nothing)}, out=Out(Batch))
def read_batch(
    context: OpExecutionContext, config: BatchConfig, kafka: KafkaResource, ingest: IngestSettings
) -> Batch:
    """Read exactly the configured offset range (or, without one, what is pending in
    every partition), parse every message, group the rows."""
    pool_dagster_storage(context.instance)
    rng = _configured_range(config)
    if rng is None and _left_out(context):
        # "What is pending" belongs to runs that write every sink: a partial run would
        # take offsets from the sensor that the sinks it leaves out never get.
        raise Failure(
            description="A run that writes only some sinks needs an offset range (topic, "
            "partition, start, end); to refill a sink over a span, use the rebuild_sink "
            "job or `wado-pipeline rebuild`.",
            allow_retries=False,
        )
    # The publish step's producer connects while the batch is read.
    kafka.warm_up_publishing(
        [
            t
            for t in (ingest.state_topic, ingest.image_topic)
            if topic_key(t) in context.selected_asset_keys
        ]
    )
    ranges = [rng] if rng is not None else _resolve_pending(context, kafka, ingest)
    try:
        batch = batch_steps.read_ranges(
            kafka, ranges, ingest.roots, ingest.parse_workers, ingest.transcoding
        )
    except (OffsetRangeUnavailable, CodecUnavailable) as exc:
        # Neither heals by retrying the run; the range stays a hole the sensor relaunches.
        raise Failure(description=str(exc), allow_retries=False) from exc
    except batch_steps.CountsDoNotReconcile as exc:
        raise Failure(description=str(exc)) from exc
    finally:
        shutdown_pool()  # a run worker must not end with live pool processes
    for lost in batch.lost:
        _report_lost(context, lost)
    g = batch.grouped
    context.log.info(
        f"{batch.describe() or 'nothing pending'}: {g.consumed} consumed, {g.accepted} "
        f"accepted, {len(g.rejections)} rejected {g.rejects_by_reason()}, "
        f"{len(g.states)} series, {len(g.images)} instances"
    )
    return batch


def _report_lost(context: OpExecutionContext, lost: OffsetRange) -> None:
    """Offsets of the batch that expired from Kafka before they were read: the storage
    topic's ``no_offsets_lost`` check fails, as when the sensor finds such offsets."""
    event = lost_offsets_evaluation(
        topic_key(lost.topic), lost, "; the rest of the batch is processed"
    )
    context.log.warning(event.description)
    context.log_event(event)


@op(
    ins={"after": In(Nothing)},
    out={
        "state": Out(Nothing),
        "image": Out(Nothing),
        "dlq": Out(Nothing, is_required=False),
    },
)
def publish_records(
    context: OpExecutionContext, batch: Batch, kafka: KafkaResource, ingest: IngestSettings
):
    """State records (keyed by series) and image records (keyed by SOP instance), to the
    topics whose assets the run selected; rejected messages to the dead-letter topic
    (reason, source partition and offset in headers; cut to fit a site's topic)."""
    selected = context.selected_output_names
    t0 = time.perf_counter()
    n_state, n_image = batch_steps.publish(
        kafka,
        batch,
        ingest.state_topic if "state" in selected else None,
        ingest.image_topic if "image" in selected else None,
    )
    elapsed = round(time.perf_counter() - t0, 4)
    span = batch.describe() or "nothing pending"
    for name, n in (("state", n_state), ("image", n_image)):
        if name in selected:
            meta = {"offset_range": span, "messages": n, "publish_s": elapsed}
            yield Output(None, name, metadata=meta)
    if "dlq" in selected and batch.grouped.rejections:
        masked = ingest.dead_letter_payload == "masked"
        n, cut = batch_steps.publish_dead_letters(
            kafka, batch, ingest.dlq_topic, context.run_id, mask=masked
        )
        if cut:
            context.log.warning(f"{cut} dead letter(s) cut to fit {ingest.dlq_topic}")
        meta = {**_rejects_metadata(batch), "dead_letters": n, "dead_letters_cut": cut}
        yield Output(None, "dlq", metadata=meta)


def _rejects_metadata(batch: Batch) -> dict:
    g = batch.grouped
    return {
        "rejected": len(g.rejections),
        "rejects_by_reason": MetadataValue.json(g.rejects_by_reason()),
    }


def _check(backend: SqlBackend) -> None:
    """The run's tables exist and match (catalog only: runs need DML, never DDL)."""
    try:
        backend.check_tables()
    except TablesNotReady as exc:
        raise Failure(description=str(exc), allow_retries=False) from exc


def _write_tables(
    context: OpExecutionContext,
    batch: Batch,
    backend: SqlBackend,
    with_preview: bool = False,
    extra: dict | None = None,
):
    """Write the tables whose assets the run selected (all of them in the sensor's runs;
    one or a few when a data team rebuilds a sink from the UI), and ``extra`` rows
    (table name -> rows) in the same transaction."""
    selected = context.selected_output_names
    t0 = time.perf_counter()
    _check(backend)
    rows = {name: r for name, r in batch.table_rows().items() if name in selected}
    counts = backend.write_batch({**rows, **(extra or {})}, batch.label_range)
    elapsed = round(time.perf_counter() - t0, 4)
    for t in S.PIPELINE_TABLES:
        if t.name in selected:
            meta = table_metadata(batch, t.name, counts[t.name], elapsed, with_preview)
            yield Output(None, t.name, metadata={**meta, **backend.write_metadata(t.name)})


@op(out={**TABLE_OUTS, "errors": Out(Nothing, is_required=False)})
def write_postgres(context: OpExecutionContext, batch: Batch, postgres: PostgresResource):
    """Upsert the three index tables, and the batch's rejected messages into
    ``dicom_ingest_error`` (each with its full original value), in one transaction."""
    errors = "errors" in context.selected_output_names and bool(batch.grouped.rejections)
    extra = {S.INGEST_ERROR.name: batch_steps.error_rows(batch, context.run_id)} if errors else None
    yield from _write_tables(context, batch, postgres, with_preview=True, extra=extra)
    if errors:
        yield Output(None, "errors", metadata=_rejects_metadata(batch))


@op(ins={"after": In(Nothing)}, out=TABLE_OUTS)
def write_doris(context: OpExecutionContext, batch: Batch, doris: DorisBackend):
    """Upsert the same three tables into Doris (or its MariaDB stand-in); in
    ``routine_load`` mode, await the published keys there instead (hence after
    ``publish_records``)."""
    yield from _write_tables(context, batch, doris)


@op(
    ins={
        "published": In(Nothing),
        "postgres": In(Nothing),
        "doris": In(Nothing),
    },
    out=Out(Nothing),
)
def commit_offsets(
    context: OpExecutionContext,
    batch: Batch,
    kafka: KafkaResource,
    postgres: PostgresResource,
    ingest: IngestSettings,
):
    """After every write succeeded: record the range as processed. The group's offset
    moves only over a contiguous prefix of processed ranges (``core.progress``), so a
    failed earlier batch holds it and Kafka tools show the lag."""
    sinks = _left_out(context)
    if sinks:
        # A partial run (a sink rebuilt from the UI) must never move the group: the
        # offsets it passed would be skipped by the sinks it did not write.
        raise Failure(
            description="group_offsets moves only in a run that writes every sink; this run "
            f"leaves out {', '.join(sorted(k.to_user_string() for k in sinks))}. Deselect "
            "group_offsets to rebuild some sinks, or select every asset of ingest_batch.",
            allow_retries=False,
        )
    committed = {}
    for rng in batch.ranges:
        progress = batch_steps.commit(kafka, postgres, ingest.consumer_group, rng)
        held = progress.committed < rng.end
        committed[f"{rng.topic}[{rng.partition}]"] = progress.committed
        context.log.info(
            f"group {ingest.consumer_group} at {rng.topic}[{rng.partition}]={progress.committed}"
            + (f" (held by unprocessed offsets below {rng.start})" if held else "")
        )
    context.log.info(f"stage times {batch.timings}")
    only = batch.ranges[0] if len(batch.ranges) == 1 else None
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
            **batch_metadata(batch),
            **(
                {
                    "topic": only.topic,
                    "partition": only.partition,
                    "committed_offset": committed[f"{only.topic}[{only.partition}]"],
                    "held_below_range": committed[f"{only.topic}[{only.partition}]"] < only.end,
                }
                if only
                else {"committed_offsets": committed}
            ),
            **batch.timings,
        },
    )
