"""Every setting of the pipeline, read once from the environment.

This module is the one place that names a topic, a URL or a default. Each field has
an environment variable (the public interface, documented in the README) and a
default that matches the local stack started by ``make up``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path


def _env_str(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def _env_int(name: str, default: int) -> int:
    raw = _env_str(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def _env_float(name: str, default: float) -> float:
    raw = _env_str(name, str(default))
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


def _env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = _env_str(name, default)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


DEFAULT_STORAGE_ROOT = "/var/lib/wado/storage"

# Topic configuration: the one definition used by `make up`, the test sandbox, the
# docker-compose file (checked by a test) and the README.
STORAGE_PARTITIONS = 3
# Kafka's own default for message.max.bytes (1 MiB + 12): what a site's storage topic has.
STORAGE_MAX_MESSAGE_BYTES = 1_048_588
# A dead letter is the original value plus the wado.* headers and a key: the dead-letter
# topic allows the storage limit plus this much, so whatever the storage topic accepted
# fits again as a dead letter.
DLQ_HEADER_ROOM_BYTES = 64 * 1024
DLQ_MAX_MESSAGE_BYTES = STORAGE_MAX_MESSAGE_BYTES + DLQ_HEADER_ROOM_BYTES
DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    """One topic as the pipeline expects it to exist."""

    name: str
    partitions: int
    configs: dict[str, str]
    purpose: str


def topic_specs(settings: Settings) -> tuple[TopicSpec, ...]:
    """Every topic of the pipeline with its partitions and configuration."""
    return (
        TopicSpec(
            settings.storage_topic,
            STORAGE_PARTITIONS,
            {
                "max.message.bytes": str(STORAGE_MAX_MESSAGE_BYTES),
                # the window in which any batch can be re-executed from Kafka
                "retention.ms": str(7 * DAY_MS),
            },
            "store messages from the receiver (input)",
        ),
        TopicSpec(settings.state_topic, 1, {}, "series-level records (output)"),
        TopicSpec(settings.image_topic, 1, {}, "instance-level records (output)"),
        TopicSpec(
            settings.dlq_topic,
            1,
            {
                "max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES),
                "retention.ms": str(30 * DAY_MS),
            },
            "rejected store messages with their reason (dead letters)",
        ),
    )


def max_record_bytes(settings: Settings) -> int:
    """The largest record any pipeline topic accepts (the producer's request limit)."""
    return max(
        int(t.configs.get("max.message.bytes", STORAGE_MAX_MESSAGE_BYTES))
        for t in topic_specs(settings)
    )


@dataclass(frozen=True)
class Setting:
    """Documentation of one environment variable (rendered into the README table)."""

    env: str
    default: str
    meaning: str


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = field(metadata={"env": "WADO_KAFKA_BOOTSTRAP"})
    storage_topic: str = field(metadata={"env": "WADO_STORAGE_TOPIC"})
    state_topic: str = field(metadata={"env": "WADO_STATE_TOPIC"})
    image_topic: str = field(metadata={"env": "WADO_IMAGE_TOPIC"})
    dlq_topic: str = field(metadata={"env": "WADO_DLQ_TOPIC"})
    consumer_group: str = field(metadata={"env": "WADO_CONSUMER_GROUP"})
    postgres_url: str = field(metadata={"env": "WADO_POSTGRES_URL"}, repr=False)
    postgres_schema: str = field(metadata={"env": "WADO_POSTGRES_SCHEMA"})
    doris_url: str = field(metadata={"env": "WADO_DORIS_URL"}, repr=False)
    doris_flavor: str = field(metadata={"env": "WADO_DORIS_FLAVOR"})
    storage_roots: tuple[Path, ...] = field(metadata={"env": "WADO_STORAGE_ROOTS"})
    batch_messages: int = field(metadata={"env": "WADO_BATCH_MESSAGES"})
    batch_wait_seconds: float = field(metadata={"env": "WADO_BATCH_WAIT_SECONDS"})
    max_batch_messages: int = field(metadata={"env": "WADO_MAX_BATCH_MESSAGES"})
    parse_workers: int = field(metadata={"env": "WADO_PARSE_WORKERS"})
    kafka_timeout_seconds: float = field(metadata={"env": "WADO_KAFKA_TIMEOUT_SECONDS"})
    doris_load: str = field(metadata={"env": "WADO_DORIS_LOAD"})
    doris_http_url: str = field(metadata={"env": "WADO_DORIS_HTTP_URL"})
    freshness_warn_seconds: int = field(metadata={"env": "WADO_FRESHNESS_WARN_SECONDS"})
    freshness_fail_seconds: int = field(metadata={"env": "WADO_FRESHNESS_FAIL_SECONDS"})
    doris_buckets: int = field(metadata={"env": "WADO_DORIS_BUCKETS"})
    doris_replication_num: int = field(metadata={"env": "WADO_DORIS_REPLICATION_NUM"})
    run_stale_seconds: float = field(metadata={"env": "WADO_RUN_STALE_SECONDS"})

    @classmethod
    def from_env(cls) -> Settings:
        roots = _env_str("WADO_STORAGE_ROOTS", DEFAULT_STORAGE_ROOT)
        return cls(
            kafka_bootstrap=_env_str("WADO_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
            storage_topic=_env_str("WADO_STORAGE_TOPIC", "storage_queue"),
            state_topic=_env_str("WADO_STATE_TOPIC", "dicom_state_queue"),
            image_topic=_env_str("WADO_IMAGE_TOPIC", "dicom_image_queue"),
            dlq_topic=_env_str("WADO_DLQ_TOPIC", "storage_queue_dlq"),
            consumer_group=_env_str("WADO_CONSUMER_GROUP", "dicom-consumer-group"),
            postgres_url=_env_str(
                "WADO_POSTGRES_URL", "postgresql+psycopg2://wado:wado@127.0.0.1:5432/wado"
            ),
            postgres_schema=_env_str("WADO_POSTGRES_SCHEMA", "public"),
            doris_url=_env_str("WADO_DORIS_URL", "mysql+pymysql://wado:wado@127.0.0.1:3306/wado"),
            doris_flavor=_env_choice("WADO_DORIS_FLAVOR", "mariadb", ("doris", "mariadb")),
            storage_roots=tuple(Path(r) for r in roots.split(":") if r),
            batch_messages=_env_int("WADO_BATCH_MESSAGES", 50),
            batch_wait_seconds=_env_float("WADO_BATCH_WAIT_SECONDS", 5.0),
            max_batch_messages=_env_int("WADO_MAX_BATCH_MESSAGES", 2000),
            parse_workers=_env_int("WADO_PARSE_WORKERS", os.cpu_count() or 1),
            kafka_timeout_seconds=_env_float("WADO_KAFKA_TIMEOUT_SECONDS", 3.0),
            doris_load=_env_choice("WADO_DORIS_LOAD", "insert", ("insert", "stream_load")),
            doris_http_url=_env_str("WADO_DORIS_HTTP_URL", "http://127.0.0.1:8030"),
            freshness_warn_seconds=_env_int("WADO_FRESHNESS_WARN_SECONDS", 300),
            freshness_fail_seconds=_env_int("WADO_FRESHNESS_FAIL_SECONDS", 900),
            doris_buckets=_env_int("WADO_DORIS_BUCKETS", 8),
            doris_replication_num=_env_int("WADO_DORIS_REPLICATION_NUM", 1),
            run_stale_seconds=_env_float("WADO_RUN_STALE_SECONDS", 90.0),
        )

    def env_names(self) -> list[str]:
        """The environment variables this settings object reads."""
        return [f.metadata["env"] for f in fields(self)]

    def to_env(self) -> dict[str, str]:
        """The environment that makes ``Settings.from_env()`` return these settings
        (for the processes the benchmark and the tests start: daemon, runs, CLI)."""
        env = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "storage_roots":
                value = ":".join(str(r) for r in value)
            env[f.metadata["env"]] = str(value)
        return env
