"""Sensor ticks against the real broker: thresholds, age, backlog, outages, partitions."""

import dataclasses
import json
import time

import pytest
from dagster import instance_for_test
from kafka import KafkaProducer
from kafka.admin import NewPartitions

from wado_pipeline.core.run_contract import PARTITION_TAG, RANGE_TAG, SENSOR_TICK_SECONDS
from wado_pipeline.resources.kafka import KafkaResource
from wado_pipeline_tests.support import ranges, tick, wait_until

pytestmark = pytest.mark.stack


def produce_aged(settings, n, partition, age_s):
    """Messages whose broker timestamp lies ``age_s`` in the past (CreateTime)."""
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    ts = int((time.time() - age_s) * 1000)
    for _ in range(n):
        producer.send(settings.storage_topic, b"{}", partition=partition, timestamp_ms=ts)
    producer.flush()
    producer.close()


def test_49_messages_that_can_wait_make_no_run(settings):
    """Fewer than 50 messages whose wait cannot run out before the next tick (their
    broker timestamps lie ahead) make no run yet."""
    produce_aged(settings, 49, partition=0, age_s=-600)
    with instance_for_test() as instance:
        result = tick(settings, instance)
        assert result.run_requests == []
        assert "49 message(s) pending" in result.skip_message
        assert json.loads(result.cursor)["partitions"]["0"]["next"] == 0


def test_49_fresh_messages_wait_for_a_later_tick(settings, produce):
    """The next tick is at most SENSOR_TICK_SECONDS (1.5 s) away: messages that just
    arrived can wait for it without passing their 5 s."""
    produce([b"{}"] * 49, partition=0)
    with instance_for_test() as instance:
        result = tick(settings, instance)
    assert ranges(result) == []


def test_49_messages_run_at_the_last_tick_before_their_wait_ends(settings):
    """4 s old, with the wait at 5 s: they would pass it before the next tick (at most
    SENSOR_TICK_SECONDS away), so they are requested now, not a tick late."""
    assert settings.batch_wait_seconds - SENSOR_TICK_SECONDS < 4 < settings.batch_wait_seconds
    produce_aged(settings, 49, partition=0, age_s=4)
    with instance_for_test() as instance:
        result = tick(settings, instance)
    assert ranges(result) == [(0, 0, 49)]


def test_50_messages_make_one_run(settings, produce):
    produce([b"{}"] * 50, partition=1)
    with instance_for_test() as instance:
        result = tick(settings, instance)
    (req,) = result.run_requests
    assert ranges(result) == [(1, 0, 50)]
    assert req.run_key == f"{settings.storage_topic}:1:0-50"
    assert req.tags[PARTITION_TAG] == f"{settings.storage_topic}-1"
    assert req.tags[RANGE_TAG] == "0-50"
    # the run config holds the range only: no message content
    cfg = req.run_config["ops"]["ingest_batch"]["ops"]["read_batch"]["config"]
    assert set(cfg) == {"topic", "partition", "start", "end"}


def test_one_message_older_than_the_wait_makes_a_run(settings):
    produce_aged(settings, 1, partition=2, age_s=6)
    with instance_for_test() as instance:
        result = tick(settings, instance)
    assert ranges(result) == [(2, 0, 1)]


def test_one_young_message_waits_then_runs(settings):
    """A message younger than the wait makes no run; once it is older, it does. The
    message's age is set by its broker timestamp, so no outcome depends on how long a
    tick takes on a busy machine."""
    produce_aged(settings, 1, partition=0, age_s=-600)  # ten minutes younger than now
    with instance_for_test() as instance:
        first = tick(settings, instance)
        assert first.run_requests == []
        assert json.loads(first.cursor)["partitions"]["0"]["oldest_ts"] is not None
        # the same partition, now with its oldest message aged past the wait
        aged = json.loads(first.cursor)
        aged["partitions"]["0"]["oldest_ts"] -= 600_000 + 6_000
        second = tick(settings, instance, json.dumps(aged))
    assert ranges(second) == [(0, 0, 1)]


def test_backlog_is_cut_at_the_cap_and_covers_every_offset_once(settings):
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=20)
    for _ in range(10_000):
        producer.send(settings.storage_topic, b"{}", partition=0)
    producer.flush()
    producer.close()
    seen = []
    cursor = None
    with instance_for_test() as instance:
        for _ in range(20):
            result = tick(settings, instance, cursor)
            cursor = result.cursor
            seen.extend(ranges(result))
            if json.loads(cursor)["partitions"]["0"]["next"] == 10_000:
                break
    sizes = [end - start for _, start, end in seen]
    cap = settings.max_batch_messages
    assert sizes == [cap] * (10_000 // cap) + ([10_000 % cap] if 10_000 % cap else [])
    covered = [o for _, start, end in seen for o in range(start, end)]
    assert covered == list(range(10_000))


def test_broker_down_fails_the_tick_loudly(settings, produce):
    """A broker that does not answer fails the tick (red in the UI), naming the broker;
    a failed tick saves no cursor and requests no run. The tick stays bounded."""
    produce([b"{}"] * 60, partition=0)
    with instance_for_test() as instance:
        cursor = tick(settings, instance).cursor
        down = dataclasses.replace(settings, kafka_bootstrap="127.0.0.1:9")  # nothing listens
        t0 = time.monotonic()
        with pytest.raises(Exception, match=r"Kafka at 127\.0\.0\.1:9 did not answer"):
            tick(down, instance, cursor)
        elapsed = time.monotonic() - t0
    assert elapsed < 60  # Dagster's own bound on a sensor evaluation


def test_missing_topic_skips(settings):
    missing = dataclasses.replace(settings, storage_topic=settings.storage_topic + "_nope")
    with instance_for_test() as instance:
        result = tick(missing, instance, '{"v":1}')
    assert "does not exist" in result.skip_message
    assert result.cursor in (None, '{"v":1}')


def test_new_partition_is_picked_up(settings, admin):
    with instance_for_test() as instance:
        cursor = tick(settings, instance).cursor
        assert set(json.loads(cursor)["partitions"]) == {"0", "1", "2"}
        admin.create_partitions({settings.storage_topic: NewPartitions(total_count=4)})

        def visible():  # the new partition reaches the broker's metadata
            (meta,) = admin.describe_topics([settings.storage_topic])
            return len(meta["partitions"]) == 4

        wait_until(visible, 60, "the new partition in the topic's metadata", interval=0.2)
        producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)  # fresh metadata
        for _ in range(50):
            producer.send(settings.storage_topic, b"{}", partition=3)
        producer.flush()
        producer.close()
        result = tick(settings, instance, cursor)
    assert ranges(result) == [(3, 0, 50)]


def test_start_from_committed_group_offsets(settings):
    produce_aged(settings, 120, partition=1, age_s=4)
    KafkaResource(bootstrap=settings.kafka_bootstrap).commit_processed(
        settings.consumer_group, settings.storage_topic, 1, 0, 100
    )
    with instance_for_test() as instance:
        result = tick(settings, instance)
    # from the group's offset on: the 20 pending would pass their wait before the next tick
    assert ranges(result) == [(1, 100, 120)]
    assert json.loads(result.cursor)["partitions"]["1"]["next"] == 120


def test_retention_loss_is_reported(settings, produce, admin):
    """Offsets deleted before processing: an ERROR asset check, never a silent jump."""
    produce([b"{}"] * 80, partition=0)
    with instance_for_test() as instance:
        cursor = json.loads(tick(settings, instance).cursor)
        cursor["partitions"]["0"]["next"] = 0
        admin.delete_records({_tp(settings, 0): 30})
        result = tick(settings, instance, json.dumps(cursor))
    (event,) = result.asset_events
    assert not event.passed and event.check_name == "no_offsets_lost"
    assert "offsets 0..29" in event.description
    assert ranges(result) == [(0, 30, 80)]


def _tp(settings, p):
    from kafka import TopicPartition

    return TopicPartition(settings.storage_topic, p)
