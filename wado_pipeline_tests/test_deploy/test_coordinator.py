"""The run coordinator of dagster.yaml tunes the daemon it runs in: pooled connections
to Dagster's storage, the sensor loop's period and a fractional dequeue interval."""

from __future__ import annotations

import inspect

import pytest
from dagster import AssetKey, AssetMaterialization, DagsterInstance
from sqlalchemy import event

from wado_pipeline.core.run_contract import SENSOR_LOOP_SECONDS, SENSOR_TICK_SECONDS
from wado_pipeline.dagster_internals import sensor_daemon_module
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
