"""Operator actions behind the CLI: publish store messages, read lag, replay a range.

Kept apart from ``cli.py`` (argument parsing only) so tests and the benchmark call
the same functions.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
from kafka import KafkaProducer

from wado_pipeline.core import dead_letter as dl
from wado_pipeline.core.batching import Cursor
from wado_pipeline.resources.kafka import MAX_REQUEST_BYTES, KafkaResource
from wado_pipeline.settings import Settings
from wado_pipeline.synthetic import store_message, synthetic_archive

SENSOR_NAME = "storage_topic_sensor"


def receiver_layout(root: Path, tenant: str, ds) -> Path:
    """Where the receiver stores a file: ``<root>/<tenant>/<study>/<series>/<sop>.dcm``."""
    return (
        root
        / tenant
        / str(ds.StudyInstanceUID)
        / str(ds.SeriesInstanceUID)
        / f"{ds.SOPInstanceUID}.dcm"
    )


def messages_for_directory(directory: Path, root: Path, tenant: str) -> Iterator[dict]:
    """Copy every readable Part-10 file under ``directory`` into the storage root as
    the receiver does, and yield its store message. Unreadable files are skipped
    with a note on stderr (the receiver would not have stored them)."""
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            dest = receiver_layout(root, tenant, ds)
            ds.file_meta.TransferSyntaxUID  # noqa: B018 - a stored file has one
        except Exception as exc:
            print(f"skipped {path.name}: {type(exc).__name__}", file=sys.stderr)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.resolve() != path.resolve():
            shutil.copyfile(path, dest)
        yield store_message(dest, ds, tenant)


def synthetic_messages(root: Path, tenant: str, n: int, seed: str) -> Iterator[dict]:
    for _, _, message in synthetic_archive(root, tenant, n, seed=seed):
        yield message


def publish(
    settings: Settings,
    messages: Iterable[dict],
    total: int | None = None,
    rate: float | None = None,
    progress: bool = True,
) -> int:
    """Publish store messages (keyed by series, like the receiver keeps a series together)
    at most ``rate`` per second; returns how many were acknowledged."""
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5, client_id="wado-cli"
    )
    futures = []
    start = time.monotonic()
    try:
        for i, m in enumerate(messages, 1):
            if rate:
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            futures.append(
                producer.send(
                    settings.storage_topic,
                    key=m["series_uid"].encode(),
                    value=json.dumps(m).encode(),
                )
            )
            if progress and sys.stderr.isatty() and (i % 100 == 0 or i == total):
                of = f"/{total}" if total else ""
                print(f"\rproduced {i}{of}", end="", file=sys.stderr, flush=True)
        producer.flush()
        for f in futures:
            f.get(timeout=30)
    finally:
        producer.close()
    if progress and sys.stderr.isatty():
        print(file=sys.stderr)
    return len(futures)


@dataclass
class PartitionLag:
    partition: int
    end: int
    sensor_cursor: int | None
    committed: int | None
    pending: int
    oldest_pending_age_s: float | None


def sensor_cursor(topic: str) -> Cursor | None:
    """The sensor's cursor from the Dagster instance ($DAGSTER_HOME), if there is one."""
    import os

    from dagster import DagsterInstance

    if not os.environ.get("DAGSTER_HOME"):
        return None
    try:
        with DagsterInstance.get() as instance:
            for state in instance.all_instigator_state():
                if state.instigator_name == SENSOR_NAME and state.instigator_data is not None:
                    cursor = getattr(state.instigator_data, "cursor", None)
                    if cursor:
                        return Cursor.from_json(cursor, topic)
    except Exception as exc:  # lag must still show Kafka's side
        print(f"sensor cursor unavailable ({type(exc).__name__})", file=sys.stderr)
    return None


def lag(settings: Settings) -> list[PartitionLag]:
    kafka = KafkaResource(bootstrap=settings.kafka_bootstrap)
    offsets = kafka.partition_offsets(settings.storage_topic)
    if offsets is None:
        raise LookupError(f"topic {settings.storage_topic} does not exist")
    parts = [o.partition for o in offsets]
    committed = kafka.committed_offsets(settings.consumer_group, settings.storage_topic, parts)
    cursor = sensor_cursor(settings.storage_topic)
    out = []
    now_ms = time.time() * 1000
    for o in offsets:
        done = committed.get(o.partition, o.beginning)
        pending = max(0, o.end - done)
        age = None
        if pending:
            ts = kafka.first_timestamp(settings.storage_topic, o.partition, done)
            age = round((now_ms - ts) / 1000, 1) if ts is not None else None
        state = cursor.partitions.get(o.partition) if cursor else None
        out.append(
            PartitionLag(
                o.partition,
                o.end,
                state.next if state else None,
                committed.get(o.partition),
                pending,
                age,
            )
        )
    return out


@dataclass
class DeadLetter:
    offset: int
    reason: str
    detail: str
    source: str  # topic[partition]@offset of the original message
    size: int


def _dlq_consumer(settings: Settings):
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    tp = TopicPartition(settings.dlq_topic, 0)
    consumer.assign([tp])
    return consumer, tp


def dead_letters(settings: Settings, limit: int = 50) -> list[DeadLetter]:
    """The most recent ``limit`` rejected messages (headers only: no payload printed)."""
    consumer, tp = _dlq_consumer(settings)
    try:
        end = consumer.end_offsets([tp])[tp]
        consumer.seek(tp, max(0, end - limit))
        out = []
        for rec in consumer:
            h = {k: v.decode(errors="replace") for k, v in rec.headers}
            out.append(
                DeadLetter(
                    rec.offset,
                    h.get(dl.HEADER_REASON, "?"),
                    h.get(dl.HEADER_DETAIL, ""),
                    f"{h.get(dl.HEADER_TOPIC)}[{h.get(dl.HEADER_PARTITION)}]"
                    f"@{h.get(dl.HEADER_OFFSET)}",
                    len(rec.value or b""),
                )
            )
            if rec.offset >= end - 1:
                break
        return out
    finally:
        consumer.close()


def requeue(settings: Settings, dlq_offset: int) -> tuple[int, int]:
    """Publish the original value of dead letter ``dlq_offset`` to the storage topic again,
    once its cause is fixed (the file restored, the receiver's message corrected…).
    Returns the new (partition, offset)."""
    consumer, tp = _dlq_consumer(settings)
    try:
        consumer.seek(tp, dlq_offset)
        record = next((r for r in consumer if r.offset == dlq_offset), None)
    finally:
        consumer.close()
    if record is None:
        raise LookupError(f"no dead letter at offset {dlq_offset} of {settings.dlq_topic}")
    if any(k == dl.HEADER_TRUNCATED_FROM for k, _ in record.headers):
        raise LookupError(
            f"dead letter {dlq_offset} was cut to fit {settings.dlq_topic}; its full value "
            "is in dicom_ingest_error (payload, payload_encoding) under the same source offset"
        )
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", max_request_size=MAX_REQUEST_BYTES
    )
    try:
        meta = producer.send(
            settings.storage_topic,
            value=record.value,
            headers=[("wado.requeued_from", f"{settings.dlq_topic}@{dlq_offset}".encode())],
        ).get(timeout=30)
    finally:
        producer.close()
    return meta.partition, meta.offset
