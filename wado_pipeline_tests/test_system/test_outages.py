"""Outages heal by themselves: dagster-daemon drains a backlog with the project's
dagster.yaml while one service of the stack is stopped for a while and started again.
Dagster's storage lives on the same PostgreSQL as the index, as at most sites.

Each case asserts exact rows in both databases, group lag 0, no dead letters, no run
left queued or in progress (no ghost), that the outage was visible while it lasted,
and the time from the service's return to a healed pipeline. Figures are printed and
appended to test-artifacts/outages.jsonl (docs/outages.md comes from them)."""

import json
import time
from pathlib import Path

import pytest
from dagster import (
    AssetCheckKey,
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
)
from sqlalchemy import create_engine, text

from wado_pipeline.bench.sandbox import dagster_process
from wado_pipeline.resources.kafka import KafkaResource
from wado_pipeline_tests.support import (
    assert_tables_match,
    consume_all,
    encode,
    service,
    synthetic_messages,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
MESSAGES = 900
# Stated bound: healed within two minutes of the service's return, plus the drain of
# what was left (generous for a loaded 2-core machine: the daemon drains ~100 msg/s).
HEAL_BOUND_S = 120 + MESSAGES / 10

CASES = [
    pytest.param("kafka", 30, id="kafka-30s"),
    pytest.param("kafka", 120, marks=pytest.mark.slow, id="kafka-120s"),
    pytest.param("postgres", 30, id="postgres-30s"),
    pytest.param("postgres", 120, marks=pytest.mark.slow, id="postgres-120s"),
    pytest.param("postgres", 300, marks=pytest.mark.slow, id="postgres-300s"),
    pytest.param("mariadb", 30, id="mariadb-30s"),
    pytest.param("mariadb", 120, marks=pytest.mark.slow, id="mariadb-120s"),
]
pytestmark = [pytest.mark.stack, pytest.mark.faults]


def count(url: str, table: str) -> int:
    engine = create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
    except Exception:  # down, or the table is not there yet
        return -1
    finally:
        engine.dispose()


def failure_texts(instance: DagsterInstance) -> list[str]:
    """Every message of every failed run: run failures and step errors with causes."""
    texts = []
    for run in instance.get_runs():
        if run.status != DagsterRunStatus.FAILURE:
            continue
        for entry in instance.all_logs(run.run_id):
            event = entry.dagster_event
            if event is None:
                continue
            if event.event_type == DagsterEventType.RUN_FAILURE:
                texts.append(event.message or "")
            if event.event_type == DagsterEventType.STEP_FAILURE:
                err = event.event_specific_data.error
                while err is not None:
                    texts.append(err.message)
                    err = err.cause
    return texts


def check_history(instance: DagsterInstance, settings) -> list[str]:
    """Statuses of the storage topic's no_failed_batches check, newest first."""
    history = instance.event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(AssetKey(["kafka", settings.storage_topic]), "no_failed_batches"),
        limit=100,
    )
    return [h.status.value for h in history]


def error_chain(err) -> str:
    """An error's message with those of its causes and contexts."""
    parts = []
    while err is not None:
        parts.append(err.message)
        err = err.cause or getattr(err, "context", None)
    return " <- ".join(parts)


def failed_tick_errors(instance: DagsterInstance) -> list[str]:
    out = []
    for state in instance.all_instigator_state():
        for tick in instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=500):
            if tick.error is not None:
                out.append(error_chain(tick.error))
    return out


@pytest.mark.parametrize(("name", "seconds"), CASES)
def test_outage_heals_by_itself(
    settings, produce, storage_root, dagster_home, monkeypatch, stack_restored, name, seconds
):
    home, storage_url = dagster_home
    messages = synthetic_messages(storage_root, MESSAGES)
    pg_images = f'"{settings.postgres_schema}".dicom_image_meta'
    kafka = KafkaResource(bootstrap=settings.kafka_bootstrap)
    with dagster_process(["dagster-daemon", "run"], settings, home, storage_url):
        ends = {}
        for p in range(3):
            ends[p] = produce(encode(messages[p::3]), partition=p)[-1][1] + 1
        wait_until(
            lambda: count(settings.postgres_url, pg_images) > 0,
            300,
            "the first rows (draining has begun)",
            interval=0.2,
        )
        service(name, "stop")
        down_at = time.monotonic()
        time.sleep(seconds)  # the outage itself: its length is what this test is about
        service(name, "start")
        up_at = time.monotonic()

        def healed() -> bool:
            if count(settings.postgres_url, pg_images) != MESSAGES:
                return False
            if count(settings.doris_url, "dicom_image_meta") != MESSAGES:
                return False
            try:
                progress = kafka.group_progress(
                    settings.consumer_group, settings.storage_topic, range(3)
                )
            except Exception:
                return False
            if any(p not in progress or progress[p].committed != ends[p] for p in range(3)):
                return False
            with DagsterInstance.from_config(str(home)) as instance:
                if not all(r.is_finished for r in instance.get_runs()):
                    return False
                # the check turns green by itself at the sensor's next tick
                latest = check_history(instance, settings)[:1]
                return latest in ([], ["SUCCEEDED"])

        monkeypatch.setenv("DAGSTER_POSTGRES_URL", storage_url)
        wait_until(healed, HEAL_BOUND_S, f"healing after {name} was down {seconds}s", interval=1)
        heal_s = time.monotonic() - up_at

        with DagsterInstance.from_config(str(home)) as instance:
            runs = instance.get_runs()
            stuck = [r.run_id for r in runs if not r.is_finished]
            assert not stuck, f"runs left in progress: {stuck}"
            failures = failure_texts(instance)
            tick_errors = failed_tick_errors(instance)
            check_statuses = check_history(instance, settings)
            statuses = [r.status.value for r in runs]
    assert_tables_match(settings, messages)
    assert consume_all(settings.kafka_bootstrap, settings.dlq_topic) == []  # no dead letters

    # loud while it lasted
    if name == "kafka":
        assert any("did not answer" in e for e in tick_errors), tick_errors[:3]
    if name == "mariadb":
        assert any("MariaDB (Doris stand-in)" in t for t in failures), failures[:5]
    if check_statuses and check_statuses[0] != "SUCCEEDED":
        raise AssertionError(f"no_failed_batches still red after healing: {check_statuses[:3]}")

    figures = {
        "service": name,
        "outage_s": seconds,
        "heal_after_return_s": round(heal_s, 1),
        "total_s": round(time.monotonic() - down_at, 1),
        "runs": len(statuses),
        "failed_runs": statuses.count("FAILURE"),
        "failed_ticks": len(tick_errors),
        "check_went_red": "FAILED" in check_statuses,
    }
    print("OUTAGE", json.dumps(figures))
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / "outages.jsonl", "a") as f:
        f.write(json.dumps(figures) + "\n")
