"""Every asset key of the pipeline, named after where the data lives."""

from __future__ import annotations

from dagster import AssetKey

from wado_pipeline.core import schema as S
from wado_pipeline.core.run_contract import SINK_BY_NAME, TABLE_SINKS, TOPICS
from wado_pipeline.settings import Settings

GROUP = "ingest"


def topic_key(topic: str) -> AssetKey:
    """A Kafka topic's asset."""
    return AssetKey(["kafka", topic])


def asset_keys(settings: Settings) -> dict[str, AssetKey]:
    keys = {
        "storage": topic_key(settings.storage_topic),
        "state_topic": topic_key(settings.state_topic),
        "image_topic": topic_key(settings.image_topic),
        "dlq_topic": topic_key(settings.dlq_topic),
        "pg_errors": AssetKey(["postgres", S.INGEST_ERROR.name]),
        "group_offsets": AssetKey(["kafka", "consumer_groups", settings.consumer_group]),
    }
    for t in S.PIPELINE_TABLES:
        for sink in TABLE_SINKS:
            keys[sink.output(t.name)] = AssetKey([sink.name, t.name])
    return keys


def sink_keys(settings: Settings, sink: str) -> list[AssetKey]:
    """The assets one sink consists of (what ``rebuild --sink`` materializes)."""
    keys = asset_keys(settings)
    found = SINK_BY_NAME.get(sink)
    if found is None:
        raise ValueError(f"unknown sink {sink}")
    if found is TOPICS:
        return [keys["state_topic"], keys["image_topic"]]
    return [keys[found.output(t.name)] for t in S.PIPELINE_TABLES]
