"""The run queue of ``dagster.yaml``: Dagster's ``QueuedRunCoordinator``, in a daemon
that keeps pooled connections to Dagster's storage and ticks the sensor every 1 to 1.25 s.

The daemon loads the run coordinator before its loops start (its queue loop reads the
coordinator's interval), so this is the plug-in through which the daemon is tuned:
- its instance is pooled (``storage_pool``): the sensor's run requests, the queue's
  dequeues and run monitoring reuse connections instead of opening one per call;
- its sensor loop runs every ``SENSOR_LOOP_SECONDS`` (0.25 s) instead of Dagster's 5 s,
  which has no setting: the period is a module constant of Dagster's sensor daemon,
  read at every loop (``dagster_internals``; ``test_coordinator.py`` checks it is still
  there and still read). With threads (``sensors: use_threads`` in dagster.yaml) a tick
  that takes longer than the loop is not started again until it ends;
- its queue loop wakes when a run is submitted (``woken_queue_loop``): Dagster's waits
  out its interval in steps of 0.5 s, so a sensor's run waited 0.5 s on average in the
  queue before it was even looked at.
In the webserver, which pools on its own and runs no sensor loop, it changes nothing.
"""

from __future__ import annotations

import sys
import threading
import time

from dagster import Field, Float, QueuedRunCoordinator

from wado_pipeline.core.run_contract import SENSOR_LOOP_SECONDS
from wado_pipeline.dagster_internals import (
    QueuedRunCoordinatorDaemon,
    SpanMarker,
    sensor_daemon_module,
    serializable_error_info_from_exc_info,
)
from wado_pipeline.instance.storage_pool import pool_dagster_storage

# The daemon's threads (sensor ticks, queue, monitoring, schedules, backfills, …) may
# each hold a connection at once: this many stay open per storage, and beyond them up to
# DAEMON_MAX_OVERFLOW more are opened and closed.
DAEMON_POOL_SIZE = 4
DAEMON_MAX_OVERFLOW = 10

# Set when a run is submitted in this process (the daemon's sensor thread requests its
# runs here), cleared as the queue loop starts a pass.
RUN_SUBMITTED = threading.Event()
# The longest the queue loop waits without yielding (the daemon's heartbeat and its
# shutdown are checked between yields, as in Dagster's own loop).
QUEUE_WAIT_STEP_SECONDS = 0.5


class PooledQueuedRunCoordinator(QueuedRunCoordinator):
    """``QueuedRunCoordinator``, whose instance keeps pooled storage connections, with a
    dequeue interval in fractions of a second.

    Dagster's own takes whole seconds: at its floor (1 s) a run waited 0.5 s on average
    for the queue's loop (dagster.yaml sets 0.5 s). A submission in the daemon's process
    starts a pass at once (``woken_queue_loop``)."""

    @property
    def dequeue_interval_seconds(self) -> float:
        """Read by the daemon alone, as it sets up its queue loop (the webserver never
        does): the moment to start its launcher's warm process, so the first run does
        not wait for its imports."""
        prestart = getattr(self._instance.run_launcher, "prestart", None)
        if prestart is not None and not self._prestarted:
            self._prestarted = True
            prestart()
        return self._dequeue_interval_seconds

    @classmethod
    def config_type(cls) -> dict:
        fields = dict(super().config_type())
        fields["dequeue_interval_seconds"] = Field(
            Float,
            is_required=False,
            description="Seconds between two passes of the daemon over the run queue.",
        )
        return fields

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        interval = config_value.get("dequeue_interval_seconds")
        whole = {**config_value, "dequeue_interval_seconds": None}
        coordinator = super().from_config_value(inst_data, whole)
        if interval is not None:
            coordinator._dequeue_interval_seconds = float(interval)  # (read by the daemon)
        return coordinator

    _prestarted = False

    def submit_run(self, context):
        run = super().submit_run(context)
        RUN_SUBMITTED.set()
        return run

    def register_instance(self, instance) -> None:
        super().register_instance(instance)
        pool_dagster_storage(instance, pool_size=DAEMON_POOL_SIZE, max_overflow=DAEMON_MAX_OVERFLOW)
        set_sensor_loop(SENSOR_LOOP_SECONDS)
        QueuedRunCoordinatorDaemon.core_loop = woken_queue_loop


def woken_queue_loop(daemon, workspace_process_context, shutdown_event):
    """The queue daemon's loop: a pass over the queue, then a wait of up to its interval
    that ends as soon as a run is submitted in this process.

    A pass started by a submission dequeues the run at once (dequeue to ``RUN_START``
    is then the run's own start). A run the queue holds back (its partition has one
    running) still waits for a pass after that run ends, at most the interval."""
    while True:
        began = time.monotonic()
        RUN_SUBMITTED.clear()
        yield SpanMarker.START_SPAN
        try:
            yield from daemon.run_iteration(workspace_process_context)
        except Exception:
            error = serializable_error_info_from_exc_info(sys.exc_info())
            daemon._logger.error("queue pass failed:\n%s", error)
            yield error
        yield SpanMarker.END_SPAN
        while not RUN_SUBMITTED.is_set() and not shutdown_event.is_set():
            left = daemon.interval_seconds - (time.monotonic() - began)
            if left <= 0:
                break
            RUN_SUBMITTED.wait(min(left, QUEUE_WAIT_STEP_SECONDS))
            yield None
        yield None


def set_sensor_loop(seconds: float) -> None:
    """Run the sensor daemon's loop every ``seconds`` (in this process)."""
    if not hasattr(sensor_daemon_module, "MIN_INTERVAL_LOOP_TIME"):
        raise RuntimeError(
            "this Dagster's sensor daemon has no MIN_INTERVAL_LOOP_TIME: see "
            "wado_pipeline/dagster_internals.py"
        )
    sensor_daemon_module.MIN_INTERVAL_LOOP_TIME = seconds
