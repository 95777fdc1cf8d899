"""The one ``Definitions`` of the project: assets, job, sensor, resources.

Resources are chosen and built from ``Settings`` by ``resources.configured``.
"""

from __future__ import annotations

from dagster import (
    AssetSelection,
    Definitions,
    define_asset_job,
    in_process_executor,
)

from wado_pipeline.assets.batch_assets import build_ingest_assets
from wado_pipeline.assets.checks import build_batch_checks, build_storage_checks
from wado_pipeline.assets.keys import asset_keys, sink_keys
from wado_pipeline.assets.rebuild_job import rebuild_sink
from wado_pipeline.assets.retention_job import prune_dagster_storage
from wado_pipeline.core.run_contract import JOB_NAME, UPKEEP_JOB_TAGS, VERIFY_JOB
from wado_pipeline.resources.configured import build_resources
from wado_pipeline.sensors.kafka_offsets import build_kafka_sensor
from wado_pipeline.sensors.schedules import build_retention_schedule, build_verify_schedule
from wado_pipeline.settings import Settings


def build_definitions(settings: Settings) -> Definitions:
    storage, ingest_batch = build_ingest_assets(settings)
    # The batch checks are not steps of a batch run: verify_batches runs them over what
    # landed since its last run (assets/checks.py says why).
    job = define_asset_job(
        JOB_NAME,
        selection=AssetSelection.assets(ingest_batch).without_checks(),
        executor_def=in_process_executor,
        description="One micro-batch: an offset range of one storage-topic partition.",
    )
    keys = asset_keys(settings)
    batch_checks = build_batch_checks(keys)
    verify = define_asset_job(
        VERIFY_JOB,
        selection=AssetSelection.checks(*batch_checks),
        executor_def=in_process_executor,
        tags=UPKEEP_JOB_TAGS,
        description="The batch checks over every batch that landed since the last "
        "verification (launched once a minute by its schedule when batches landed).",
    )
    return Definitions(
        assets=[storage, ingest_batch],
        asset_checks=[*build_storage_checks(keys["storage"], JOB_NAME), *batch_checks],
        jobs=[job, verify, rebuild_sink, prune_dagster_storage],
        sensors=[build_kafka_sensor(job, keys["storage"], lambda sink: sink_keys(settings, sink))],
        schedules=[
            build_verify_schedule(verify),
            build_retention_schedule(prune_dagster_storage, settings.retention_interval_minutes),
        ],
        resources=build_resources(settings),
        # The UI's Materialize buttons run the implicit asset job: same executor as the
        # sensor's runs (one process per run, the parsed batch kept in memory).
        executor=in_process_executor,
    )


defs = build_definitions(Settings.from_env())
