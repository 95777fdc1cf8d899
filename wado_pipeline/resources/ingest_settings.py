"""Settings a run and the sensor need besides connections: topics, group, storage roots,
the batch policy. Defaults come from ``Settings`` (the one place that declares them)."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from wado_pipeline.core.planning import BatchPolicy
from wado_pipeline.core.run_contract import SENSOR_TICK_SECONDS
from wado_pipeline.core.transcode import Transcoding
from wado_pipeline.settings import Settings

DEFAULTS = Settings()


class IngestSettings(ConfigurableResource):
    """Where a batch's results go and how batches are cut; shown in the UI (nothing
    secret here)."""

    storage_topic: str = DEFAULTS.storage_topic
    state_topic: str = DEFAULTS.state_topic
    image_topic: str = DEFAULTS.image_topic
    dlq_topic: str = DEFAULTS.dlq_topic
    consumer_group: str = DEFAULTS.consumer_group
    storage_roots: list[str] = Field(
        default_factory=lambda: [str(r) for r in DEFAULTS.storage_roots]
    )
    parse_workers: int = DEFAULTS.parse_workers
    batch_messages: int = DEFAULTS.batch_messages
    batch_wait_seconds: float = DEFAULTS.batch_wait_seconds
    max_batch_messages: int = DEFAULTS.max_batch_messages
    max_inflight_per_partition: int = DEFAULTS.max_inflight_per_partition
    dead_letter_payload: str = DEFAULTS.dead_letter_payload
    transcode: str = DEFAULTS.transcode
    transcode_target: str = DEFAULTS.transcode_target
    viewer_transfer_syntaxes: str = DEFAULTS.viewer_transfer_syntaxes
    transcode_timeout_seconds: float = DEFAULTS.transcode_timeout_seconds
    run_retention_days: float = DEFAULTS.run_retention_days

    @classmethod
    def from_settings(cls, settings: Settings) -> IngestSettings:
        return cls(
            storage_topic=settings.storage_topic,
            state_topic=settings.state_topic,
            image_topic=settings.image_topic,
            dlq_topic=settings.dlq_topic,
            consumer_group=settings.consumer_group,
            storage_roots=[str(r) for r in settings.storage_roots],
            parse_workers=settings.parse_workers,
            batch_messages=settings.batch_messages,
            batch_wait_seconds=settings.batch_wait_seconds,
            max_batch_messages=settings.max_batch_messages,
            max_inflight_per_partition=settings.max_inflight_per_partition,
            dead_letter_payload=settings.dead_letter_payload,
            transcode=settings.transcode,
            transcode_target=settings.transcode_target,
            viewer_transfer_syntaxes=settings.viewer_transfer_syntaxes,
            transcode_timeout_seconds=settings.transcode_timeout_seconds,
            run_retention_days=settings.run_retention_days,
        )

    @property
    def transcoding(self) -> Transcoding | None:
        """How ``NeedTransfer`` files are rewritten, or None when transcoding is off."""
        if self.transcode != "on":
            return None
        syntaxes = frozenset(s.strip() for s in self.viewer_transfer_syntaxes.split(",") if s)
        return Transcoding(self.transcode_target, syntaxes, self.transcode_timeout_seconds)

    @property
    def roots(self) -> tuple[Path, ...]:
        return tuple(Path(r) for r in self.storage_roots)

    @property
    def policy(self) -> BatchPolicy:
        return BatchPolicy(
            batch_messages=self.batch_messages,
            wait_seconds=self.batch_wait_seconds,
            max_batch_messages=self.max_batch_messages,
            max_inflight=self.max_inflight_per_partition,
            tick_seconds=SENSOR_TICK_SECONDS,
        )
