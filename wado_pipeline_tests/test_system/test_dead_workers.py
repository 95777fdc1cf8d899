"""Dead workers are Dagster's to find, for every job: under `dagster dev`, a "Materialize
all" run and a verification run (upkeep lane) held up by a PostgreSQL lock are left alone
while their workers live, however long that is; once their workers are killed, Dagster's
run monitoring fails both (the launcher's worker health check); the upkeep lane is free
again and the claimed messages arrive."""

import json
import os
import signal
import subprocess

import pytest
from dagster import DagsterInstance
from sqlalchemy import create_engine, text

from wado_pipeline.bench.sandbox import PROJECT
from wado_pipeline.core import schema as S
from wado_pipeline.core.run_contract import SENSOR_NAME, VERIFY_JOB
from wado_pipeline.instance.launcher import WORKER_TAG
from wado_pipeline_tests.support import (
    await_group_offsets,
    encode,
    postgres_rows,
    synthetic_messages,
    wait_until,
)
from wado_pipeline_tests.test_system.test_ui import (
    _tags,
    failure_messages,
    gql,
)
from wado_pipeline_tests.test_system.test_ui_actions import (
    LAUNCH,
    RUN,
    SENSOR,
    START,
    STOP,
    _all_assets,
    _launch,
    _repo,
)

pytestmark = [pytest.mark.stack, pytest.mark.slow]

LOCKED = [*(t.name for t in S.PIPELINE_TABLES), S.INGEST_ERROR.name]


def _status(url: str, run_id: str) -> dict:
    return gql(url, RUN, id=run_id)["runOrError"]


def _launch_job(url: str, job: str) -> str:
    params = {"selector": {**_repo(url), "jobName": job}, "runConfigData": {}}
    out = gql(url, LAUNCH, params=params)["launchRun"]
    assert out["__typename"] == "LaunchRunSuccess", out
    return out["run"]["runId"]


def _lock_tables(settings) -> subprocess.Popen:
    """A superuser session holding ACCESS EXCLUSIVE locks on the pipeline's PostgreSQL
    tables until its stdin is closed (which rolls the transaction back)."""
    schema = settings.postgres_schema
    names = ", ".join(f'"{schema}".{n}' for n in LOCKED)
    proc = subprocess.Popen(
        ["bash", str(PROJECT / "stack/superuser.sh"), "postgres"],
        stdin=subprocess.PIPE,
        text=True,
    )
    proc.stdin.write(f"BEGIN;\nLOCK TABLE {names} IN ACCESS EXCLUSIVE MODE;\n")
    proc.stdin.flush()
    engine = create_engine(settings.postgres_url)
    sql = text(
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
        "WHERE l.mode = 'AccessExclusiveLock' AND l.granted AND c.relname = ANY(:names)"
    )
    try:

        def held():
            with engine.connect() as conn:
                return conn.execute(sql, {"names": LOCKED}).scalar_one() == len(LOCKED)

        wait_until(held, 60, "the table locks")
    finally:
        engine.dispose()
    return proc


def _worker(url: str, run_id: str) -> dict | None:
    run = _status(url, run_id)
    tag = _tags(run).get(WORKER_TAG)
    return json.loads(tag) if run["status"] == "STARTED" and tag else None


def _waiting_on_lock(settings, n: int) -> bool:
    engine = create_engine(settings.postgres_url)
    try:
        with engine.connect() as conn:
            waiting = conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
            ).scalar_one()
    finally:
        engine.dispose()
    return waiting >= n


def test_dead_workers_of_any_job_are_failed_and_slow_ones_left_alone(
    settings,
    dev_instance,
    produce,
    storage_root,
):
    url, home = dev_instance
    first = synthetic_messages(storage_root, 12)
    produce(encode(first), partition=0)
    await_group_offsets(settings, {0: 12}, 180, "the sensor's runs to process the first messages")
    selector = {**_repo(url), "sensorName": SENSOR_NAME}
    sensor_id = gql(url, SENSOR, selector=selector)["sensorOrError"]["id"]
    assert gql(url, STOP, id=sensor_id)["stopSensor"]["__typename"] != "PythonError"
    second = synthetic_messages(storage_root, 6, seed="second")
    produce(encode(second), partition=1)

    locker = _lock_tables(settings)
    try:
        ui_run = _launch(url, _all_assets(url), None)  # "Materialize all", no config
        upkeep = _launch_job(url, VERIFY_JOB)
        workers = {
            r: wait_until(lambda r=r: _worker(url, r), 180, f"run {r} to start")
            for r in (ui_run, upkeep)
        }
        # both are blocked in PostgreSQL, alive: the UI run writing, the check reading
        wait_until(lambda: _waiting_on_lock(settings, 2), 120, "both runs to wait on the lock")
        with DagsterInstance.from_config(str(home)) as instance:
            # two monitoring passes (each ends with a heartbeat) after both started
            seen: list[float] = []

            def monitored_twice():
                beat = instance.get_daemon_heartbeats().get("MONITORING")
                if beat and (not seen or beat.timestamp > seen[-1]):
                    seen.append(beat.timestamp)
                return len(seen) >= 3

            wait_until(monitored_twice, 240, "two run-monitoring passes", interval=1)
        assert [_status(url, r)["status"] for r in (ui_run, upkeep)] == ["STARTED"] * 2

        for w in workers.values():
            os.kill(w["pid"], signal.SIGKILL)

        def failed(r):
            return _status(url, r)["status"] == "FAILURE"

        for r, w in workers.items():
            wait_until(lambda r=r: failed(r), 180, f"run monitoring to fail run {r}", interval=1)
            said = " ".join(m or "" for m in failure_messages(url, r))
            assert str(w["pid"]) in said, said
    finally:
        locker.stdin.close()  # rolls back: the locks go
        locker.wait(timeout=60)

    # the upkeep lane is free: a new verification runs to the end
    again = _launch_job(url, VERIFY_JOB)
    wait_until(
        lambda: _status(url, again)["status"] in ("SUCCESS", "FAILURE"),
        240,
        "the next verification",
        interval=1,
    )
    assert _status(url, again)["status"] == "SUCCESS", failure_messages(url, again)
    # the dead UI run's claimed messages arrive (its retry, or the sensor's relaunch)
    started = gql(url, START, selector=selector)["startSensor"]
    assert started["__typename"] == "Sensor", started
    await_group_offsets(settings, {0: 12, 1: 6}, 240, "the claimed messages to be processed")
    assert postgres_rows(settings, "dicom_object_meta") == len(first) + len(second)
