"""The ops of one batch: each calls its step (``steps``) and reports to Dagster.

    read_batch ─┬─► publish_records ─► kafka/<state>, kafka/<image>
                ├─► write_postgres ──► postgres/dicom_*_meta
                ├─► write_doris ─────► doris/dicom_*_meta
                ├─► write_rejects ───► kafka/<dlq>, postgres/dicom_ingest_error
                └─► commit_offsets (after all of the above)

Each write is its own op, so "re-execute from failure" in the UI redoes only the
write that failed; ``read_batch``'s output is kept by the IO manager for that.
"""

import resource
import time

from dagster import (
    Config,
    Failure,
    In,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    op,
)
from pydantic import Field

from wado_pipeline.assets import steps
from wado_pipeline.assets.metadata import batch_metadata, table_metadata
from wado_pipeline.assets.steps import Batch
from wado_pipeline.assets.storage_pool import pool_dagster_storage
from wado_pipeline.core import schema as S
from wado_pipeline.core.batching import OffsetRange
from wado_pipeline.core.contract import READ_OP
from wado_pipeline.core.parallel import shutdown_pool
from wado_pipeline.resources.doris import DorisBackend
from wado_pipeline.resources.ingest import IngestSettings
from wado_pipeline.resources.kafka import KafkaResource, OffsetRangeUnavailable
from wado_pipeline.resources.postgres import PostgresResource
from wado_pipeline.resources.sql import SqlBackend, TablesNotReady

TABLE_OUTS = {t.name: Out(Nothing) for t in S.PIPELINE_TABLES}


class BatchConfig(Config):
    """The batch: a partition's offset range [start, end). No message content."""

    topic: str = Field(description="storage topic the batch is read from")
    partition: int = Field(description="partition of the storage topic")
    start: int = Field(description="first offset of the batch (inclusive)")
    end: int = Field(description="end offset of the batch (exclusive)")


@op(name=READ_OP, ins={"storage": In(Nothing)}, out=Out(Batch))
def read_batch(
    context: OpExecutionContext, config: BatchConfig, kafka: KafkaResource, ingest: IngestSettings
) -> Batch:
    """Read exactly the configured offset range, parse every message, group the rows."""
    pool_dagster_storage(context.instance)
    rng = OffsetRange(config.topic, config.partition, config.start, config.end)
    try:
        batch = steps.read(kafka, rng, ingest.roots, ingest.parse_workers, ingest.transcoding)
    except OffsetRangeUnavailable as exc:
        raise Failure(description=str(exc), allow_retries=False) from exc
    except steps.CountsDoNotReconcile as exc:
        raise Failure(description=str(exc)) from exc
    finally:
        shutdown_pool()  # a run worker must not end with live pool processes
    g = batch.grouped
    context.log.info(
        f"{rng.run_key}: {g.consumed} consumed, {g.accepted} accepted, "
        f"{len(g.rejections)} rejected {g.rejects_by_reason()}, "
        f"{len(g.states)} series, {len(g.images)} instances"
    )
    return batch


@op(out={"state": Out(Nothing), "image": Out(Nothing)})
def publish_records(
    context: OpExecutionContext, batch: Batch, kafka: KafkaResource, ingest: IngestSettings
):
    """State records (keyed by series) and image records (keyed by SOP instance)."""
    t0 = time.perf_counter()
    n_state, n_image = steps.publish(kafka, batch, ingest.state_topic, ingest.image_topic)
    elapsed = round(time.perf_counter() - t0, 4)
    meta = batch_metadata(batch)
    yield Output(None, "state", metadata={**meta, "messages": n_state, "publish_s": elapsed})
    yield Output(None, "image", metadata={**meta, "messages": n_image, "publish_s": elapsed})


def _check(backend: SqlBackend) -> None:
    """The run's tables exist and match (catalog only: runs need DML, never DDL)."""
    try:
        backend.check_tables()
    except TablesNotReady as exc:
        raise Failure(description=str(exc), allow_retries=False) from exc


def _write_tables(batch: Batch, backend: SqlBackend):
    t0 = time.perf_counter()
    _check(backend)
    counts = backend.write_batch(batch.table_rows(), batch.range)
    elapsed = round(time.perf_counter() - t0, 4)
    for t in S.PIPELINE_TABLES:
        meta = table_metadata(batch, t.name, counts[t.name], elapsed)
        yield Output(None, t.name, metadata={**meta, **backend.write_metadata(t.name)})


@op(out=TABLE_OUTS)
def write_postgres(context: OpExecutionContext, batch: Batch, postgres: PostgresResource):
    """Upsert the three index tables in one PostgreSQL transaction."""
    yield from _write_tables(batch, postgres)


@op(ins={"published": In(Nothing)}, out=TABLE_OUTS)
def write_doris(context: OpExecutionContext, batch: Batch, doris: DorisBackend):
    """Upsert the same three tables into Doris (or its MariaDB stand-in); in
    ``routine_load`` mode, await the published keys there instead (hence after
    ``publish_records``)."""
    yield from _write_tables(batch, doris)


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
    if batch.grouped.rejections:
        _check(postgres)
    n, cut = steps.write_rejects(
        kafka,
        postgres,
        batch,
        ingest.dlq_topic,
        context.run_id,
        mask=ingest.dead_letter_payload == "masked",
    )
    if cut:
        context.log.warning(f"{cut} dead letter(s) cut to fit {ingest.dlq_topic}")
    by_reason = batch.grouped.rejects_by_reason()
    meta = {"rejected": n, "rejects_by_reason": by_reason}
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
    progress = steps.commit(kafka, ingest.consumer_group, rng)
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
            **batch.timings,
        },
    )
