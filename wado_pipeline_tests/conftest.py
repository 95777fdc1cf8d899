"""Fixtures on the real local stack (``make up``): Kafka, PostgreSQL, MariaDB.

Each test that asks for ``settings`` gets its own topics, PostgreSQL schema,
MariaDB database and storage root, so tests never see each other's data.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from wado_pipeline.resources.doris import DorisResource
from wado_pipeline.resources.kafka import KafkaResource
from wado_pipeline.resources.postgres import PostgresResource
from wado_pipeline.sandbox import PROJECT, namespace
from wado_pipeline.sandbox import dagster_home as sandbox_dagster_home
from wado_pipeline.settings import Settings

BASE = Settings.from_env()


@pytest.fixture(scope="session")
def admin() -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=BASE.kafka_bootstrap, request_timeout_ms=10000)
    yield client
    client.close()


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    """Settings for one test: unique topics, schema, database, storage root."""
    root = tmp_path / "storage"
    root.mkdir()
    with namespace(BASE, root, "t", parse_workers=2) as s:
        yield s


@pytest.fixture
def storage_root(settings: Settings) -> Path:
    return settings.storage_roots[0]


@pytest.fixture
def kafka(settings: Settings) -> Iterator[KafkaResource]:
    res = KafkaResource(bootstrap=settings.kafka_bootstrap, timeout_seconds=3.0)
    yield res
    res.teardown_after_execution(None)


@pytest.fixture
def postgres(settings: Settings) -> Iterator[PostgresResource]:
    res = PostgresResource(url=settings.postgres_url, schema_name=settings.postgres_schema)
    yield res
    res.dispose()


@pytest.fixture
def doris(settings: Settings) -> Iterator[DorisResource]:
    res = DorisResource(url=settings.doris_url, flavor="mariadb")
    yield res
    res.dispose()


@pytest.fixture
def produce(settings: Settings):
    """produce(values, partition=None) -> list of (partition, offset)."""
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", max_request_size=4 * 1024 * 1024
    )

    def send(values, partition: int | None = None, key: bytes | None = None):
        futures = []
        for v in values:
            if isinstance(v, dict):
                v = json.dumps(v).encode()
            futures.append(
                producer.send(settings.storage_topic, value=v, partition=partition, key=key)
            )
        producer.flush()
        return [(m.partition, m.offset) for m in (f.get(timeout=10) for f in futures)]

    yield send
    producer.close()


def consume_all(bootstrap: str, topic: str, expected: int | None = None, timeout_s: float = 10):
    """Every record of a one-partition topic (waits until ``expected`` arrived)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    end = consumer.end_offsets([tp])[tp]
    out = []
    import time

    deadline = time.monotonic() + timeout_s
    while consumer.position(tp) < end and time.monotonic() < deadline:
        for recs in consumer.poll(timeout_ms=500).values():
            out.extend(recs)
    consumer.close()
    if expected is not None:
        assert len(out) == expected, f"{topic}: {len(out)} records, expected {expected}"
    return out


@pytest.fixture
def dagster_home(tmp_path, settings):
    """A DAGSTER_HOME with the project's dagster.yaml and its own storage database."""
    with sandbox_dagster_home(tmp_path, settings.postgres_url) as (home, url):
        yield home, url


@pytest.fixture
def stack_restored():
    """Whatever a test stopped is started again, even when the test fails."""
    yield
    subprocess.run(["bash", str(PROJECT / "stack/up.sh")], check=True, capture_output=True)
