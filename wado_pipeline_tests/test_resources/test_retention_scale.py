"""Retention at a site's scale: one tick deletes every run past the window that it may,
up to its bound, and says truthfully whether it finished."""

from __future__ import annotations

import uuid

from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, instance_for_test

from wado_pipeline.resources.dagster_instance.dagster_pruning import prune


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
