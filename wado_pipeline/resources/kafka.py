"""Kafka: offsets for the sensor, exact offset-range reads, publishing, commits.

Runs never join the consumer group: they ``assign`` and ``seek`` to read exactly
the batch's offset range, and commit the group's offset only after everything is
durably written, so standard Kafka tools show the true lag.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dagster import ConfigurableResource
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from pydantic import PrivateAttr

from wado_pipeline.core.batch import SourceRecord
from wado_pipeline.resources.retry import with_retries

# Transient: the broker is unreachable or slow. Retried inside a run, then the run fails.
TRANSIENT_KAFKA_ERRORS: tuple[type[BaseException], ...] = (KafkaError, OSError)
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class OffsetRangeUnavailable(Exception):
    """The batch's offsets are no longer (or not yet) in the partition."""


@dataclass(frozen=True)
class OutgoingMessage:
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class PartitionOffsets:
    partition: int
    beginning: int
    end: int


class KafkaResource(ConfigurableResource):
    """Connection to the Kafka cluster (bootstrap servers and timeouts only)."""

    bootstrap: str
    timeout_seconds: float = 3.0

    _producer: KafkaProducer | None = PrivateAttr(default=None)

    def _consumer(self, group_id: str | None = None) -> KafkaConsumer:
        ms = int(self.timeout_seconds * 1000)
        return KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            bootstrap_timeout_ms=ms,
            request_timeout_ms=max(ms, 11000) if group_id else ms,
            max_poll_records=5000,
            fetch_max_bytes=52428800,
            max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
            client_id="wado-pipeline",
        )

    # ------------------------------------------------------------ offsets

    def partition_offsets(self, topic: str) -> list[PartitionOffsets] | None:
        """Beginning and end offset of every partition; None when the topic is missing."""
        consumer = self._consumer()
        try:
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                return None
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            timeout = int(self.timeout_seconds * 1000)
            begin = consumer.beginning_offsets(tps, timeout_ms=timeout)
            end = consumer.end_offsets(tps, timeout_ms=timeout)
            return [PartitionOffsets(tp.partition, begin[tp], end[tp]) for tp in tps]
        finally:
            consumer.close()

    def committed_offsets(self, group: str, topic: str, partitions: Iterable[int]) -> dict:
        """The group's committed offset per partition (absent where none)."""
        consumer = self._consumer(group)
        try:
            out = {}
            for p in partitions:
                off = consumer.committed(
                    TopicPartition(topic, p), timeout_ms=int(self.timeout_seconds * 1000)
                )
                if off is not None:
                    out[p] = off
            return out
        finally:
            consumer.close()

    def commit(self, group: str, topic: str, partition: int, offset: int) -> bool:
        """Commit ``offset`` for the group unless it already stands at or beyond it.

        Never moves the group backwards: re-executing an old batch must not make
        Kafka tools report work that is already done as pending.
        """

        def attempt() -> bool:
            consumer = self._consumer(group)
            try:
                tp = TopicPartition(topic, partition)
                current = consumer.committed(tp, timeout_ms=int(self.timeout_seconds * 1000))
                if current is not None and current >= offset:
                    return False
                consumer.assign([tp])
                consumer.commit({tp: OffsetAndMetadata(offset, "", -1)})
                return True
            finally:
                consumer.close()

        return with_retries(attempt, retry_on=TRANSIENT_KAFKA_ERRORS, what="offset commit")

    def first_timestamp(self, topic: str, partition: int, offset: int) -> int | None:
        """Timestamp (ms) of the first record at or after ``offset``, or None."""
        consumer = self._consumer()
        try:
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, offset)
            got = consumer.poll(timeout_ms=int(self.timeout_seconds * 1000), max_records=1)
            for rec in got.get(tp, []):
                return rec.timestamp
            return None
        finally:
            consumer.close()

    # ------------------------------------------------------------ reading

    def read_range(self, topic: str, partition: int, start: int, end: int) -> list[SourceRecord]:
        """Exactly the records with offsets in [start, end), in offset order.

        Offsets missing inside the range (compaction, transaction markers) are
        skipped; a range that starts before the partition's beginning raises
        ``OffsetRangeUnavailable`` (lost to retention), as does one past its end.
        """

        def attempt() -> list[SourceRecord]:
            consumer = self._consumer()
            try:
                tp = TopicPartition(topic, partition)
                consumer.assign([tp])
                timeout = int(self.timeout_seconds * 1000)
                begin = consumer.beginning_offsets([tp], timeout_ms=timeout)[tp]
                last = consumer.end_offsets([tp], timeout_ms=timeout)[tp]
                if start < begin:
                    raise OffsetRangeUnavailable(
                        f"{topic}[{partition}] offsets {start}..{begin - 1} are gone "
                        f"(retention); partition begins at {begin}"
                    )
                if end > last:
                    raise OffsetRangeUnavailable(
                        f"{topic}[{partition}] ends at {last}, batch asks up to {end}"
                    )
                consumer.seek(tp, start)
                out: list[SourceRecord] = []
                idle_polls = 0
                while consumer.position(tp) < end:
                    got = consumer.poll(timeout_ms=timeout, max_records=5000)
                    recs = got.get(tp, [])
                    if not recs:
                        idle_polls += 1
                        if idle_polls >= 3:
                            raise KafkaError(
                                f"no data from {topic}[{partition}] at offset "
                                f"{consumer.position(tp)}"
                            )
                        continue
                    idle_polls = 0
                    for rec in recs:
                        if rec.offset >= end:
                            break
                        out.append(SourceRecord(partition, rec.offset, rec.value))
                return out
            finally:
                consumer.close()

        return with_retries(attempt, retry_on=TRANSIENT_KAFKA_ERRORS, what="Kafka read")

    # ------------------------------------------------------------ publishing

    def producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(
                bootstrap_servers=self.bootstrap,
                acks="all",
                linger_ms=5,
                batch_size=256 * 1024,
                max_request_size=MAX_MESSAGE_BYTES,
                compression_type=None,
                bootstrap_timeout_ms=int(self.timeout_seconds * 1000),
                request_timeout_ms=10000,
                max_block_ms=10000,
                client_id="wado-pipeline",
            )
        return self._producer

    def publish(self, topic: str, messages: Sequence[OutgoingMessage]) -> int:
        """Send all messages, flush once, and check every send; returns the count."""
        if not messages:
            return 0

        def attempt() -> int:
            producer = self.producer()
            futures = [
                producer.send(topic, key=m.key, value=m.value, headers=list(m.headers))
                for m in messages
            ]
            producer.flush(timeout=30)
            for f in futures:
                f.get(timeout=30)
            return len(futures)

        # A retried send may duplicate messages on the topic; consumers key by
        # series / SOP instance and upsert, so duplicates are harmless downstream.
        return with_retries(attempt, retry_on=TRANSIENT_KAFKA_ERRORS, what=f"publish to {topic}")

    def teardown_after_execution(self, context) -> None:
        if self._producer is not None:
            self._producer.close(timeout=10)
            self._producer = None
