"""Pruning Dagster's own storage: finished runs past the retention window, with their
events and check results, and the schedules' and sensors' old ticks.

What may go is decided by ``core.retention_rules``; this reads what it needs from the Dagster
instance and the consumer group, and deletes in bounded chunks, each its own
transactions, so the sensor's ticks and the runs keep going meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from sqlalchemy import delete, func, select, text

from wado_pipeline.core.planning import OffsetRange
from wado_pipeline.core.progress import PartitionProgress
from wado_pipeline.core.retention_rules import FinishedRun, Redone, deletable
from wado_pipeline.core.run_contract import (
    RETENTION_JOB,
    SINK_TAG,
    VERIFY_JOB,
    ranges_of_run,
)
from wado_pipeline.dagster_internals import AssetCheckExecutionsTable, TickStatus

FINISHED = [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]
# The upkeep jobs' own runs (a verification, a pruning) are kept a day at most: only
# their latest results matter, and those are protected like any other.
UPKEEP_JOBS = (VERIFY_JOB, RETENTION_JOB)
UPKEEP_RETENTION_S = 86400.0


@dataclass
class PruneReport:
    examined: int = 0
    deleted: int = 0
    kept_latest: int = 0
    kept_unresolved: int = 0
    ticks_purged_before: float | None = None
    seconds: float = 0.0
    complete: bool = True  # False: the tick's bound stopped it; the next tick goes on


def protected_runs(instance: DagsterInstance) -> set[str]:
    """Runs holding any asset's latest materialization or any check's latest result
    (of every asset and check the storage knows, defined now or not)."""
    keep: set[str] = set()
    keys = list(instance.get_asset_keys())
    for event in instance.get_latest_materialization_events(keys).values():
        if event is not None:
            keep.add(event.run_id)
    storage = instance.event_log_storage
    if hasattr(storage, "index_connection"):
        t = AssetCheckExecutionsTable
        latest = select(func.max(t.c.id)).group_by(t.c.asset_key, t.c.check_name).scalar_subquery()
        with storage.index_connection() as conn:
            rows = conn.execute(select(t.c.run_id).where(t.c.id.in_(latest))).all()
        keep.update(run_id for (run_id,) in rows if run_id)
    return keep


def _finished_run(record, topic: str) -> FinishedRun:
    run = record.dagster_run
    ranges = ranges_of_run(run.run_config or {}, run.tags, topic) or []
    return FinishedRun(
        run_id=run.run_id,
        succeeded=run.status == DagsterRunStatus.SUCCESS,
        ranges=tuple(r for r in ranges if r.topic == topic),
        sink=run.tags.get(SINK_TAG),
    )


def _rebuilt(instance: DagsterInstance, topic: str, sinks: set[str]) -> dict:
    """Ranges rebuilt successfully, per sink (only asked for when a failed rebuild run
    is past the window)."""
    out: dict[str, list[OffsetRange]] = {}
    for sink in sinks:
        runs = instance.get_runs(
            RunsFilter(statuses=[DagsterRunStatus.SUCCESS], tags={SINK_TAG: sink})
        )
        for run in runs:
            out.setdefault(sink, []).extend(
                ranges_of_run(run.run_config or {}, run.tags, topic) or []
            )
    return out


def delete_runs(instance: DagsterInstance, run_ids: list[str]) -> None:
    """Delete runs with their events (Dagster's ``delete_run``) and their check results,
    which ``delete_run`` leaves behind in ``asset_check_executions``."""
    for run_id in run_ids:
        instance.delete_run(run_id)
    storage = instance.event_log_storage
    if hasattr(storage, "index_connection") and run_ids:
        with storage.index_connection() as conn:
            conn.execute(
                delete(AssetCheckExecutionsTable).where(
                    AssetCheckExecutionsTable.c.run_id.in_(run_ids)
                )
            )


def purge_ticks(instance: DagsterInstance, before: float) -> None:
    """Skipped and successful ticks of every schedule and sensor older than ``before``
    (their runs are gone by then); failed ticks are left to dagster.yaml's retention."""
    for state in instance.all_instigator_state():
        instance.purge_ticks(
            state.instigator_origin_id,
            state.selector_id,
            before=before,
            tick_statuses=[TickStatus.SKIPPED, TickStatus.SUCCESS],
        )


# What the pruning deletes from (Dagster's PostgreSQL tables).
VACUUMED_TABLES = ("event_logs", "runs", "run_tags", "asset_check_executions", "job_ticks")


def vacuum_storage(instance: DagsterInstance) -> bool:
    """``VACUUM`` the tables the pruning deleted from, so the space of the deleted rows
    is reused by the next ones at once instead of after autovacuum's next visit: at a
    tick a second, the storage plateaus within minutes (``test_soak.py``). Plain VACUUM
    takes no lock that blocks reads or writes. False for storage that is not PostgreSQL;
    a table the storage's user does not own is skipped by PostgreSQL with a warning."""
    storage = instance.event_log_storage
    if not hasattr(storage, "index_connection") or "postgres" not in type(storage).__name__.lower():
        return False
    with storage.index_connection() as conn:  # an autocommit connection: VACUUM needs one
        conn.execute(text(f"VACUUM (ANALYZE) {', '.join(VACUUMED_TABLES)}"))
    return True


def prune(
    instance: DagsterInstance,
    retention_s: float,
    topic: str,
    progress_of: Callable[[list[int]], dict[int, PartitionProgress]],
    max_runs: int = 2000,
    chunk: int = 100,
    max_seconds: float = 60.0,
) -> PruneReport:
    """One tick of retention: examine finished runs last updated before the window,
    oldest first, at most ``max_runs`` of them and for at most ``max_seconds``, and
    delete those the rules allow, ``chunk`` at a time. ``progress_of(partitions)``: the
    consumer group's progress on ``topic``."""
    pruning = _Pruning(instance, topic, progress_of, max_runs, chunk, max_seconds)
    now = time.time()
    cutoff = now - retention_s
    pruning.one_pass(cutoff)
    upkeep_cutoff = now - min(retention_s, UPKEEP_RETENTION_S)
    if upkeep_cutoff > cutoff:
        for job_name in UPKEEP_JOBS:
            pruning.one_pass(upkeep_cutoff, job_name)
    purge_ticks(instance, cutoff)
    vacuum_storage(instance)
    report = pruning.report
    report.ticks_purged_before = cutoff
    report.seconds = round(time.monotonic() - pruning.t0, 2)
    return report


class _Pruning:
    """One tick's passes over the finished runs, within its bounds."""

    def __init__(self, instance, topic, progress_of, max_runs, chunk, max_seconds) -> None:
        self.instance, self.topic, self.progress_of = instance, topic, progress_of
        self.max_runs, self.chunk, self.max_seconds = max_runs, chunk, max_seconds
        self.t0 = time.monotonic()
        self.report = PruneReport()
        self.keep = protected_runs(instance)
        self.redone = Redone()
        self.asked: set[int] = set()  # partitions whose progress was read

    def redone_for(self, failed: list[FinishedRun]) -> Redone:
        """Progress and rebuilds for the failed runs' partitions and sinks, each read
        once per tick and only when a failed run is past the window."""
        parts = {r.partition for c in failed for r in c.ranges} - self.asked
        if parts:
            self.asked.update(parts)
            found = self.progress_of(sorted(parts))
            self.redone.progress.update({(self.topic, p): pr for p, pr in found.items()})
        sinks = {c.sink for c in failed if c.sink} - set(self.redone.rebuilt)
        if sinks:
            rebuilt = _rebuilt(self.instance, self.topic, sinks)
            self.redone.rebuilt.update({sink: rebuilt.get(sink, []) for sink in sinks})
        return self.redone

    def out_of_budget(self) -> bool:
        report = self.report
        return report.examined >= self.max_runs or time.monotonic() - self.t0 > self.max_seconds

    def one_pass(self, before: float, job_name: str | None = None) -> None:
        filters = RunsFilter(
            job_name=job_name,
            statuses=FINISHED,
            updated_before=datetime.fromtimestamp(before, tz=UTC),
        )
        cursor = None
        while True:
            if self.out_of_budget():
                self.report.complete = False
                return
            records = self.instance.get_run_records(
                filters,
                limit=min(self.chunk, self.max_runs - self.report.examined),
                ascending=True,
                cursor=cursor,
            )
            if not records:
                return
            kept = self.prune_page([_finished_run(r, self.topic) for r in records])
            # Dagster pages with ``id > (the cursor run's id)``: a deleted cursor run ends
            # the pass with an empty page. Page on from the last run this page kept (or,
            # when it kept none, from the same place as before: those runs are gone).
            if kept:
                cursor = kept[-1]

    def prune_page(self, candidates: list[FinishedRun]) -> list[str]:
        """Delete what the rules allow of one page; returns the ids of the runs kept."""
        report = self.report
        report.examined += len(candidates)
        failed = [c for c in candidates if not c.succeeded and c.ranges]
        ids = deletable(candidates, self.keep, self.redone_for(failed) if failed else Redone())
        latest = sum(1 for c in candidates if c.run_id in self.keep)
        report.kept_latest += latest
        report.kept_unresolved += len(candidates) - len(ids) - latest
        delete_runs(self.instance, ids)
        report.deleted += len(ids)
        gone = set(ids)
        return [c.run_id for c in candidates if c.run_id not in gone]
