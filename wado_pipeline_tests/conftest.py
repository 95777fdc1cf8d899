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
from kafka import KafkaAdminClient, KafkaProducer

from wado_pipeline.bench.sandbox import PROJECT, namespace
from wado_pipeline.bench.sandbox import dagster_home as sandbox_dagster_home
from wado_pipeline.resources.doris import MariaDBResource
from wado_pipeline.resources.kafka import KafkaResource
from wado_pipeline.resources.postgres import PostgresResource
from wado_pipeline.settings import Settings

BASE = Settings.from_env()

# Fixtures that need the live local stack (make up): a test that uses one must carry
# the `stack` marker, so `pytest -m "not stack"` runs anywhere.
STACK_FIXTURES = frozenset(
    {"settings", "admin", "kafka", "postgres", "doris", "produce", "dagster_home", "stack_restored"}
)


def pytest_collection_modifyitems(config, items):
    unmarked = [
        item.nodeid
        for item in items
        if STACK_FIXTURES & set(getattr(item, "fixturenames", ()))
        and item.get_closest_marker("stack") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "tests that use the live stack without the `stack` marker: " + ", ".join(unmarked)
        )


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
def doris(settings: Settings) -> Iterator[MariaDBResource]:
    res = MariaDBResource(url=settings.doris_url)
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
