"""The latency harness of `bench steady` measures latency: rows that appear at known
moments while messages are still being "produced" are stamped when they appear, not
when production ends (the old harness's error: every stamp was the end of the window)."""

import threading
import time
from datetime import datetime
from types import SimpleNamespace

import pytest
from dagster import DagsterEventType
from sqlalchemy import create_engine, text

from wado_pipeline.bench.bench_pipeline import (
    RowWatcher,
    end_of_window,
    latency_breakdown,
    step_spans,
)

pytestmark = pytest.mark.stack

DELAYS = (1.0, 2.0, 3.0)  # seconds after "send" at which each row appears
WINDOW = 10.0  # the production window: the old harness stamped rows after it


def _insert(settings, trace_id: str) -> None:
    row = {
        "trace_id": trace_id,
        "worker_node_id": "DICOM_STORE_SCP",
        "tenant_id": "t",
        "patient_id": "p",
        "study_uid": "1.2",
        "series_uid": "1.2.3",
        "sop_uid": trace_id,
        "created_time": datetime(2026, 1, 1),
    }
    cols = ", ".join(row)
    for url, table in (
        (settings.postgres_url, f'"{settings.postgres_schema}".dicom_object_meta'),
        (settings.doris_url, "dicom_object_meta"),
    ):
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(
                text(f"INSERT INTO {table} ({cols}) VALUES ({', '.join(':' + c for c in row)})"),
                row,
            )
        engine.dispose()


def test_rows_are_stamped_when_they_appear(settings):
    ids = [f"lat-{i}" for i in range(len(DELAYS))]
    watcher = RowWatcher(settings).start()
    sent = time.time()
    appeared: dict[str, float] = {}

    def feed():
        for trace_id, delay in zip(ids, DELAYS, strict=True):
            pause = sent + delay - time.time()
            if pause > 0:
                time.sleep(pause)
            _insert(settings, trace_id)
            appeared[trace_id] = time.time()

    feeder = threading.Thread(target=feed)
    feeder.start()
    feeder.join()
    # production goes on until the end of the window; the rows are long visible
    remaining = sent + WINDOW - time.time()
    if remaining > 0:
        time.sleep(remaining)  # the window itself is what is under test
    assert watcher.wait_for(set(ids), timeout=60)
    seen = watcher.stop()
    for trace_id in ids:
        for db in ("pg", "maria"):
            stamp = seen[db][trace_id]
            # stamped at or after it appeared, and well before the window ended
            assert stamp >= appeared[trace_id] - 0.05, (db, trace_id)
            assert stamp - appeared[trace_id] < WINDOW / 2, (db, trace_id)
    latencies = [seen["pg"][t] - sent for t in ids]
    assert latencies == sorted(latencies)  # the known delays come back in order
    assert latencies[0] < WINDOW - 2  # the old harness reported >= WINDOW for all


def test_end_of_window_counts_what_was_not_yet_requested_or_visible():
    """Two partitions, last send at t=10. Partition 0: offsets 0-3, a run requested at
    t=5 covers 0-2, one requested at t=11 (after the end) covers the rest; offset 0 is
    visible at t=7, the others at t=12. Partition 1: offset 0, requested at t=9 and
    visible at t=9.5."""
    sent = {"a": 1.0, "b": 2.0, "c": 8.0, "d": 10.0, "e": 3.0}
    where = {(0, 0): "a", (0, 1): "b", (0, 2): "c", (0, 3): "d", (1, 0): "e"}
    visible = {"a": 7.0, "b": 12.0, "c": 12.0, "d": 12.5, "e": 9.5}
    requested = [(0, 2, 5.0), (0, 4, 11.0), (1, 1, 9.0)]
    out = end_of_window(sent, where, visible, requested)
    assert out["unrequested_at_end"] == {"0": 2, "1": 0}
    assert out["not_visible_at_end"] == {"0": 3, "1": 0}
    assert out["catch_up_s"] == 2.5
    # a message never seen: no catch-up time
    assert end_of_window(sent, where, {"a": 7.0}, requested)["catch_up_s"] is None


def _event(step, kind, t):
    return SimpleNamespace(step_key=step, dagster_event_type=kind, timestamp=t)


def test_a_runs_time_splits_into_its_steps_and_dagsters_work_around_them():
    """Run started at 100.0 and ended at 101.0; read_batch 100.1-100.4, write_postgres
    100.45-100.75 (rows visible at 100.7), and a step that never succeeded (left out)."""
    events = [
        _event(None, DagsterEventType.RUN_START, 100.0),
        _event("ingest_batch.read_batch", DagsterEventType.STEP_START, 100.1),
        _event("ingest_batch.read_batch", DagsterEventType.STEP_SUCCESS, 100.4),
        _event("ingest_batch.write_postgres", DagsterEventType.STEP_START, 100.45),
        _event("ingest_batch.write_postgres", DagsterEventType.STEP_OUTPUT, 100.6),
        _event("ingest_batch.write_postgres", DagsterEventType.STEP_SUCCESS, 100.75),
        _event("ingest_batch.write_doris", DagsterEventType.STEP_START, 100.8),
    ]
    spans = step_spans(events)
    assert spans == {"read_batch": (100.1, 100.4), "write_postgres": (100.45, 100.75)}
    run = {"partition": 0, "start": 0, "end": 1, "requested": 99.5, "dequeued": 99.6}
    run.update(started=100.0, ended=101.0, steps=spans)
    got = latency_breakdown([run], {"m": 99.0}, {(0, 0): "m"}, {"m": 100.7})

    def p50(name):
        return round(got[name]["p50"], 2)

    assert p50("step:read_batch_s") == 0.3 and p50("step:write_postgres_s") == 0.3
    assert p50("run_start_to_first_step_s") == 0.1
    assert p50("last_step_to_run_end_s") == 0.25
    assert p50("between_steps_s") == 0.05
    assert p50("first_message_age_at_request_s") == 0.5
    assert p50("run_start_to_rows_visible_s") == 0.7
