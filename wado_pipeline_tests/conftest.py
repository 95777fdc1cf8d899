"""Fixtures on the real local stack (``make up``): Kafka, PostgreSQL, MariaDB.

Each test that asks for ``settings`` gets its own topics, PostgreSQL schema,
MariaDB database and storage root, so tests never see each other's data.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from wado_pipeline.resources.doris import DorisResource
from wado_pipeline.resources.kafka import KafkaResource
from wado_pipeline.resources.postgres import PostgresResource
from wado_pipeline.settings import Settings

BASE = Settings.from_env()
STORAGE_PARTITIONS = 3


@pytest.fixture(scope="session")
def admin() -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=BASE.kafka_bootstrap, request_timeout_ms=10000)
    yield client
    client.close()


def create_topics(admin: KafkaAdminClient, settings: Settings, partitions: int) -> None:
    admin.create_topics(
        [
            NewTopic(settings.storage_topic, partitions, 1),
            NewTopic(settings.state_topic, 1, 1),
            NewTopic(settings.image_topic, 1, 1),
            NewTopic(settings.dlq_topic, 1, 1, topic_configs={"max.message.bytes": "4194304"}),
        ]
    )


@pytest.fixture
def settings(admin: KafkaAdminClient, tmp_path: Path) -> Iterator[Settings]:
    """Settings for one test: unique topics, schema, database, storage root."""
    tag = "t_" + uuid.uuid4().hex[:10]
    pg_url = BASE.postgres_url
    doris_url = make_url(BASE.doris_url).set(database=tag).render_as_string(hide_password=False)
    root = tmp_path / "storage"
    root.mkdir()
    s = dataclasses.replace(
        BASE,
        storage_topic=f"{tag}_storage",
        state_topic=f"{tag}_state",
        image_topic=f"{tag}_image",
        dlq_topic=f"{tag}_dlq",
        consumer_group=f"{tag}_group",
        postgres_schema=tag,
        doris_url=doris_url,
        doris_flavor="mariadb",
        storage_roots=(root,),
        parse_workers=2,
    )
    create_topics(admin, s, STORAGE_PARTITIONS)
    maria_admin = create_engine(BASE.doris_url, pool_pre_ping=True)
    with maria_admin.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{tag}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
    yield s
    admin.delete_topics([s.storage_topic, s.state_topic, s.image_topic, s.dlq_topic])
    with maria_admin.begin() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{tag}`"))
    maria_admin.dispose()
    pg = create_engine(pg_url, pool_pre_ping=True)
    with pg.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{tag}" CASCADE'))
    pg.dispose()


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


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def dagster_home(tmp_path, settings):
    """A DAGSTER_HOME with the project's dagster.yaml and its own storage database."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    db = "dagster_" + uuid.uuid4().hex[:8]
    base = make_url(settings.postgres_url)
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db}"'))
    url = base.set(drivername="postgresql+psycopg2", database=db).render_as_string(
        hide_password=False
    )
    yield home, url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    admin.dispose()
