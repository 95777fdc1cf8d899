"""At the broker's edge, on topics made by the production definition (settings.topic_specs):
a store message of exactly the storage topic's limit, its dead letter, and a site whose
dead-letter topic is too small for it. And the group offset held by a failed batch."""

import json
import random
import string

import pytest
from dagster import ReexecutionOptions, execute_job, instance_for_test
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import MessageSizeTooLargeError
from sqlalchemy import create_engine, text

from wado_pipeline.core.dead_letter import HEADER_OFFSET, HEADER_REASON, HEADER_TRUNCATED_FROM
from wado_pipeline.core.planning import RELAUNCH_GRACE_MS
from wado_pipeline.resources.kafka import KafkaResource
from wado_pipeline.settings import STORAGE_MAX_MESSAGE_BYTES, topic_specs
from wado_pipeline_tests.support import (
    assert_tables_match,
    consume_all,
    encode,
    ranges,
    reconstructable_job,
    run_range,
    synthetic_messages,
    tick,
)

pytestmark = pytest.mark.stack

# A record batch holding one record without key or headers: 61 bytes of batch header
# and 11 of record framing (varints for a value near 1 MiB). Checked below: one byte
# more is refused by the broker.
BATCH_FRAMING_BYTES = 72


def topic_config(settings, topic: str, key: str) -> str:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        res = ConfigResource(ConfigResourceType.TOPIC, topic, configs={key: None})
        return admin.describe_configs([res], config_filter="all")["topic"][topic][key]["value"]
    finally:
        admin.close()


def bad_message_of_size(good: dict, size: int) -> bytes:
    """A store message with one bad field (file_size a string), padded to ``size`` bytes
    with text no codec shrinks (the pipeline's producer compresses, as a site's does)."""
    base = json.dumps(dict(good, file_size="not a number", padding="")).encode()
    filler = "".join(random.Random(size).choices(string.ascii_letters + string.digits, k=size))
    value = json.dumps(dict(good, file_size="not a number", padding=filler[: size - len(base)]))
    assert len(value.encode()) == size
    return value.encode()


def send_alone(settings, value: bytes, partition: int):
    """One record in its own request (so its record batch holds nothing else)."""
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        max_request_size=4 * 1024 * 1024,
        linger_ms=0,
    )
    try:
        return producer.send(settings.storage_topic, value, partition=partition).get(timeout=30)
    finally:
        producer.close()


def test_sandbox_topics_are_the_production_definition(settings):
    for spec in topic_specs(settings):
        for key, value in spec.configs.items():
            assert topic_config(settings, spec.name, key) == value, (spec.name, key)


@pytest.mark.parametrize("site_dlq_limit", [None, STORAGE_MAX_MESSAGE_BYTES])
def test_message_at_the_storage_limit_is_dead_lettered(
    settings, produce, storage_root, site_dlq_limit
):
    """A bad message of exactly the storage topic's limit among good ones: the partition
    drains, its dead letter exists (cut, with a header, where a site's dead-letter topic
    is smaller), and the error row keeps the full value."""
    if site_dlq_limit:  # a site whose dead-letter topic has the broker's default limit
        KafkaResource(bootstrap=settings.kafka_bootstrap).ensure_topics(
            [
                type(s)(s.name, s.partitions, {"max.message.bytes": str(site_dlq_limit)}, "")
                for s in topic_specs(settings)
                if s.name == settings.dlq_topic
            ]
        )
    limit = int(topic_config(settings, settings.storage_topic, "max.message.bytes"))
    assert limit == STORAGE_MAX_MESSAGE_BYTES
    good = synthetic_messages(storage_root, 20)
    huge = bad_message_of_size(good[0], limit - BATCH_FRAMING_BYTES)
    with pytest.raises(MessageSizeTooLargeError):  # one byte more: refused
        send_alone(settings, huge + b" ", partition=0)
    produce(encode(good[:10]), partition=0)
    assert send_alone(settings, huge, partition=0).offset == 10
    produce(encode(good[10:]), partition=0)

    with instance_for_test() as instance:
        result = run_range(settings, instance, 0, 0, 21)
        assert result.success

    (dl,) = consume_all(settings.kafka_bootstrap, settings.dlq_topic, expected=1)
    headers = dict(dl.headers)
    assert headers[HEADER_REASON] == b"bad_type" and headers[HEADER_OFFSET] == b"10"
    if site_dlq_limit:
        assert headers[HEADER_TRUNCATED_FROM] == str(len(huge)).encode()
        assert len(dl.value) < len(huge) and huge.startswith(dl.value)
    else:
        assert HEADER_TRUNCATED_FROM not in headers and dl.value == huge
    pg = create_engine(settings.postgres_url)
    schema = settings.postgres_schema
    with pg.connect() as conn:
        payload, reason = conn.execute(
            text(f'SELECT payload, reason FROM "{schema}".dicom_ingest_error')
        ).one()
        objects = conn.execute(text(f'SELECT count(*) FROM "{schema}".dicom_object_meta'))
        assert objects.scalar_one() == 20
    pg.dispose()
    assert reason == "bad_type" and payload.encode() == huge
    progress = KafkaResource(bootstrap=settings.kafka_bootstrap).group_progress(
        settings.consumer_group, settings.storage_topic, [0]
    )
    assert progress[0].committed == 21  # the partition drained


def execute_request(request, instance) -> tuple[str, bool]:
    """Run what a sensor's RunRequest asks for, as the daemon would: (run id, success)."""
    with execute_job(
        reconstructable_job(), instance, run_config=request.run_config, tags=request.tags
    ) as result:
        return result.run_id, result.success


def check_event(result, name):
    (event,) = [e for e in result.asset_events if e.check_name == name]
    return event


def test_failed_batch_holds_the_group_offset_until_reexecuted(
    settings, produce, storage_root, monkeypatch
):
    messages = synthetic_messages(storage_root, 150)
    produce(encode(messages[:50]), partition=1)
    kafka = KafkaResource(bootstrap=settings.kafka_bootstrap)

    def committed():
        got = kafka.group_progress(settings.consumer_group, settings.storage_topic, [1])
        return got[1].committed if 1 in got else None

    for k, v in settings.to_env().items():
        monkeypatch.setenv(k, v)
    with instance_for_test() as instance:
        # two batches of one partition, from two ticks
        first = tick(settings, instance)
        assert ranges(first) == [(1, 0, 50)]
        produce(encode(messages[50:]), partition=1)
        later = tick(settings, instance, first.cursor)
        assert ranges(later) == [(1, 50, 150)]
        # the first batch fails: its PostgreSQL is unreachable
        monkeypatch.setenv("WADO_POSTGRES_URL", "postgresql+psycopg2://wado:wado@127.0.0.1:9/x")
        failed_run_id, ok = execute_request(first.run_requests[0], instance)
        assert not ok
        monkeypatch.setenv("WADO_POSTGRES_URL", settings.postgres_url)
        assert execute_request(later.run_requests[0], instance)[1]
        assert committed() == 0  # held at the failed batch's start

        second = tick(settings, instance, later.cursor)
        event = check_event(second, "no_failed_batches")
        assert not event.passed
        assert "offsets 0..49 unprocessed" in event.description
        assert failed_run_id in event.description
        assert ranges(second) == []  # within the grace period: no relaunch yet

        # once the grace period has passed, the sensor relaunches the range by itself
        aged = json.loads(second.cursor)
        for hole in aged["partitions"]["1"]["holes"]:
            hole[2] -= RELAUNCH_GRACE_MS
        relaunch = tick(settings, instance, json.dumps(aged))
        (request,) = relaunch.run_requests
        assert ranges(relaunch) == [(1, 0, 50)]
        assert request.run_key.endswith("#relaunch-1") and request.tags["wado/relaunch"] == "1"

        with execute_job(
            reconstructable_job(),
            instance,
            reexecution_options=ReexecutionOptions.from_failure(failed_run_id, instance),
        ) as again:
            assert again.success
        assert committed() == 150  # jumps over the batch that already succeeded
        third = tick(settings, instance, second.cursor)
        assert check_event(third, "no_failed_batches").passed
        assert ranges(third) == []


def test_a_range_whose_start_retention_deleted_processes_the_rest(
    settings, storage_root, produce, kafka
):
    """A batch (a failed range relaunched, say) whose first offsets the broker has
    since deleted: the readable rest becomes rows, the deleted part is reported lost on
    the storage topic's check, and the whole range is committed (it can never be read)."""
    from confluent_kafka import TopicPartition as CTopicPartition
    from confluent_kafka.admin import AdminClient

    messages = synthetic_messages(storage_root, 60, seed="gone")
    produce(encode(messages), partition=0)
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    for future in admin.delete_records([CTopicPartition(settings.storage_topic, 0, 20)]).values():
        future.result(timeout=30)
    with instance_for_test() as instance:
        result = run_range(settings, instance, 0, 0, 60)
        assert result.success
        lost = [
            e.asset_check_evaluation_data
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
        ]
    assert [(c.check_name, c.passed) for c in lost] == [("no_offsets_lost", False)]
    assert lost[0].metadata["lost_start"].value == 0
    assert lost[0].metadata["lost_end_exclusive"].value == 20
    assert_tables_match(settings, messages[20:])
    assert kafka.committed_offsets(settings.consumer_group, settings.storage_topic, [0]) == {0: 60}
