"""``wado-pipeline lag``: per partition, the end offset, the sensor's cursor, the group's
committed offset, what is pending and how old its oldest message is."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

from wado_pipeline.core.planning import Cursor
from wado_pipeline.resources.kafka import KafkaResource
from wado_pipeline.settings import Settings


@dataclass
class PartitionLag:
    partition: int
    end: int
    sensor_cursor: int | None
    committed: int | None
    pending: int
    oldest_pending_age_s: float | None


def sensor_cursor(topic: str) -> Cursor | None:
    """The sensor's cursor from the Dagster instance ($DAGSTER_HOME), if there is one."""
    from dagster import DagsterInstance

    from wado_pipeline.resources.dagster_instance.dagster_runs import sensor_cursor as stored_cursor

    if not os.environ.get("DAGSTER_HOME"):
        return None
    try:
        with DagsterInstance.get() as instance:
            return stored_cursor(instance, topic)
    except Exception as exc:  # lag must still show Kafka's side
        print(f"sensor cursor unavailable ({type(exc).__name__})", file=sys.stderr)
    return None


def lag(settings: Settings) -> list[PartitionLag]:
    kafka = KafkaResource(bootstrap=settings.kafka_bootstrap)
    found = kafka.topic_progress(settings.consumer_group, settings.storage_topic)
    if found is None:
        raise LookupError(f"topic {settings.storage_topic} does not exist")
    offsets, progress = found
    committed = {p: g.committed for p, g in progress.items()}
    cursor = sensor_cursor(settings.storage_topic)
    out = []
    now_ms = time.time() * 1000
    for o in offsets:
        done = committed.get(o.partition, o.beginning)
        pending = max(0, o.end - done)
        age = None
        if pending:
            ts = kafka.first_timestamp(settings.storage_topic, o.partition, done)
            age = round((now_ms - ts) / 1000, 1) if ts is not None else None
        state = cursor.partitions.get(o.partition) if cursor else None
        out.append(
            PartitionLag(
                o.partition,
                o.end,
                state.next if state else None,
                committed.get(o.partition),
                pending,
                age,
            )
        )
    return out
