"""The run coordinator of dagster.yaml tunes the daemon it runs in: pooled connections
to Dagster's storage, the sensor loop's period and a fractional dequeue interval."""

from __future__ import annotations

import inspect
import logging
import threading
import time

import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    SubmitRunContext,
)
from sqlalchemy import event

from wado_pipeline.core.run_contract import SENSOR_LOOP_SECONDS, SENSOR_TICK_SECONDS
from wado_pipeline.dagster_internals import (
    DagsterDaemon,
    QueuedRunCoordinatorDaemon,
    SpanMarker,
    make_new_run_id,
    sensor_daemon_module,
)
from wado_pipeline.instance import coordinator as queue_module
from wado_pipeline.instance.coordinator import PooledQueuedRunCoordinator
from wado_pipeline.instance.storage_pool import SCHEMA_PROBES, pool_dagster_storage
from wado_pipeline_tests.support import wait_until


@pytest.fixture
def dagster_loop_restored():
    before = sensor_daemon_module.MIN_INTERVAL_LOOP_TIME
    yield
    sensor_daemon_module.MIN_INTERVAL_LOOP_TIME = before


def test_dagster_still_loops_on_the_constant_the_coordinator_sets():
    """After a Dagster upgrade: the constant is still there and the loop still reads it
    (otherwise the sensor would tick every 5 s again, silently)."""
    assert sensor_daemon_module.MIN_INTERVAL_LOOP_TIME in (5, SENSOR_LOOP_SECONDS)
    source = inspect.getsource(sensor_daemon_module.execute_sensor_iteration_loop)
    assert "MIN_INTERVAL_LOOP_TIME - loop_duration" in source


@pytest.mark.stack
def test_the_daemons_instance_is_tuned_by_its_coordinator(
    dagster_home, monkeypatch, dagster_loop_restored
):
    home, storage_url = dagster_home
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", storage_url)
    sensor_daemon_module.MIN_INTERVAL_LOOP_TIME = 5  # Dagster's own, as a daemon starts
    with DagsterInstance.from_config(str(home)) as instance:
        engines = [instance.run_storage._engine, instance.event_log_storage._engine]
        assert {type(e.pool).__name__ for e in engines} == {"NullPool"}
        coordinator = instance.run_coordinator  # what the daemon reads before its loops
        assert isinstance(coordinator, PooledQueuedRunCoordinator)
        assert coordinator.dequeue_interval_seconds == 0.5  # from dagster.yaml, not rounded
        # reading it (the daemon does, setting up its queue) starts the warm process
        launcher = instance.run_launcher
        proc = wait_until(lambda: launcher._proc, 60, "the warm process to start", 0.2)
        assert proc.poll() is None
        assert sensor_daemon_module.MIN_INTERVAL_LOOP_TIME == SENSOR_LOOP_SECONDS
        assert QueuedRunCoordinatorDaemon.core_loop is queue_module.woken_queue_loop
        engines = [instance.run_storage._engine, instance.event_log_storage._engine]
        assert {type(e.pool).__name__ for e in engines} == {"QueuePool"}
        # a call works on the pooled connection, and again on the same one
        assert instance.get_runs_count() == 0
        assert instance.get_runs_count() == 0
        assert engines[0].pool.checkedin() == 1
        proc = launcher._proc
    assert proc.wait(timeout=30) == 0  # the instance's dispose ended it
    assert SENSOR_TICK_SECONDS < 5


# The tag Dagster gives every materialization and indexes in its own table (its
# data_version module's DATA_VERSION_TAG).
DATA_VERSION_TAG = "dagster/data_version"


@pytest.mark.stack
def test_a_storage_call_nested_in_another_reuses_a_pooled_connection(dagster_home, monkeypatch):
    """A storage call that needs a second connection while holding the first (the
    daemon's threads overlap all the time): with the pool of ``pool_dagster_storage``
    both stay open, so five such calls open two connections, not six; and the storage
    still works on them."""
    home, storage_url = dagster_home
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", storage_url)
    with DagsterInstance.from_config(str(home)) as instance:
        pool_dagster_storage(instance)
        engine = instance.event_log_storage._engine
        opened = []
        event.listen(engine, "connect", lambda *_: opened.append(1))
        for _ in range(5):
            with engine.connect() as outer, engine.connect() as inner:
                assert outer.exec_driver_sql("SELECT 1").scalar() == 1
                assert inner.exec_driver_sql("SELECT 2").scalar() == 2
        for i in range(3):
            instance.report_runless_asset_event(
                AssetMaterialization("pooled", tags={DATA_VERSION_TAG: str(i)})
            )
        records = instance.fetch_materializations(AssetKey("pooled"), limit=20).records
        assert [r.asset_materialization.tags[DATA_VERSION_TAG] for r in records] == [
            "2",
            "1",
            "0",
        ]
        assert len(opened) == 2, f"{len(opened)} connections opened"


def test_every_cached_schema_probe_is_still_dagsters():
    """After a Dagster upgrade: each probe ``SCHEMA_PROBES`` names is still a method of
    that storage class (a renamed one would quietly go back to a catalogue query)."""
    import dagster_postgres

    for class_name, names in SCHEMA_PROBES.items():
        cls = getattr(dagster_postgres, class_name)
        assert [n for n in names if not callable(getattr(cls, n, None))] == [], class_name


@pytest.mark.stack
def test_schema_probes_ask_the_catalogue_once_per_storage(dagster_home, monkeypatch):
    """The same storage calls twice: the first round asks PostgreSQL's catalogue
    whether migrations' tables and columns exist, the second does not."""
    home, storage_url = dagster_home
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", storage_url)
    with DagsterInstance.from_config(str(home)) as instance:
        pool_dagster_storage(instance)
        storages = (instance.run_storage, instance.event_log_storage, instance.schedule_storage)
        catalogue = []
        for storage in storages:
            event.listen(
                storage._engine,
                "before_cursor_execute",
                lambda _c, _cur, sql, *_: catalogue.append(sql) if "pg_catalog" in sql else None,
            )

        def calls(i: int) -> None:
            instance.report_runless_asset_event(
                AssetMaterialization("probed", tags={DATA_VERSION_TAG: str(i)})
            )
            instance.all_instigator_state()
            instance.get_run_records(limit=1)
            instance.get_backfills(limit=1)

        calls(1)
        first = len(catalogue)
        calls(2)
        assert first > 0
        assert catalogue[first:] == []


class _StandInDaemon:
    """What the loop uses of Dagster's queue daemon: its interval, its pass and logger."""

    def __init__(self, interval_seconds: float):
        self.interval_seconds = interval_seconds
        self.passes = 0
        self._logger = logging.getLogger("test")

    def run_iteration(self, _context):
        self.passes += 1
        if self.passes == 2:
            raise RuntimeError("a failed pass")  # reported, and the loop goes on
        yield None


def test_a_submitted_run_cuts_the_queue_loops_wait_short():
    """Dagster's queue loop waits out its interval whatever arrives; ours ends the wait
    when a run is submitted in the daemon's process, so the run is dequeued at once."""
    daemon = _StandInDaemon(interval_seconds=600)  # a wait no test outlives
    shutdown = threading.Event()
    loop = queue_module.woken_queue_loop(daemon, None, shutdown)
    assert next(loop) is SpanMarker.START_SPAN
    assert [next(loop), next(loop)] == [None, SpanMarker.END_SPAN]
    assert daemon.passes == 1

    waker = threading.Timer(0.2, queue_module.RUN_SUBMITTED.set)
    waker.start()
    began = time.monotonic()
    while next(loop) is not SpanMarker.START_SPAN:  # waits, yielding for heartbeats
        pass
    assert time.monotonic() - began < 60  # the submission, not the 600 s interval
    out = [next(loop), next(loop)]
    assert daemon.passes == 2
    assert out[0].message.startswith("RuntimeError: a failed pass")  # reported as Dagster's
    assert out[1] is SpanMarker.END_SPAN
    shutdown.set()
    assert next(loop) is None  # a shutdown ends the wait too


@pytest.mark.stack
def test_submitting_a_run_wakes_the_queue_loop(dagster_home, monkeypatch, dagster_loop_restored):
    home, storage_url = dagster_home
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", storage_url)
    with DagsterInstance.from_config(str(home)) as instance:
        run = instance.add_run(
            DagsterRun(
                job_name="ingest_job",
                run_id=make_new_run_id(),
                # submitted already (Dagster's enqueue needs a code location's
                # origin): a no-op in Dagster's coordinator, so the wake is ours alone
                status=DagsterRunStatus.STARTED,
            )
        )
        queue_module.RUN_SUBMITTED.clear()
        queued = instance.run_coordinator.submit_run(SubmitRunContext(run, workspace=None))
        assert queued.run_id == run.run_id
        assert queue_module.RUN_SUBMITTED.is_set()


def test_dagster_still_runs_the_queue_daemon_through_its_core_loop():
    """After a Dagster upgrade: the daemon loop still calls ``core_loop`` and still
    drives a pass through ``run_iteration`` (the methods ours replaces and calls)."""
    source = inspect.getsource(DagsterDaemon.run_daemon_loop)
    assert "self.core_loop(" in source
    assert callable(QueuedRunCoordinatorDaemon.run_iteration)
