"""The one ``Definitions`` of the project: assets, job, sensor, resources.

Resources are chosen and built from ``Settings`` (the environment) here and nowhere
else. Connection URLs are passed as ``EnvVar`` when they come from the environment, so
the UI shows the variable's name, never a password.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

from dagster import (
    AssetSelection,
    Definitions,
    EnvVar,
    define_asset_job,
    in_process_executor,
)

from wado_pipeline.assets.batch_assets import build_ingest_assets
from wado_pipeline.assets.checks import build_batch_checks, build_storage_checks
from wado_pipeline.assets.keys import asset_keys, sink_keys
from wado_pipeline.assets.rebuild_job import rebuild_sink
from wado_pipeline.assets.retention_job import prune_dagster_storage
from wado_pipeline.core.run_contract import JOB_NAME, UPKEEP_JOB_TAGS, VERIFY_JOB
from wado_pipeline.resources.doris import (
    DorisBackend,
    DorisInsertResource,
    DorisRoutineLoadResource,
    DorisStreamLoadResource,
    MariaDBResource,
)
from wado_pipeline.resources.ingest_settings import IngestSettings
from wado_pipeline.resources.kafka import KafkaResource
from wado_pipeline.resources.postgres import PostgresResource
from wado_pipeline.sensors.kafka_offsets import build_kafka_sensor
from wado_pipeline.sensors.schedules import build_retention_schedule, build_verify_schedule
from wado_pipeline.settings import Settings


def doris_resource(settings: Settings, url) -> DorisBackend:
    """The Doris resource class for the site's flavor and load mode."""
    if settings.doris_load == "routine_load":
        return DorisRoutineLoadResource(
            url=url, flavor=settings.doris_flavor, wait_seconds=settings.routine_load_wait_seconds
        )
    if settings.doris_flavor == "mariadb":
        return MariaDBResource(url=url)
    if settings.doris_load == "stream_load":
        return DorisStreamLoadResource(
            url=url,
            buckets=settings.doris_buckets,
            replication_num=settings.doris_replication_num,
            http_url=settings.doris_http_url,
        )
    return DorisInsertResource(
        url=url, buckets=settings.doris_buckets, replication_num=settings.doris_replication_num
    )


# Names this process gives the secrets that come from a site file or a default: keyed
# by a key of its own, so the names (which the UI shows) say nothing of the values.
_PROCESS_KEY = secrets.token_bytes(16)


def _process_variable(env: str, value: str) -> str:
    """An environment variable of this process holding ``value`` (a URL with its
    password, from the site file or a default), so the resource can name it as an
    ``EnvVar``: every process that loads the definitions sets its own."""
    digest = hmac.new(_PROCESS_KEY, value.encode(), hashlib.sha256).hexdigest()[:12]
    name = f"{env}_RESOLVED_{digest.upper()}"
    os.environ[name] = value
    return name


def build_resources(settings: Settings, env_secrets: bool = True) -> dict:
    """The resources for ``settings``. With ``env_secrets``, URLs are passed as ``EnvVar``
    (the UI shows a variable's name, never a password): the setting's own variable when
    it is set, else one of this process's holding the value from the site file or the
    default. Outside Dagster (the CLI) plain values are used."""

    def _secret(env: str, value: str):
        if not env_secrets:
            return value
        if os.environ.get(env):
            return EnvVar(env)
        return EnvVar(_process_variable(env, value))

    return {
        "kafka": KafkaResource(
            bootstrap=settings.kafka_bootstrap,
            timeout_seconds=settings.kafka_timeout_seconds,
            compression=settings.kafka_compression,
        ),
        "postgres": PostgresResource(
            url=_secret("WADO_POSTGRES_URL", settings.postgres_url),
            schema_name=settings.postgres_schema,
        ),
        "doris": doris_resource(settings, _secret("WADO_DORIS_URL", settings.doris_url)),
        "ingest": IngestSettings.from_settings(settings),
    }


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
