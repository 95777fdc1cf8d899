"""The local stack answers: produce/consume through the real broker, upsert and
read back in the real PostgreSQL and MariaDB."""

from datetime import datetime

import pytest
from sqlalchemy import text

from wado_pipeline.core import schema as S
from wado_pipeline_tests.support import consume_all, wait_until

pytestmark = pytest.mark.stack


def test_kafka_roundtrip(settings, produce, kafka):
    positions = produce([b"one", b"two", b"three"], partition=1)
    assert [p for p, _ in positions] == [1, 1, 1]
    records = kafka.read_range(settings.storage_topic, 1, 0, 3)
    assert [r.value for r in records] == [b"one", b"two", b"three"]
    assert [r.offset for r in records] == [0, 1, 2]


def test_kafka_publish_is_readable(settings, kafka):
    from wado_pipeline.resources.kafka import OutgoingMessage

    kafka.publish(settings.state_topic, [OutgoingMessage(b"k", b'{"a":1}')])
    (rec,) = consume_all(settings.kafka_bootstrap, settings.state_topic, expected=1)
    assert rec.key == b"k" and rec.value == b'{"a":1}'


def test_a_warmed_up_producer_publishes_both_topics_in_one_flush(settings, kafka):
    """The run warms the producer up while it reads its batch: the topics' partitions
    are known before the publish step, which then sends both topics and flushes once."""
    from wado_pipeline.resources.kafka import OutgoingMessage

    topics = [settings.state_topic, settings.image_topic]
    kafka.warm_up_publishing(topics)
    wait_until(
        lambda: all(kafka.producer().partitions_for(t) for t in topics),
        30,
        "the producer to learn both topics",
        0.05,
    )
    flushes = []
    producer = kafka.producer()
    real_flush = producer.flush
    producer.flush = lambda *a, **k: (flushes.append(1), real_flush(*a, **k))[1]
    sent = kafka.publish_all(
        {
            settings.state_topic: [OutgoingMessage(b"s%d" % i, b"{}") for i in range(3)],
            settings.image_topic: [OutgoingMessage(b"i%d" % i, b"{}") for i in range(5)],
        }
    )
    assert sent == {settings.state_topic: 3, settings.image_topic: 5}
    assert flushes == [1]
    got_state = consume_all(settings.kafka_bootstrap, settings.state_topic, expected=3)
    got_image = consume_all(settings.kafka_bootstrap, settings.image_topic, expected=5)
    assert sorted(r.key for r in got_state) == [b"s0", b"s1", b"s2"]
    assert sorted(r.key for r in got_image) == [b"i%d" % i for i in range(5)]


def _object_row(trace_id: str) -> dict:
    row = dict.fromkeys(S.OBJECT_META.column_names)
    row.update(
        trace_id=trace_id,
        worker_node_id="DICOM_STORE_SCP",
        tenant_id="t",
        patient_id="p",
        study_uid="1.2",
        series_uid="1.2.3",
        sop_uid="1.2.3.4",
        created_time=datetime(2024, 1, 2, 3, 4, 5, 678901),
    )
    return row


def test_postgres_upsert_and_read(postgres):
    postgres.create_tables()
    postgres.write_batch({S.OBJECT_META.name: [_object_row("a"), _object_row("b")]})
    postgres.write_batch({S.OBJECT_META.name: [_object_row("a")]})
    with postgres.engine.connect() as conn:
        rows = conn.execute(
            text(
                f'SELECT trace_id, created_time FROM "{postgres.schema_name}".dicom_object_meta '
                "ORDER BY trace_id"
            )
        ).all()
    assert [(r[0], r[1]) for r in rows] == [
        ("a", datetime(2024, 1, 2, 3, 4, 5, 678901)),
        ("b", datetime(2024, 1, 2, 3, 4, 5, 678901)),
    ]


def test_mariadb_upsert_and_read(doris):
    doris.create_tables()
    doris.write_batch({S.OBJECT_META.name: [_object_row("a"), _object_row("b")]})
    doris.write_batch({S.OBJECT_META.name: [_object_row("b")]})
    with doris.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT trace_id, created_time FROM dicom_object_meta ORDER BY trace_id")
        ).all()
    assert [(r[0], r[1]) for r in rows] == [
        ("a", datetime(2024, 1, 2, 3, 4, 5, 678901)),
        ("b", datetime(2024, 1, 2, 3, 4, 5, 678901)),
    ]
