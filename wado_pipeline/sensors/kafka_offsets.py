"""The Kafka offset sensor: storage-topic offsets in, one run per micro-batch out.

Every 5 s it reads each partition's beginning and end offsets (never message
content, apart from one timestamp for the age trigger), plans batches with
``core.batching`` and requests one run per offset range. The cursor holds the next
offset per partition; it is saved with the tick, so a failed tick advances
nothing. The consumer group's offsets are committed by the runs, after writing.
"""

import time

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    DagsterRunStatus,
    DefaultSensorStatus,
    JobDefinition,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from wado_pipeline.core.batching import (
    BatchPolicy,
    Cursor,
    OffsetRange,
    PartitionState,
    plan_batches,
)
from wado_pipeline.resources.ingest import IngestSettings
from wado_pipeline.resources.kafka import KafkaResource
from wado_pipeline.resources.retry import bounded_call

PARTITION_TAG = "wado/partition"
RANGE_TAG = "wado/offsets"
LOST_CHECK = "no_offsets_lost"
IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]
TICK_BUDGET_SECONDS = 20.0


def run_config_for(rng: OffsetRange) -> dict:
    """Run config of a batch: the offset range only (reruns replay it exactly)."""
    return {
        "ops": {
            "ingest_batch": {
                "ops": {
                    "read_batch": {
                        "config": {
                            "topic": rng.topic,
                            "partition": rng.partition,
                            "start": rng.start,
                            "end": rng.end,
                        }
                    }
                }
            }
        }
    }


def range_from_run_config(run_config: dict) -> OffsetRange:
    """The batch's offset range back from a run's config (inverse of ``run_config_for``)."""
    cfg = run_config["ops"]["ingest_batch"]["ops"]["read_batch"]["config"]
    return OffsetRange(cfg["topic"], cfg["partition"], cfg["start"], cfg["end"])


def partition_tag(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


def run_request_for(rng: OffsetRange, run_key: str | None = None) -> RunRequest:
    return RunRequest(
        run_key=run_key or rng.run_key,
        run_config=run_config_for(rng),
        tags={
            PARTITION_TAG: partition_tag(rng.topic, rng.partition),
            RANGE_TAG: f"{rng.start}-{rng.end}",
        },
    )


def build_kafka_sensor(job: JobDefinition, storage_asset_key, name: str = "storage_topic_sensor"):
    @sensor(
        name=name,
        job=job,
        minimum_interval_seconds=5,
        default_status=DefaultSensorStatus.RUNNING,
        description=__doc__,
    )
    def storage_topic_sensor(
        context: SensorEvaluationContext, kafka: KafkaResource, ingest: IngestSettings
    ):
        topic = ingest.storage_topic
        budget = max(kafka.timeout_seconds * 3, 5.0)
        try:
            offsets = bounded_call(lambda: kafka.partition_offsets(topic), budget, "end offsets")
        except Exception as exc:  # broker down or slow: skip, cursor unchanged
            return SkipReason(f"Kafka unavailable ({type(exc).__name__}); cursor unchanged")
        if offsets is None:
            return SkipReason(f"topic {topic} does not exist; cursor unchanged")

        cursor = Cursor.from_json(context.cursor, topic)
        new_parts = [o.partition for o in offsets if o.partition not in cursor.partitions]
        if new_parts:
            try:
                committed = bounded_call(
                    lambda: kafka.committed_offsets(ingest.consumer_group, topic, new_parts),
                    budget,
                    "committed offsets",
                )
            except Exception as exc:
                return SkipReason(f"cannot read committed offsets ({type(exc).__name__})")
            for o in offsets:
                if o.partition in new_parts:
                    start = committed.get(o.partition, o.beginning)
                    cursor.partitions[o.partition] = PartitionState(next=start)
                    context.log.info(f"{topic}[{o.partition}]: starting at offset {start}")

        policy = BatchPolicy(
            batch_messages=ingest.batch_messages,
            wait_seconds=ingest.batch_wait_seconds,
            max_batch_messages=ingest.max_batch_messages,
            max_inflight=ingest.max_inflight_per_partition,
        )
        # Age trigger: the broker timestamp of each partition's oldest pending message.
        for o in offsets:
            state = cursor.partitions[o.partition]
            pending = o.end - max(state.next, o.beginning)
            if 0 < pending < policy.batch_messages and state.ts_offset != state.next:
                try:
                    state.oldest_ts = bounded_call(
                        lambda o=o, s=state: kafka.first_timestamp(topic, o.partition, s.next),
                        budget,
                        "timestamp",
                    )
                    state.ts_offset = state.next if state.oldest_ts is not None else None
                except Exception as exc:
                    return SkipReason(f"cannot read a timestamp ({type(exc).__name__})")

        inflight = {
            o.partition: context.instance.get_runs_count(
                RunsFilter(
                    job_name=job.name,
                    statuses=IN_FLIGHT,
                    tags={PARTITION_TAG: partition_tag(topic, o.partition)},
                )
            )
            for o in offsets
        }
        plan = plan_batches(
            cursor,
            {o.partition: (o.beginning, o.end) for o in offsets},
            int(time.time() * 1000),
            policy,
            inflight,
        )
        events = []
        for lost in plan.lost:
            message = (
                f"{topic}[{lost.partition}] offsets {lost.start}..{lost.end - 1} "
                f"({lost.end - lost.start} messages) expired from Kafka before they were processed"
            )
            context.log.warning(message)
            events.append(
                AssetCheckEvaluation(
                    asset_key=storage_asset_key,
                    check_name=LOST_CHECK,
                    passed=False,
                    severity=AssetCheckSeverity.ERROR,
                    description=message,
                    metadata={
                        "partition": lost.partition,
                        "lost_start": lost.start,
                        "lost_end_exclusive": lost.end,
                    },
                )
            )
        if not plan.ranges and not events:
            pending = sum(o.end - cursor.partitions[o.partition].next for o in offsets)
            busy = sum(1 for n in inflight.values() if n >= policy.max_inflight)
            why = f"; {busy} partition(s) at their in-flight run limit" if busy else ""
            return SensorResult(
                skip_reason=SkipReason(f"{pending} message(s) pending; no batch due{why}"),
                cursor=cursor.to_json(),
            )
        return SensorResult(
            run_requests=[run_request_for(r) for r in plan.ranges],
            cursor=cursor.to_json(),
            asset_events=events,
        )

    return storage_topic_sensor
