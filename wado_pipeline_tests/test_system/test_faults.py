"""Fault injection on the real stack: killed run workers, a stopped broker, stopped
databases. Each test compares the final tables with an expectation computed from
the produced messages and files, not from the pipeline's own output."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, ReexecutionOptions, execute_job, instance_for_test
from kafka import KafkaProducer
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from wado_pipeline.core.planning import OffsetRange
from wado_pipeline.core.run_contract import run_config_for
from wado_pipeline.resources.kafka import KafkaResource
from wado_pipeline_tests.support import (
    assert_tables_match,
    dump_tables,
    encode,
    ranges,
    reconstructable_job,
    run_range,
    service,
    synthetic_messages,
    tick,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.stack, pytest.mark.faults]


def committed(settings, partition):
    kafka = KafkaResource(bootstrap=settings.kafka_bootstrap)
    return kafka.committed_offsets(
        settings.consumer_group, settings.storage_topic, [partition]
    ).get(partition)


def checksum(tables) -> str:
    return hashlib.sha256(repr(sorted(tables.items())).encode()).hexdigest()


KILL_SCRIPT = """
import sys
from dagster import DagsterInstance, execute_job
from wado_pipeline_tests.support import reconstructable_job
cfg = __import__("json").loads(sys.argv[2])
instance = DagsterInstance.from_config(sys.argv[1])
with execute_job(reconstructable_job(), instance, run_config=cfg) as result:
    print(result.run_id, flush=True)
"""


def test_run_worker_killed_mid_batch_then_reexecuted(
    settings, produce, storage_root, tmp_path, monkeypatch
):
    messages = synthetic_messages(storage_root, 400)
    produce(encode(messages), partition=0)
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, **settings.to_env(), "PYTHONPATH": str(ROOT)}
    cfg = run_config_for(OffsetRange(settings.storage_topic, 0, 0, 400))
    worker = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(home), json.dumps(cfg)], env=env, cwd=tmp_path
    )
    pg = create_engine(settings.postgres_url)
    count = text(f'SELECT count(*) FROM "{settings.postgres_schema}".dicom_image_meta')
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and worker.poll() is None:
        with pg.connect() as conn:
            try:
                if conn.execute(count).scalar_one() > 0:
                    break
            except Exception:  # table not created yet
                conn.rollback()
        time.sleep(0.02)
    worker.send_signal(signal.SIGKILL)
    assert worker.wait() == -signal.SIGKILL
    pg.dispose()
    # killed after the PostgreSQL write and before the offset commit: mid-batch
    assert committed(settings, 0) is None

    for k, v in settings.to_env().items():
        monkeypatch.setenv(k, v)
    with DagsterInstance.from_config(str(home)) as instance:
        (killed,) = instance.get_runs()
        instance.report_run_failed(killed)  # what Dagster's run monitoring does
        with execute_job(
            reconstructable_job(),
            instance,
            reexecution_options=ReexecutionOptions(parent_run_id=killed.run_id),
        ) as again:
            assert again.success
    assert_tables_match(settings, messages)
    assert committed(settings, 0) == 400


def test_broker_stopped_while_producing(settings, produce, storage_root, stack_restored):
    first = synthetic_messages(storage_root, 60, seed="a")
    later = synthetic_messages(storage_root, 60, seed="b")
    produce(encode(first), partition=1)
    with instance_for_test() as instance:
        cursor = None
        result = tick(settings, instance, cursor)
        cursor = result.cursor
        for _, start, end in ranges(result):
            assert run_range(settings, instance, 1, start, end).success

        producer = KafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            acks="all",
            delivery_timeout_ms=120_000,
            request_timeout_ms=10_000,
        )
        futures = []

        def keep_producing():
            for value in encode(later):
                futures.append(producer.send(settings.storage_topic, value, partition=1))
                time.sleep(0.01)

        sender = threading.Thread(target=keep_producing)
        sender.start()
        wait_until(lambda: len(futures) >= 10, 10, "the first sends", interval=0.01)
        service("kafka", "stop")  # mid-stream
        sender.join()
        with pytest.raises(Exception, match="did not answer"):  # a failed tick: red in the UI
            tick(settings, instance, cursor)  # (a failed tick saves no cursor)
        service("kafka", "start")
        for f in futures:
            f.get(timeout=120)  # every send was delivered after the restart
        producer.close()
        # the sensor resumes by itself on its next ticks
        seen = []
        deadline = time.monotonic() + 60
        while sum(e - s for _, s, e in seen) < 60 and time.monotonic() < deadline:
            result = tick(settings, instance, cursor)
            cursor = result.cursor or cursor
            seen.extend(ranges(result))
        for _, start, end in seen:
            assert run_range(settings, instance, 1, start, end).success
    assert_tables_match(settings, first + later)
    assert committed(settings, 1) == 120


@pytest.mark.parametrize("name", ["postgres", "mariadb"])
def test_database_stopped_during_a_run(
    settings, produce, storage_root, stack_restored, monkeypatch, name
):
    messages = synthetic_messages(storage_root, 30)
    produce([*encode(messages), b"not json"], partition=2)
    for k, v in settings.to_env().items():
        monkeypatch.setenv(k, v)
    cfg = run_config_for(OffsetRange(settings.storage_topic, 2, 0, 31))
    job = reconstructable_job()
    with instance_for_test() as instance:
        service(name, "stop")
        engine = create_engine(
            settings.postgres_url if name == "postgres" else settings.doris_url,
            connect_args={"connect_timeout": 3},
        )
        with pytest.raises(OperationalError):  # really down
            engine.connect().close()
        engine.dispose()
        with execute_job(job, instance, run_config=cfg) as failed:
            assert not failed.success  # loud: the run fails
            failures = failed.get_step_failure_events()
            service_name = "PostgreSQL" if name == "postgres" else "MariaDB (Doris stand-in)"
            for e in failures:
                chain, err = [], e.event_specific_data.error
                while err is not None:
                    chain.append(err)
                    err = err.cause
                names = [c.cls_name for c in chain]
                assert "ServiceUnavailable" in names and "OperationalError" in names, names
                # the failed step says which service, for the UI
                assert any(
                    service_name in c.message and "failed after 4 attempts" in c.message
                    for c in chain
                ), [c.message for c in chain]
            assert failures
        assert committed(settings, 2) is None  # nothing committed past unwritten data
        service(name, "start")
        with execute_job(
            job,
            instance,
            reexecution_options=ReexecutionOptions.from_failure(failed.run_id, instance),
        ) as retried:
            assert retried.success
    tables = assert_tables_match(settings, messages)
    assert [r[3] for r in tables["postgres.dicom_ingest_error"]] == ["bad_json"]
    assert committed(settings, 2) == 31


def test_reexecuting_every_finished_run_changes_nothing(
    settings, produce, storage_root, monkeypatch
):
    batches = {p: synthetic_messages(storage_root, 25, seed=f"p{p}") for p in range(3)}
    for p, msgs in batches.items():
        produce([*encode(msgs), b"[]"], partition=p)
    for k, v in settings.to_env().items():
        monkeypatch.setenv(k, v)
    job = reconstructable_job()
    with instance_for_test() as instance:
        runs = []
        for p in range(3):
            cfg = run_config_for(OffsetRange(settings.storage_topic, p, 0, 26))
            with execute_job(job, instance, run_config=cfg) as r:
                assert r.success
                runs.append(r.run_id)
        before = checksum(dump_tables(settings))
        for run_id in runs:
            with execute_job(
                job, instance, reexecution_options=ReexecutionOptions(parent_run_id=run_id)
            ) as again:
                assert again.success
        assert checksum(dump_tables(settings)) == before
    assert_tables_match(settings, [m for msgs in batches.values() for m in msgs])
