"""The ``prune_dagster_storage`` job: keeps Dagster's own storage at a plateau.

Every batch is a run, and every run leaves events, check results and ticks behind
(docs/sizing.md has the figures). Its schedule runs this every
``WADO_RETENTION_INTERVAL_MINUTES``; the rules are in ``core.retention_rules``, the deleting
in ``resources.dagster_instance.dagster_pruning``.
"""

from dagster import Failure, MetadataValue, OpExecutionContext, Output, job, op

from wado_pipeline.assets import batch_steps
from wado_pipeline.core.run_contract import RETENTION_JOB, UPKEEP_JOB_TAGS
from wado_pipeline.instance.storage_pool import pool_dagster_storage
from wado_pipeline.resources.dagster_instance import dagster_pruning
from wado_pipeline.resources.ingest_settings import IngestSettings
from wado_pipeline.resources.kafka import KafkaResource
from wado_pipeline.resources.postgres import PostgresResource

DAY_S = 86400.0


@op
def prune_runs(
    context: OpExecutionContext,
    kafka: KafkaResource,
    postgres: PostgresResource,
    ingest: IngestSettings,
):
    """Delete finished runs older than ``WADO_RUN_RETENTION_DAYS``, with their events
    and check results, and old ticks; bounded per tick (the next tick goes on). Then
    commit the consumer group's progress again, so an idle partition's commit never
    reaches Kafka's ``offsets.retention.minutes``."""
    if ingest.run_retention_days <= 0:
        raise Failure(description="WADO_RUN_RETENTION_DAYS must be above 0", allow_retries=False)
    topic = ingest.storage_topic
    pool_dagster_storage(context.instance)  # a connection per deleted run's calls otherwise
    report = dagster_pruning.prune(
        context.instance,
        ingest.run_retention_days * DAY_S,
        topic,
        lambda parts: kafka.group_progress(ingest.consumer_group, topic, parts),
    )
    if not report.complete:
        context.log.warning(
            f"retention stopped at its bound after {report.examined} runs; the next tick goes on"
        )
    refreshed = batch_steps.refresh_commits(kafka, postgres, ingest.consumer_group, topic)
    yield Output(
        None,
        metadata={
            "group_commits_refreshed": refreshed,
            "runs_examined": report.examined,
            "runs_deleted": report.deleted,
            "kept_latest_materialization": report.kept_latest,
            "kept_unresolved_failure": report.kept_unresolved,
            "complete": report.complete,
            "seconds": report.seconds,
            # the window's start: older skipped and successful ticks were dropped too
            **(
                {"ticks_purged_before": MetadataValue.timestamp(report.ticks_purged_before)}
                if report.ticks_purged_before is not None
                else {}
            ),
        },
    )


@job(
    name=RETENTION_JOB,
    tags=UPKEEP_JOB_TAGS,
    description="Delete Dagster runs (events, check results) and ticks older than "
    "WADO_RUN_RETENTION_DAYS, keeping unresolved failures and each asset's latest "
    "materialization.",
)
def prune_dagster_storage():
    prune_runs()
