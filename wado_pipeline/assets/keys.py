"""Every asset key of the pipeline, named after where the data lives."""

from __future__ import annotations

from dagster import AssetKey

from wado_pipeline.core import schema as S
from wado_pipeline.settings import Settings

GROUP = "ingest"


def asset_keys(settings: Settings) -> dict[str, AssetKey]:
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
