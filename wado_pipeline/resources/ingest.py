"""Settings a run needs besides connections: output topics, group, storage roots."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource


class IngestSettings(ConfigurableResource):
    """Where a batch's results go; shown in the UI (nothing secret here)."""

    storage_topic: str
    state_topic: str
    image_topic: str
    dlq_topic: str
    consumer_group: str
    storage_roots: list[str]
    parse_workers: int = 1
    batch_messages: int = 50
    batch_wait_seconds: float = 5.0
    max_batch_messages: int = 2000
    max_inflight_per_partition: int = 3
    # A STARTED run that stored no event for this long has lost its worker (see sensor).
    run_stale_seconds: float = 90.0

    @property
    def roots(self) -> tuple[Path, ...]:
        return tuple(Path(r) for r in self.storage_roots)
