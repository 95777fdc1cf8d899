"""The run queue of ``dagster.yaml``: Dagster's ``QueuedRunCoordinator``, in a process
that keeps pooled connections to Dagster's storage.

The daemon loads the run coordinator before its loops start (its queue loop reads the
coordinator's interval), so this is the one plug-in through which the daemon's
instance is pooled (``storage_pool``): the sensor's run requests, the queue's dequeues
and run monitoring then reuse connections instead of opening one per call. In the
webserver, which pools on its own, it changes nothing.
"""

from __future__ import annotations

from dagster import QueuedRunCoordinator

from wado_pipeline.instance.storage_pool import pool_dagster_storage

# The daemon's threads (sensor ticks, queue, monitoring, schedules, backfills, …) may
# each hold a connection at once; beyond the pooled one, these are opened and closed.
DAEMON_MAX_OVERFLOW = 10


class PooledQueuedRunCoordinator(QueuedRunCoordinator):
    """``QueuedRunCoordinator``, whose instance keeps pooled storage connections."""

    def register_instance(self, instance) -> None:
        super().register_instance(instance)
        pool_dagster_storage(instance, max_overflow=DAEMON_MAX_OVERFLOW)
