"""Rebuilding a sink from Kafka (Doris rebuilt, a table truncated): the ``rebuild_sink``
job plans it, the sensor carries it out.

The plan run resolves, per partition, the offsets to replay: from ``since`` (a time,
through the broker's timestamp index) or ``from_offset``, up to the consumer group's
committed offset, i.e. what the pipeline has processed (what is pending stays the
sensor's). It records the plan in its ``wado/rebuild_plan`` tag and metadata. The
sensor then requests one bounded run per batch-cap slice of the plan, selecting only
the sink's assets, so a rebuild is a backfill of ordinary runs: visible, retried and
re-executable one by one in the UI, never moving the group's offset. The same job is
what ``wado-pipeline rebuild`` launches.
"""

from datetime import UTC, datetime
from typing import Optional

from dagster import Config, Failure, OpExecutionContext, job, op
from pydantic import Field

from wado_pipeline.assets.config_fields import optional
from wado_pipeline.core.planning import OffsetRange
from wado_pipeline.core.progress import PartitionProgress
from wado_pipeline.core.run_contract import (
    REBUILD_JOB,
    REBUILD_PLAN_TAG,
    REBUILD_RUNS_TAG,
    SINKS,
    rebuild_plan_tag,
)
from wado_pipeline.resources.ingest_settings import IngestSettings
from wado_pipeline.resources.kafka import KafkaResource

_SINCE = (
    "Replay messages stored at or after this time, ISO 8601 (`2026-11-01` or "
    "`2026-11-01T08:00:00`, UTC). Leave out to use from_offset."
)
_FROM_OFFSET = (
    "Replay from this offset in every chosen partition (0 by default, i.e. everything Kafka "
    "still holds) when `since` is not given."
)
_PARTITIONS = "Partitions to replay; all of them when left out."


class RebuildConfig(Config):
    """Which sink to refill from Kafka, and from where."""

    sink: str = Field(
        description="The sink to refill: `doris` (the three Doris tables), `postgres` (the "
        "three PostgreSQL tables) or `topics` (the state and image topics)."
    )
    # Optional[...], not X | None: see config_fields.optional
    since: Optional[str] = optional(_SINCE)  # noqa: UP045
    from_offset: Optional[int] = optional(_FROM_OFFSET)  # noqa: UP045
    partitions: Optional[list[int]] = optional(_PARTITIONS)  # noqa: UP045


def _since_ms(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Failure(
            description=f"since must be an ISO 8601 date or time, got {text!r}",
            allow_retries=False,
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@op
def plan_rebuild(
    context: OpExecutionContext, config: RebuildConfig, kafka: KafkaResource, ingest: IngestSettings
) -> None:
    """Resolve the offsets to replay and record the plan for the sensor."""
    if config.sink not in SINKS:
        raise Failure(
            description=f"sink must be one of {', '.join(SINKS)}, got {config.sink!r}",
            allow_retries=False,
        )
    topic = ingest.storage_topic
    offsets = kafka.partition_offsets(topic)
    if offsets is None:
        raise Failure(description=f"topic {topic} does not exist", allow_retries=False)
    chosen = [o for o in offsets if config.partitions is None or o.partition in config.partitions]
    parts = [o.partition for o in chosen]
    progress = kafka.group_progress(ingest.consumer_group, topic, parts)
    if config.since is not None:
        starts = kafka.offsets_since(topic, parts, _since_ms(config.since))
    else:
        starts = {p: config.from_offset or 0 for p in parts}
    ranges = []
    for o in chosen:
        done = progress.get(o.partition, PartitionProgress(o.beginning))
        start = max(starts[o.partition], o.beginning)
        ranges += [OffsetRange(topic, o.partition, s, e) for s, e in done.processed(start)]
    messages = sum(r.end - r.start for r in ranges)
    slices = sum(len(r.slices(ingest.max_batch_messages)) for r in ranges)
    context.instance.add_run_tags(
        context.run_id,
        {REBUILD_PLAN_TAG: rebuild_plan_tag(config.sink, ranges), REBUILD_RUNS_TAG: str(slices)},
    )
    context.add_output_metadata(
        {
            "sink": config.sink,
            "ranges": "; ".join(str(r) for r in ranges) or "nothing processed there yet",
            "messages": messages,
            "runs": slices,
        }
    )
    context.log.info(
        f"rebuild of {config.sink}: {messages} message(s) in {slices} run(s), launched by the "
        "storage topic sensor; their tag wado/rebuild is this run's id"
    )


@job(name=REBUILD_JOB, description=__doc__)
def rebuild_sink():
    plan_rebuild()
