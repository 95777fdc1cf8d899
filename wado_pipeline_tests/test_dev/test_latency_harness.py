"""The latency harness of `bench steady` measures latency: rows that appear at known
moments while messages are still being "produced" are stamped when they appear, not
when production ends (the old harness's error: every stamp was the end of the window)."""

import threading
import time
from datetime import datetime

import pytest
from sqlalchemy import create_engine, text

from wado_pipeline.dev.bench_pipeline import RowWatcher

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
