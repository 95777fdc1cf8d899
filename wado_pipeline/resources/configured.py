"""The resources as the settings choose them: which Doris class for the site's flavor
and load mode, and secrets passed as ``EnvVar`` so the UI shows a variable's name, never
a password. The definitions, the CLI and the benchmarks all build them here."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

from dagster import EnvVar

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
