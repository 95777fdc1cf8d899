"""Dagster's run storage, as the sensor, the runs and the checks read it: runs in flight
and failed runs per partition, runs launched without a range, the sensor's cursor and
ticks, and ending runs whose worker is gone."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter

from wado_pipeline.core.planning import Cursor, OffsetRange
from wado_pipeline.core.run_contract import (
    JOB_NAME,
    PARTITION_TAG,
    PENDING_TAG,
    REBUILD_JOB,
    REBUILD_PLAN_TAG,
    SENSOR_NAME,
    VERIFIED_TAG,
    VERIFY_JOB,
    has_range_config,
    range_from_tags,
    ranges_from_pending_tag,
    ranges_of_run,
)

IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


def in_flight_runs(instance: DagsterInstance, job_name: str) -> list[DagsterRun]:
    return list(instance.get_runs(RunsFilter(job_name=job_name, statuses=IN_FLIGHT)))


def launched_without_range(instance: DagsterInstance) -> list[DagsterRun]:
    """Runs in flight that were launched without an offset range ("Materialize all" in
    the UI) and resolve their ranges themselves: the ingest job's or the implicit asset
    job's (the code location has no other assets)."""
    runs = instance.get_runs(RunsFilter(statuses=IN_FLIGHT))
    return [
        r
        for r in runs
        if PENDING_TAG in r.tags
        or (
            (r.job_name == JOB_NAME or r.job_name.startswith("__ASSET_JOB"))
            and not has_range_config(r.run_config or {})
        )
    ]


def recent_rebuild_plans(instance: DagsterInstance, limit: int = 20) -> list[DagsterRun]:
    """Sink rebuild plans that succeeded, newest first."""
    runs = instance.get_runs(
        RunsFilter(job_name=REBUILD_JOB, statuses=[DagsterRunStatus.SUCCESS]), limit=limit
    )
    return [r for r in runs if REBUILD_PLAN_TAG in r.tags]


def claimed_ranges(runs: list[DagsterRun], topic: str) -> dict[int, list[tuple[int, int]]]:
    """Per partition, the ranges that runs launched without a range have resolved."""
    out: dict[int, list[tuple[int, int]]] = {}
    for r in runs:
        for rng in ranges_from_pending_tag(topic, r.tags.get(PENDING_TAG, "")):
            out.setdefault(rng.partition, []).append((rng.start, rng.end))
    return out


def sensor_cursor(instance: DagsterInstance, topic: str) -> Cursor | None:
    """The storage topic sensor's cursor, if it has one."""
    for state in instance.all_instigator_state():
        if state.instigator_name == SENSOR_NAME and state.instigator_data is not None:
            cursor = getattr(state.instigator_data, "cursor", None)
            if cursor:
                return Cursor.from_json(cursor, topic)
    return None


def sensor_running(instance: DagsterInstance) -> bool:
    """Whether the sensor is on: started, or running by default and never stopped."""
    for state in instance.all_instigator_state():
        if state.instigator_name == SENSOR_NAME:
            return state.status.value in ("RUNNING", "DECLARED_IN_CODE")
    return False


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


# How far back the first verification looks (no earlier verification to start from).
FIRST_VERIFICATION_LOOKBACK_S = 3600.0


def verified_through(instance: DagsterInstance) -> float:
    """The update time (epoch s) of the newest run the last successful verification
    covered; without one, an hour ago."""
    runs = instance.get_runs(
        RunsFilter(job_name=VERIFY_JOB, statuses=[DagsterRunStatus.SUCCESS]), limit=1
    )
    if runs and VERIFIED_TAG in runs[0].tags:
        return float(runs[0].tags[VERIFIED_TAG])
    return time.time() - FIRST_VERIFICATION_LOOKBACK_S


def ranges_to_verify(
    instance: DagsterInstance, after: float, topic: str, limit: int
) -> tuple[list[OffsetRange], int, float]:
    """The offset ranges of runs that succeeded (last updated) after ``after``, oldest
    first, at most ``limit`` runs: (ranges, runs, update time of the newest run seen).

    Any successful run with a range counts: the sensor's, a re-execution, a rebuild, a
    run launched from the UI. A run is seen again if it is updated at the same instant
    as ``after``: verifying twice is harmless, missing one is not."""
    records = instance.get_run_records(
        RunsFilter(
            statuses=[DagsterRunStatus.SUCCESS],
            updated_after=datetime.fromtimestamp(after, tz=UTC),
        ),
        limit=limit,
        order_by="update_timestamp",
        ascending=True,
    )
    ranges: list[OffsetRange] = []
    runs = 0
    newest = after
    for rec in records:
        newest = max(newest, rec.update_timestamp.timestamp())
        run = rec.dagster_run
        if run.job_name == VERIFY_JOB:
            continue
        mine = ranges_of_run(run.run_config or {}, run.tags, topic) or []
        mine = [r for r in mine if r.topic == topic]
        if mine:
            ranges.extend(mine)
            runs += 1
    return ranges, runs, newest
