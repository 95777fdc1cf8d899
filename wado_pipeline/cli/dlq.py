"""``wado-pipeline dlq``: list rejected messages, or requeue one once its cause is fixed."""

from __future__ import annotations

from dataclasses import dataclass

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from wado_pipeline.core import run_contract
from wado_pipeline.resources.kafka import MAX_MESSAGE_BYTES, MAX_REQUEST_BYTES
from wado_pipeline.settings import Settings


@dataclass
class DeadLetterSummary:
    offset: int
    reason: str
    detail: str
    source: str  # topic[partition]@offset of the original message
    size: int


def _dlq_consumer(settings: Settings):
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
    )
    tp = TopicPartition(settings.dlq_topic, 0)
    consumer.assign([tp])
    return consumer, tp


def dead_letters(settings: Settings, limit: int = 50) -> list[DeadLetterSummary]:
    """The most recent ``limit`` rejected messages (headers only: no payload printed)."""
    consumer, tp = _dlq_consumer(settings)
    try:
        end = consumer.end_offsets([tp])[tp]
        consumer.seek(tp, max(0, end - limit))
        out = []
        for rec in consumer:
            h = {k: v.decode(errors="replace") for k, v in rec.headers}
            out.append(
                DeadLetterSummary(
                    rec.offset,
                    h.get(run_contract.HEADER_REASON, "?"),
                    h.get(run_contract.HEADER_DETAIL, ""),
                    f"{h.get(run_contract.HEADER_TOPIC)}[{h.get(run_contract.HEADER_PARTITION)}]"
                    f"@{h.get(run_contract.HEADER_OFFSET)}",
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
    if any(k == run_contract.HEADER_TRUNCATED_FROM for k, _ in record.headers):
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
            headers=[
                (run_contract.HEADER_REQUEUED_FROM, f"{settings.dlq_topic}@{dlq_offset}".encode())
            ],
        ).get(timeout=30)
    finally:
        producer.close()
    return meta.partition, meta.offset
