"""Store messages compressed as a real receiver compresses them, read by the sensor and
the runs: a librdkafka producer (confluent-kafka, the library upstream's receiver links)
writes the storage topic with each codec Kafka knows."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import Producer
from dagster import instance_for_test
from kafka import codec as kafka_codec

from wado_pipeline_tests.support import (
    assert_tables_match,
    drain_through_sensor,
    run_range,
    synthetic_messages,
    tick,
)

pytestmark = pytest.mark.stack

CODECS = ("gzip", "snappy", "lz4", "zstd")


def produce_compressed(settings, messages: list[dict], codec: str, partition: int = 0) -> None:
    """Send ``messages`` as upstream's receiver does: librdkafka, batches compressed."""
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "compression.codec": codec,
            "linger.ms": 100,
            "batch.num.messages": 100,
            "acks": "all",
        }
    )
    failed = []

    def delivered(err, _msg):
        if err is not None:
            failed.append(err)

    for m in messages:
        producer.produce(
            settings.storage_topic,
            json.dumps(m).encode(),
            key=m["trace_id"].encode(),
            partition=partition,
            on_delivery=delivered,
        )
    assert producer.flush(30) == 0
    assert not failed, failed


@pytest.mark.parametrize("codec", CODECS)
def test_a_compressed_storage_topic_drains_through_sensor_and_runs(
    codec, settings, storage_root, kafka, monkeypatch
):
    messages = synthetic_messages(storage_root, 60, seed=codec)
    produce_compressed(settings, messages, codec)
    # The batches really are compressed with ``codec``: without its library they cannot
    # be read (the codec check kafka-python runs on every compressed batch).
    with monkeypatch.context() as m:
        m.setattr(kafka_codec, f"has_{codec}", lambda: False)
        with pytest.raises(Exception, match=codec):
            kafka.read_range(settings.storage_topic, 0, 0, len(messages))
    with instance_for_test() as instance:
        results = drain_through_sensor(settings, instance)
    assert results and all(r.success for r in results)
    assert_tables_match(settings, messages)
    group = kafka.committed_offsets(settings.consumer_group, settings.storage_topic, [0])
    assert group == {0: len(messages)}


def test_a_missing_codec_fails_loudly_and_moves_nothing(settings, storage_root, kafka, monkeypatch):
    """Without snappy's library: the tick fails naming the codec (not "Kafka did not
    answer") and requests nothing; a run of the range fails naming it; the group's
    offsets stay where they were."""
    with instance_for_test() as instance:
        before = tick(settings, instance)  # empty topic: the cursor at the beginning
        assert not before.run_requests
        messages = synthetic_messages(storage_root, 60, seed="nocodec")
        produce_compressed(settings, messages, "snappy")
        monkeypatch.setattr(kafka_codec, "has_snappy", lambda: False)

        with pytest.raises(Exception, match="snappy") as failed_tick:
            tick(settings, instance, before.cursor)
        assert "did not answer" not in str(failed_tick.value)
        assert "cursor unchanged" in str(failed_tick.value)

        run = run_range(settings, instance, 0, 0, len(messages), raise_on_error=False)
        assert not run.success
        failure = next(e for e in run.all_events if e.event_type_value == "STEP_FAILURE")
        assert "snappy" in failure.event_specific_data.error_display_string
        assert kafka.committed_offsets(settings.consumer_group, settings.storage_topic, [0]) == {}

        # With the codec back, the same cursor hands the range on and it drains.
        monkeypatch.undo()
        after = tick(settings, instance, before.cursor)
        assert [r.run_config for r in after.run_requests]


def test_aborted_transactions_are_not_ingested(settings, storage_root, kafka):
    """A transactional producer's aborted batch never becomes rows; its committed ones
    do, and the partition drains past the aborted records and the markers."""
    committed = synthetic_messages(storage_root, 30, seed="committed")
    aborted = synthetic_messages(storage_root, 20, seed="aborted")
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "transactional.id": f"{settings.storage_topic}-tx",
            "compression.codec": "snappy",
        }
    )
    producer.init_transactions(30)
    for batch, commit in ((committed[:15], True), (aborted, False), (committed[15:], True)):
        producer.begin_transaction()
        for m in batch:
            producer.produce(settings.storage_topic, json.dumps(m).encode(), partition=0)
        assert producer.flush(30) == 0  # on the broker, also the batch then aborted
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)
    with instance_for_test() as instance:
        results = drain_through_sensor(settings, instance)
    assert results and all(r.success for r in results)
    assert_tables_match(settings, committed)
