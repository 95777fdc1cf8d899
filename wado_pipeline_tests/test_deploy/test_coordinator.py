"""The run coordinator of dagster.yaml tunes the daemon it runs in: pooled connections
to Dagster's storage, the sensor loop's period and a fractional dequeue interval."""

from __future__ import annotations

import inspect

import pytest
from dagster import DagsterInstance

from wado_pipeline.core.run_contract import SENSOR_LOOP_SECONDS, SENSOR_TICK_SECONDS
from wado_pipeline.dagster_internals import sensor_daemon_module
from wado_pipeline.instance.coordinator import PooledQueuedRunCoordinator
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
