"""``bench retention``: how fast the pruning of Dagster's storage deletes finished runs
past the window, on the stack's PostgreSQL storage (a database of its own).

It makes N finished runs of the ingest job, each with as many stored events as a batch
run writes (about 40), all past the window, then runs the retention rules tick by tick
at their defaults (2,000 runs and 60 s per tick at most) until none is left, and prints
runs deleted per second next to the run rates the pipeline makes.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path

from dagster import DagsterEvent, DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus

from wado_pipeline.bench.sandbox import dagster_home
from wado_pipeline.core.run_contract import JOB_NAME
from wado_pipeline.dagster_internals import EngineEventData, EventLogEntry
from wado_pipeline.instance.storage_pool import pool_dagster_storage
from wado_pipeline.resources.dagster_instance.dagster_pruning import prune
from wado_pipeline.settings import Settings

EVENTS_PER_RUN = 40  # what a batch run stores (steps, outputs, materializations, logs)
# Batch runs per hour at 10 and 100 msg/s (docs/sizing.md).
RUN_RATES = {"10 msg/s": 780, "100 msg/s": 1380}


def _finished_run(instance: DagsterInstance) -> None:
    run = DagsterRun(job_name=JOB_NAME, run_id=str(uuid.uuid4()))
    instance.add_run(run.with_status(DagsterRunStatus.SUCCESS))
    for i in range(EVENTS_PER_RUN):
        event = DagsterEvent(
            event_type_value=DagsterEventType.ENGINE_EVENT.value,
            job_name=JOB_NAME,
            message=f"event {i}",
            event_specific_data=EngineEventData(),
        )
        instance.store_event(
            EventLogEntry(
                error_info=None,
                level=20,
                user_message="",
                run_id=run.run_id,
                timestamp=time.time(),
                dagster_event=event,
            )
        )


def retention(n: int) -> dict:
    settings = Settings.from_env()
    with (
        tempfile.TemporaryDirectory() as tmp,
        dagster_home(Path(tmp), settings.postgres_url) as (home, url),
    ):
        os.environ["DAGSTER_POSTGRES_URL"] = url
        instance = DagsterInstance.from_config(str(home))
        pool_dagster_storage(instance)  # as the prune_dagster_storage run does
        try:
            t0 = time.monotonic()
            for _ in range(n):
                _finished_run(instance)
            made_s = time.monotonic() - t0
            ticks, deleted, t1 = [], 0, time.monotonic()
            while True:
                report = prune(instance, -3600.0, settings.storage_topic, lambda parts: {})
                ticks.append({"deleted": report.deleted, "s": report.seconds})
                deleted += report.deleted
                if report.complete or not report.deleted:
                    break
            elapsed = time.monotonic() - t1
            left = len(instance.get_run_ids())
        finally:
            instance.dispose()
    per_s = deleted / elapsed if elapsed else 0.0
    per_hour = per_s * 3600
    return {
        "mode": "retention",
        "runs": n,
        "events_per_run": EVENTS_PER_RUN,
        "made_in_s": round(made_s, 1),
        "deleted": deleted,
        "left": left,
        "ticks": ticks,
        "seconds": round(elapsed, 1),
        "runs_deleted_per_s": round(per_s, 1),
        "runs_deleted_per_hour": round(per_hour),
        **{
            f"x_run_rate_{rate.replace(' ', '_').replace('/', '_per_')}": round(per_hour / r, 1)
            for rate, r in RUN_RATES.items()
        },
    }
