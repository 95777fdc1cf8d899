"""Dagster's run storage, as the sensor and the checks read it: runs in flight and
failed runs per partition, and ending runs whose worker is gone."""

from __future__ import annotations

import time

from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter

from wado_pipeline.core.contract import PARTITION_TAG, RANGE_TAG, range_from_tags

IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


def in_flight_runs(instance: DagsterInstance, job_name: str) -> list[DagsterRun]:
    return list(instance.get_runs(RunsFilter(job_name=job_name, statuses=IN_FLIGHT)))


def failed_runs_by_range(
    instance: DagsterInstance, job_name: str, ptag: str
) -> dict[tuple[int, int], str]:
    """The newest failed run of each recent range of a partition (to name in a check)."""
    runs = instance.get_runs(
        RunsFilter(
            job_name=job_name, statuses=[DagsterRunStatus.FAILURE], tags={PARTITION_TAG: ptag}
        ),
        limit=50,
    )
    out: dict[tuple[int, int], str] = {}
    for r in runs:  # newest first
        rng = range_from_tags(r.tags)
        if rng is not None and rng not in out:
            out[rng] = r.run_id
    return out


def end_ghost_runs(
    instance: DagsterInstance, runs: list[DagsterRun], stale_seconds: float, log
) -> list[str]:
    """Mark failed every ``STARTED`` run that stored no event for ``stale_seconds``.

    Its worker is gone (a live run stores events at every step and every retry of a
    call), so it would hold its partition's concurrency slot forever. Dagster's default
    run launcher cannot check a worker's health; this is the smallest watchdog that can."""
    now = time.time()
    ended = []
    for run in runs:
        if run.status != DagsterRunStatus.STARTED:
            continue
        records = instance.get_records_for_run(run.run_id, limit=1, ascending=False).records
        last = records[0].timestamp if records else None
        if last is not None and now - last < stale_seconds:
            continue
        message = (
            f"No event for over {stale_seconds:.0f}s: the run worker is gone (killed, or lost "
            "Dagster's storage). Ended by the storage topic sensor; its range runs again."
        )
        log.warning(f"run {run.run_id} {run.tags.get(RANGE_TAG)}: {message}")
        instance.report_run_failed(run, message=message)
        ended.append(run.run_id)
    return ended
