"""Schedules of the pipeline's upkeep: verifying the batches that landed, and pruning
Dagster's own storage. Both only decide whether a run is due; the work is in the jobs
(``assets.checks`` and ``assets.retention_job``)."""

from dagster import (
    DefaultScheduleStatus,
    JobDefinition,
    RunRequest,
    RunsFilter,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from wado_pipeline.core.run_contract import RETENTION_SCHEDULE, UPKEEP_LANE, VERIFY_SCHEDULE
from wado_pipeline.resources.dagster_instance.dagster_runs import (
    IN_FLIGHT,
    ranges_to_verify,
    verified_through,
)
from wado_pipeline.resources.ingest_settings import IngestSettings


def build_verify_schedule(job: JobDefinition):
    @schedule(
        name=VERIFY_SCHEDULE,
        job=job,
        cron_schedule="* * * * *",
        default_status=DefaultScheduleStatus.RUNNING,
        description="Once a minute, when batches landed since the last verification, run "
        "the batch checks over them (every key in every table, rejects by reason).",
    )
    def verify_batches_schedule(context: ScheduleEvaluationContext, ingest: IngestSettings):
        instance = context.instance
        if instance.get_runs_count(RunsFilter(job_name=job.name, statuses=IN_FLIGHT)):
            return SkipReason("a verification is in flight")
        _, runs, _ = ranges_to_verify(
            instance, verified_through(instance), ingest.storage_topic, limit=50
        )
        if not runs:
            return SkipReason("no batch landed since the last verification")
        return RunRequest(tags=UPKEEP_LANE)

    return verify_batches_schedule


def build_retention_schedule(job: JobDefinition, interval_minutes: int):
    """``prune_dagster_storage`` every ``interval_minutes``, one run at a time."""
    minutes = min(max(int(interval_minutes), 1), 59)

    @schedule(
        name=RETENTION_SCHEDULE,
        job=job,
        cron_schedule="* * * * *" if minutes == 1 else f"*/{minutes} * * * *",
        default_status=DefaultScheduleStatus.RUNNING,
        description="Prune Dagster's storage: runs, their events and check results, and "
        "ticks older than WADO_RUN_RETENTION_DAYS (docs/sizing.md).",
    )
    def prune_dagster_storage_schedule(context: ScheduleEvaluationContext):
        if context.instance.get_runs_count(RunsFilter(job_name=job.name, statuses=IN_FLIGHT)):
            return SkipReason("the previous pruning is still in flight")
        return RunRequest(tags=UPKEEP_LANE)

    return prune_dagster_storage_schedule
