"""Kafka: offsets for the sensor, exact offset-range reads, publishing, commits.

Runs never join the consumer group: they ``assign`` and ``seek`` to read exactly
the batch's offset range, and commit the group's offset only after everything is
durably written, so standard Kafka tools show the true lag.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from dagster import ConfigurableResource
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.cluster import ClusterMetadata
from kafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    TopicAlreadyExistsError,
    UnsupportedCodecError,
)
from kafka.structs import OffsetAndMetadata
from pydantic import PrivateAttr

from wado_pipeline.core.batch_rows import SourceRecord
from wado_pipeline.core.dead_letter import DeadLetter
from wado_pipeline.core.planning import OffsetRange
from wado_pipeline.core.progress import PartitionProgress
from wado_pipeline.resources.retry import with_retries
from wado_pipeline.settings import DLQ_MAX_MESSAGE_BYTES, Settings, TopicSpec

log = logging.getLogger(__name__)

# The least time between two metadata requests of one client. kafka-python 3.0 makes a
# client's cluster metadata without passing the client's ``retry_backoff_ms`` on, so it
# is always its class default of 100 ms: a new client's first request for a topic's
# metadata came 0.1 s after its bootstrap request, every time. Each run's read and each
# sensor tick open new clients (the sensor's tick waited 0.2 s for it, a run's read
# 0.1 s). 20 ms still keeps a client whose metadata fails from asking more than 50
# times a second; ``test_kafka_metadata_backoff.py`` checks the default is still read.
METADATA_BACKOFF_MS = 20
ClusterMetadata.DEFAULT_CONFIG["retry_backoff_ms"] = METADATA_BACKOFF_MS


class RecordTooLarge(Exception):
    """A record is over a topic's or the producer's size limit (never transient)."""


# Transient: the broker is unreachable or slow. Retried inside a run, then the run fails.
TRANSIENT_KAFKA_ERRORS: tuple[type[BaseException], ...] = (KafkaError, OSError)
# What one fetch may return per partition: any record the pipeline's topics accept.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# The producer's request limit: the largest record of any pipeline topic, with room for
# the record batch's own framing.
MAX_REQUEST_BYTES = DLQ_MAX_MESSAGE_BYTES + 4096
# What the sensor fetches to read one record's timestamp: the broker still sends a whole
# first batch when it is larger, so this only keeps a backlog's fetch small.
FIRST_RECORD_FETCH_BYTES = 64 * 1024
# Bytes kept free for key, headers and framing when a dead letter's value must be cut.
DEAD_LETTER_FRAMING_BYTES = 8192


class CodecUnavailable(Exception):
    """A record batch is compressed with a codec this process cannot decode.

    Never transient (a retry fails the same way) and never "Kafka did not answer": the
    broker answered with data this installation lacks the library for. The message
    names the codec and the partition."""


def _codec_unavailable(exc: UnsupportedCodecError, topic: str, partition: int, offset: int):
    return CodecUnavailable(
        f"{topic}[{partition}] at offset {offset}: cannot decode the record batch "
        f"({exc}); install kafka-python with its codec extras "
        "(kafka-python[snappy,lz4,zstd])"
    )


class OffsetRangeUnavailable(Exception):
    """The batch's offsets are no longer (or not yet) in the partition. ``log_start``:
    where the partition now begins, when retention deleted the range's start."""

    def __init__(self, message: str, log_start: int | None = None) -> None:
        super().__init__(message)
        self.log_start = log_start


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
    timeout_seconds: float = Settings.kafka_timeout_seconds
    # The codec of what the pipeline writes ("none" for uncompressed); reading takes any.
    compression: str = Settings.kafka_compression

    _producer: KafkaProducer | None = PrivateAttr(default=None)
    _producer_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def _consumer(
        self, group_id: str | None = None, fetch_bytes: int = MAX_MESSAGE_BYTES
    ) -> KafkaConsumer:
        ms = int(self.timeout_seconds * 1000)
        return KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # A transactional producer's aborted records are not store messages; and the
            # ends the sensor plans to are then the last stable offsets.
            isolation_level="read_committed",
            bootstrap_timeout_ms=ms,
            request_timeout_ms=max(ms, 11000) if group_id else ms,
            max_poll_records=5000,
            fetch_max_bytes=52428800,
            max_partition_fetch_bytes=fetch_bytes,
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

    def topic_progress(
        self, group: str, topic: str
    ) -> tuple[list[PartitionOffsets], dict[int, PartitionProgress]] | None:
        """Every partition's offsets and the group's progress on it (absent where it
        never committed); None when the topic is missing."""
        offsets = self.partition_offsets(topic)
        if offsets is None:
            return None
        return offsets, self.group_progress(group, topic, [o.partition for o in offsets])

    def committed_offsets(self, group: str, topic: str, partitions: Iterable[int]) -> dict:
        """The group's committed offset per partition (absent where none)."""
        return {p: g.committed for p, g in self.group_progress(group, topic, partitions).items()}

    def group_progress(
        self, group: str, topic: str, partitions: Iterable[int]
    ) -> dict[int, PartitionProgress]:
        """The group's progress per partition (absent where it never committed)."""
        consumer = self._consumer(group)
        try:
            timeout = int(self.timeout_seconds * 1000)
            out = {}
            for p in partitions:
                got = consumer.committed(
                    TopicPartition(topic, p), metadata=True, timeout_ms=timeout
                )
                if got is not None and got.offset >= 0:
                    out[p] = PartitionProgress.from_commit(got.offset, got.metadata)
            return out
        finally:
            consumer.close()

    def commit_processed(
        self, group: str, topic: str, partition: int, start: int, end: int
    ) -> PartitionProgress:
        """Record that ``[start, end)`` was processed and commit the group's new progress.

        The offset moves only over a contiguous prefix of processed batches (see
        ``core.progress``); it never moves backwards. Runs of one partition never run
        at the same time (tag concurrency limit), so this read-modify-write is not
        raced by another run of the partition."""

        def decide(current, beginning):
            if current is None:
                # Never committed: the group starts where the partition begins.
                progress = PartitionProgress(beginning())
            else:
                progress = PartitionProgress.from_commit(current.offset, current.metadata)
            before = (progress.committed, list(progress.done))
            progress.record(start, end)
            if (progress.committed, progress.done) == before and current is not None:
                return None, progress
            return OffsetAndMetadata(progress.committed, progress.to_metadata(), -1), progress

        return self._read_and_commit(group, topic, partition, decide)

    def recommit(self, group: str, topic: str, partition: int) -> PartitionProgress | None:
        """Commit the partition's committed offset and metadata again, unchanged; None
        when the group never committed it.

        The group has no members (runs commit with a standalone consumer), so Kafka
        expires each partition's commit ``offsets.retention.minutes`` after it was made
        (7 days by default). A partition idle that long would lose its progress and be
        read again from its start; a fresh commit of the same value keeps it."""

        def decide(current, _beginning):
            if current is None:
                return None, None
            again = OffsetAndMetadata(current.offset, current.metadata, -1)
            return again, PartitionProgress.from_commit(current.offset, current.metadata)

        return self._read_and_commit(group, topic, partition, decide)

    def _read_and_commit(self, group: str, topic: str, partition: int, decide):
        """Read the group's commit of the partition, let ``decide(current or None,
        beginning())`` return ``(what to commit or None, result)``, commit it, and
        return the result; with retries of transient errors."""

        def attempt():
            consumer = self._consumer(group)
            try:
                tp = TopicPartition(topic, partition)
                timeout = int(self.timeout_seconds * 1000)
                current = consumer.committed(tp, metadata=True, timeout_ms=timeout)
                if current is not None and current.offset < 0:
                    current = None
                commit, result = decide(
                    current, lambda: consumer.beginning_offsets([tp], timeout_ms=timeout)[tp]
                )
                if commit is not None:
                    consumer.assign([tp])
                    consumer.commit({tp: commit}, timeout_ms=timeout)
                return result
            finally:
                consumer.close()

        return with_retries(
            attempt, retry_on=TRANSIENT_KAFKA_ERRORS, what=f"Kafka offset commit ({self.bootstrap})"
        )

    def first_timestamp(self, topic: str, partition: int, offset: int) -> int | None:
        """Timestamp (ms) of the first record at or after ``offset``, or None.

        Reading it decodes that record's batch, so a codec this process lacks raises
        ``CodecUnavailable`` here, before the sensor hands the range to a run."""
        consumer = self._consumer(fetch_bytes=FIRST_RECORD_FETCH_BYTES)
        try:
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, offset)
            try:
                got = consumer.poll(timeout_ms=int(self.timeout_seconds * 1000), max_records=1)
            except UnsupportedCodecError as exc:
                raise _codec_unavailable(exc, topic, partition, offset) from None
            for rec in got.get(tp, []):
                return rec.timestamp
            return None
        finally:
            consumer.close()

    def offsets_since(self, topic: str, partitions: Iterable[int], ts_ms: int) -> dict[int, int]:
        """Per partition, the first offset whose timestamp is at or after ``ts_ms`` (the
        partition's end when none is)."""
        consumer = self._consumer()
        try:
            tps = [TopicPartition(topic, p) for p in partitions]
            found = consumer.offsets_for_times(dict.fromkeys(tps, ts_ms))
            ends = consumer.end_offsets(tps)
            return {
                tp.partition: (found[tp].offset if found.get(tp) is not None else ends[tp])
                for tp in tps
            }
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
                        f"{OffsetRange(topic, partition, start, begin).described} are gone "
                        f"(retention); partition begins at {begin}",
                        log_start=begin,
                    )
                if end > last:
                    raise OffsetRangeUnavailable(
                        f"{topic}[{partition}] ends at {last}, batch asks up to {end}"
                    )
                consumer.seek(tp, start)
                out: list[SourceRecord] = []
                idle_polls = 0
                while consumer.position(tp) < end:
                    try:
                        got = consumer.poll(timeout_ms=timeout, max_records=5000)
                    except UnsupportedCodecError as exc:
                        raise _codec_unavailable(
                            exc, topic, partition, consumer.position(tp)
                        ) from None
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

        return with_retries(
            attempt, retry_on=TRANSIENT_KAFKA_ERRORS, what=f"Kafka read ({self.bootstrap})"
        )

    # ------------------------------------------------------------ publishing

    def producer(self) -> KafkaProducer:
        with self._producer_lock:
            if self._producer is None:
                self._producer = self._new_producer()
            return self._producer

    def warm_up_publishing(self, topics: Sequence[str]) -> None:
        """Connect the producer and learn the topics' partitions in the background, so
        the run's publish step does not wait for it.

        A new producer asks the broker for each topic it first sends to, 0.1 s apart
        (its metadata backoff): 0.2 s of a batch run's 0.25 s publish step, spent while
        nothing else happens. Asked for from threads at once, both topics go in one
        request, while the run reads its batch. A failure here is left for the publish
        step to meet and report (it retries, and fails the step when Kafka is down)."""

        def learn(topic: str) -> None:
            try:
                self.producer().partitions_for(topic)
            except Exception:  # the publish step meets it and reports it
                log.debug("warming up the producer for %s failed", topic, exc_info=True)

        for topic in topics:
            threading.Thread(target=learn, args=(topic,), daemon=True).start()

    def _new_producer(self) -> KafkaProducer:
        return KafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            linger_ms=5,
            batch_size=256 * 1024,
            max_request_size=MAX_REQUEST_BYTES,
            compression_type=None if self.compression == "none" else self.compression,
            bootstrap_timeout_ms=int(self.timeout_seconds * 1000),
            request_timeout_ms=10000,
            max_block_ms=10000,
            client_id="wado-pipeline",
        )

    def publish(self, topic: str, messages: Sequence[OutgoingMessage]) -> int:
        """Send all messages, flush once, and check every send; returns the count."""
        return self.publish_all({topic: messages})[topic]

    def publish_all(self, messages: Mapping[str, Sequence[OutgoingMessage]]) -> dict[str, int]:
        """Send every topic's messages, in topic order, flush once for all of them (one
        wait for the broker's acknowledgements, not one per topic), and check every
        send; returns the count per topic."""
        if not any(messages.values()):
            return {topic: 0 for topic in messages}

        def attempt() -> dict[str, int]:
            producer = self.producer()
            futures = {
                topic: [
                    producer.send(topic, key=m.key, value=m.value, headers=list(m.headers))
                    for m in sent
                ]
                for topic, sent in messages.items()
            }
            producer.flush(timeout=30)
            for sends in futures.values():
                for f in sends:
                    f.get(timeout=30)
            return {topic: len(sends) for topic, sends in futures.items()}

        # A retried send may duplicate messages on the topic; consumers key by
        # series / SOP instance and upsert, so duplicates are harmless downstream.
        return with_retries(
            attempt,
            retry_on=TRANSIENT_KAFKA_ERRORS,
            what=f"Kafka publish to {', '.join(messages)} ({self.bootstrap})",
        )

    def publish_dead_letters(self, topic: str, letters: Sequence[DeadLetter]) -> tuple[int, int]:
        """Send dead letters; returns (sent, cut).

        A dead letter too large for the topic (a site whose dead-letter topic allows
        less than its storage topic) is sent again with its value cut to fit and a
        header saying so; the full value is kept in the error table. Size is never a
        reason to fail a run: it would fail the same way on every retry."""
        if not letters:
            return 0, 0

        def attempt() -> tuple[int, int]:
            too_large = self._send_letters(topic, letters)
            if not too_large:
                return len(letters), 0
            # kafka-python's idempotent producer fails every later send with the same
            # error once the broker refused a record as too large: start a new one.
            self.close_producer()
            limit = min(self.topic_max_message_bytes(topic), MAX_REQUEST_BYTES)
            cut = [
                dl.cut_to(limit - dl.header_bytes - len(dl.key) - DEAD_LETTER_FRAMING_BYTES)
                for dl in (letters[i] for i in too_large)
            ]
            still = self._send_letters(topic, cut)
            if still:
                raise RecordTooLarge(
                    f"{len(still)} dead letter(s) do not fit {topic} even cut to its limit"
                )
            log.warning("%d dead letter(s) cut to fit %s (limit %d bytes)", len(cut), topic, limit)
            return len(letters), len(cut)

        return with_retries(
            attempt,
            retry_on=TRANSIENT_KAFKA_ERRORS,
            what=f"Kafka publish to {topic} ({self.bootstrap})",
        )

    def _send_letters(self, topic: str, letters: Sequence[DeadLetter]) -> list[int]:
        """Send every letter; returns the indexes of those refused as too large (by the
        producer's own request limit or the topic's ``max.message.bytes``)."""
        producer = self.producer()
        too_large: list[int] = []
        futures = []
        for i, dl in enumerate(letters):
            try:
                sent = producer.send(topic, key=dl.key, value=dl.value, headers=list(dl.headers))
                futures.append((i, sent))
            except MessageSizeTooLargeError:
                too_large.append(i)
        producer.flush(timeout=30)
        for i, f in futures:
            try:
                f.get(timeout=30)
            except MessageSizeTooLargeError:
                too_large.append(i)
        return sorted(too_large)

    def topic_max_message_bytes(self, topic: str) -> int:
        """The topic's effective ``max.message.bytes`` (its own or the broker's)."""
        admin = KafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            request_timeout_ms=max(int(self.timeout_seconds * 1000), 5000),
            client_id="wado-pipeline",
        )
        try:
            res = ConfigResource(
                ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": None}
            )
            got = admin.describe_configs([res], config_filter="all")
            return int(got["topic"][topic]["max.message.bytes"]["value"])
        finally:
            admin.close()

    def ensure_topics(self, specs: Sequence[TopicSpec]) -> list[str]:
        """Create missing topics and set the configuration of existing ones to ``specs``
        (the local stack and the test sandbox; a site's topics are its own). Returns
        what was done, one line per change."""
        admin = KafkaAdminClient(
            bootstrap_servers=self.bootstrap, request_timeout_ms=10000, client_id="wado-stack"
        )
        done = []
        try:
            existing = set(admin.list_topics())
            for t in specs:
                if t.name not in existing:
                    try:
                        admin.create_topics(
                            [NewTopic(t.name, t.partitions, 1, topic_configs=dict(t.configs))]
                        )
                        done.append(f"created topic {t.name} ({t.partitions} partitions)")
                        continue
                    except TopicAlreadyExistsError:
                        pass
                if not t.configs:
                    continue
                res = ConfigResource(
                    ConfigResourceType.TOPIC, t.name, configs=dict.fromkeys(t.configs)
                )
                current = admin.describe_configs([res], config_filter="all")["topic"][t.name]
                changed = {
                    k: v for k, v in t.configs.items() if current.get(k, {}).get("value") != v
                }
                if changed:
                    admin.alter_configs(
                        [ConfigResource(ConfigResourceType.TOPIC, t.name, configs=changed)]
                    )
                    done.append(
                        f"set {', '.join(f'{k}={v}' for k, v in changed.items())} on {t.name}"
                    )
            return done
        finally:
            admin.close()

    def close_producer(self) -> None:
        with self._producer_lock:
            if self._producer is not None:
                self._producer.close(timeout=10)
                self._producer = None

    def teardown_after_execution(self, context) -> None:
        self.close_producer()
