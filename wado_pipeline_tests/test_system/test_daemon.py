"""The real deployment: dagster-daemon with the sensor, queued runs, dagster-postgres
storage. Messages are produced and rows arrive without anything called by hand."""

import itertools
import statistics
from collections import defaultdict
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus
from sqlalchemy import create_engine, text

from wado_pipeline.bench.sandbox import dagster_process
from wado_pipeline.core.run_contract import (
    JOB_NAME,
    PARTITION_TAG,
    RANGE_TAG,
    SENSOR_MIN_INTERVAL_SECONDS,
    SENSOR_TICK_SECONDS,
)
from wado_pipeline_tests.support import (
    await_exit_of_processes_mentioning,
    encode,
    synthetic_messages,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.stack, pytest.mark.slow]


def _sensor_tick_gaps(storage_url: str) -> list[float]:
    engine = create_engine(storage_url)
    try:
        with engine.connect() as conn:
            stamps = conn.execute(
                text("SELECT timestamp FROM job_ticks WHERE type = 'SENSOR' ORDER BY timestamp")
            ).scalars()
            stamps = [t.timestamp() for t in stamps]
    finally:
        engine.dispose()
    return [b - a for a, b in itertools.pairwise(stamps)]


def test_daemon_ingests_without_manual_steps(
    settings, produce, storage_root, dagster_home, monkeypatch
):
    home, storage_url = dagster_home
    messages = synthetic_messages(storage_root, 1000)
    daemon = dagster_process(["dagster-daemon", "run"], settings, home, storage_url)
    with daemon:
        for p in range(3):
            produce(encode(messages[p::3]), partition=p)
        pg = create_engine(settings.postgres_url)

        count_sql = text(f'SELECT count(*) FROM "{settings.postgres_schema}".dicom_image_meta')

        def image_rows():
            with pg.connect() as conn:
                try:
                    return conn.execute(count_sql).scalar_one() == 1000
                except Exception:  # the table appears with the first run
                    conn.rollback()
                    return False

        wait_until(image_rows, 300, "1,000 image rows in PostgreSQL", interval=2)
        pg.dispose()
        monkeypatch.setenv("DAGSTER_POSTGRES_URL", storage_url)
        instance = DagsterInstance.from_config(str(home))
        try:

            def all_done():
                runs = instance.get_runs()
                return runs if runs and all(r.is_finished for r in runs) else None

            try:
                runs = wait_until(all_done, 120, "runs to finish")
            except AssertionError:
                statuses = [(r.tags.get(RANGE_TAG), r.status.value) for r in instance.get_runs()]
                raise AssertionError(f"runs not finished: {statuses}") from None
            assert all(r.status == DagsterRunStatus.SUCCESS for r in runs)
            # the batches' runs; the schedules' verification and pruning runs aside
            runs = [r for r in runs if r.job_name == JOB_NAME]
            by_partition = defaultdict(list)
            for r in runs:
                start, end = (int(x) for x in r.tags[RANGE_TAG].split("-"))
                by_partition[r.tags[PARTITION_TAG]].append((start, end))
            for part, rngs in by_partition.items():
                covered = sorted(o for s, e in rngs for o in range(s, e))
                assert covered == list(range(len(covered))), part  # each offset once
            assert sum(len(v) for v in by_partition.values()) == len(runs)
            assert sum(e - s for v in by_partition.values() for s, e in v) == 1000
            # The sensor ticked at the coordinator's loop, not Dagster's 5 s (whose gaps
            # are never under 5 s), and never more often than its minimum interval. A
            # tick that takes longer than the loop on a busy machine delays the next,
            # so the gaps are bounded below only.
            gaps = _sensor_tick_gaps(storage_url)
            assert len(gaps) >= 2  # a fast drain is over in a few ticks
            assert min(gaps) >= SENSOR_MIN_INTERVAL_SECONDS - 0.05
            assert statistics.median(gaps) < 5 - SENSOR_TICK_SECONDS, gaps
        finally:
            instance.dispose()
    # Code servers and run workers must end too: a run process that kept its header-
    # parsing pool alive would never exit (multiprocessing joins children on exit).
    await_exit_of_processes_mentioning(
        str(home), 60, "the code servers and run workers of this test to exit"
    )
