"""Retention at a site's scale: one tick deletes every run past the window that it may,
up to its bound, and says truthfully whether it finished."""

from __future__ import annotations

import uuid

import pytest
from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, instance_for_test
from sqlalchemy import create_engine, text

from wado_pipeline.core.planning import OffsetRange
from wado_pipeline.core.run_contract import JOB_NAME, run_config_for, tags_for
from wado_pipeline.instance.storage_pool import pool_dagster_storage
from wado_pipeline.resources.dagster_instance.dagster_pruning import VACUUMED_TABLES, prune
from wado_pipeline_tests.test_system.test_retention import PER_RUN, _rows_of


def _finished_runs(instance: DagsterInstance, n: int) -> set[str]:
    ids = set()
    for _ in range(n):
        run = DagsterRun(job_name="ingest_job", run_id=str(uuid.uuid4()))
        instance.add_run(run.with_status(DagsterRunStatus.SUCCESS))
        ids.add(run.run_id)
    return ids


def test_one_tick_deletes_more_than_one_chunk():
    """Paging from a run the page then deletes ended the pass after one chunk (100)."""
    with instance_for_test() as instance:
        made = _finished_runs(instance, 250)
        # every run is past a window that ended an hour from now
        report = prune(instance, -3600.0, "storage_queue", lambda parts: {}, chunk=100)
        left = {r.run_id for r in instance.get_runs()}
        assert report.deleted == 250 and report.examined == 250
        assert not (left & made)
        assert report.complete


def test_a_bounded_tick_says_it_did_not_finish():
    with instance_for_test() as instance:
        made = _finished_runs(instance, 90)
        report = prune(instance, -3600.0, "storage_queue", lambda parts: {}, max_runs=50, chunk=20)
        assert report.deleted == 50 and not report.complete
        assert len({r.run_id for r in instance.get_runs()} & made) == 40
        report = prune(instance, -3600.0, "storage_queue", lambda parts: {}, chunk=20)
        assert report.deleted == 40 and report.complete


SITE_SCALE_RUNS = 10_000


def _insert_finished_runs(instance: DagsterInstance, n: int) -> set[str]:
    """``n`` finished ingest runs, each with the tags a batch run carries, through the
    instance's own storage API."""
    from dagster import DagsterRun, DagsterRunStatus

    ids = set()
    for i in range(n):
        range_ = OffsetRange("storage_queue", i % 4, i * 50, i * 50 + 50)
        run = DagsterRun(
            job_name=JOB_NAME,
            run_id=str(uuid.uuid4()),
            tags=tags_for(range_),
            run_config=run_config_for(range_),
            status=DagsterRunStatus.SUCCESS,
        )
        instance.add_run(run)
        ids.add(run.run_id)
    return ids


def _vacuumed_tables(storage_url: str) -> set[str]:
    engine = create_engine(storage_url)
    try:
        with engine.connect() as conn:
            return set(
                conn.execute(
                    text("SELECT relname FROM pg_stat_user_tables WHERE last_vacuum IS NOT NULL")
                ).scalars()
            )
    finally:
        engine.dispose()


@pytest.mark.stack
def test_retention_of_ten_thousand_runs_on_postgres_storage(dagster_home, monkeypatch, capsys):
    """A site's backlog of finished runs past the window: one tick deletes up to its bound
    and says it did not finish; ticks at that bound then delete all, and the last says it
    finished. The bound must keep up with 2,000 runs an hour at the default interval."""
    from wado_pipeline.settings import Settings

    home, storage_url = dagster_home
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", storage_url)
    defaults = Settings()
    per_hour = 60 / defaults.retention_interval_minutes
    with DagsterInstance.from_config(str(home)) as instance:
        pool_dagster_storage(instance)  # as the prune_dagster_storage run does
        made = _insert_finished_runs(instance, SITE_SCALE_RUNS)
        assert _rows_of(storage_url, made)["runs"] == SITE_SCALE_RUNS
        first = prune(instance, -3600.0, "storage_queue", lambda parts: {})
        assert 0 < first.deleted < SITE_SCALE_RUNS and not first.complete
        # a tick's budget: its run bound, or its time bound if that came first
        assert first.deleted == 2000 or first.seconds >= 60.0
        # the default interval deletes what 2,000 runs an hour make
        assert first.deleted * per_hour >= 2000
        reports = [first]
        while not reports[-1].complete:
            reports.append(prune(instance, -3600.0, "storage_queue", lambda parts: {}))
            assert reports[-1].deleted > 0 or reports[-1].complete
        assert sum(r.deleted for r in reports) == SITE_SCALE_RUNS
        assert _rows_of(storage_url, made) == dict.fromkeys(PER_RUN, 0)
        # the tables it deleted from were vacuumed: their space is reused at once
        vacuumed = _vacuumed_tables(storage_url)
        assert set(VACUUMED_TABLES) <= vacuumed, vacuumed
        with capsys.disabled():  # shown in every run
            print(
                f"\n[retention] {SITE_SCALE_RUNS} runs on PostgreSQL storage: "
                f"{len(reports)} ticks, first deleted {first.deleted} in {first.seconds:.1f} s, "
                f"{SITE_SCALE_RUNS / sum(r.seconds for r in reports):.1f} runs/s"
            )
