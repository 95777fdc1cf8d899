"""Settings a run and the sensor need besides connections: topics, group, storage roots,
the batch policy. Defaults come from ``Settings`` (the one place that declares them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_type_hints

from dagster import ConfigurableResource
from pydantic import Field, create_model

from wado_pipeline.core.dicom.transcode import Transcoding
from wado_pipeline.core.planning import BatchPolicy
from wado_pipeline.core.run_contract import SENSOR_TICK_SECONDS
from wado_pipeline.settings import Settings, run_settings


def _field(name: str, hint: Any, default: Any) -> tuple[Any, Any]:
    """A resource field for a setting: its type and default as ``Settings`` declares
    them; paths as strings (Dagster's config has no path type)."""
    if isinstance(default, tuple):
        return list[str], Field(default_factory=lambda: [str(v) for v in default])
    return hint, default


_HINTS = get_type_hints(Settings)
_DEFAULTS = Settings()
_Fields = create_model(
    "_IngestSettingsFields",
    __base__=ConfigurableResource,
    **{n: _field(n, _HINTS[n], getattr(_DEFAULTS, n)) for n in run_settings()},
)


class IngestSettings(_Fields):
    """Where a batch's results go and how batches are cut; shown in the UI (nothing
    secret here). Its fields are the settings ``settings.py`` marks ``run=True``, with
    their types and defaults: declared there once."""

    @classmethod
    def from_settings(cls, settings: Settings) -> IngestSettings:
        values = {n: getattr(settings, n) for n in run_settings()}
        return cls(
            **{n: [str(v) for v in x] if isinstance(x, tuple) else x for n, x in values.items()}
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
            quiet_seconds=self.batch_quiet_seconds,
        )
