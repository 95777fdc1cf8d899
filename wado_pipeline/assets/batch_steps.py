"""The steps of one batch, as plain functions of resources: what each op does, and what
the benchmark's core loop calls, so the two cannot drift apart. No Dagster here."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from wado_pipeline.core import schema as S
from wado_pipeline.core.batch_rows import GroupedBatch, group
from wado_pipeline.core.dead_letter import dead_letter, masked, payload_for_table
from wado_pipeline.core.dicom.parallel import process_records
from wado_pipeline.core.dicom.transcode import Transcoding
from wado_pipeline.core.planning import OffsetRange
from wado_pipeline.core.progress import PartitionProgress
from wado_pipeline.core.topic_json import encode_row, image_key, state_key
from wado_pipeline.resources.kafka import KafkaResource, OffsetRangeUnavailable, OutgoingMessage
from wado_pipeline.resources.postgres import PostgresResource


class CountsDoNotReconcile(Exception):
    """A consumed message is neither accepted nor rejected: a bug, never bad input."""


@dataclass
class Batch:
    """What ``read`` hands to the writing steps: one offset range (the sensor's runs), or
    one per partition for a run launched without a range ("Materialize all")."""

    ranges: list[OffsetRange]
    grouped: GroupedBatch
    timings: dict[str, float] = field(default_factory=dict)
    # Parts of the ranges that retention deleted before they were read: reported lost,
    # and committed with the rest (they can never be processed).
    lost: list[OffsetRange] = field(default_factory=list)

    @property
    def range(self) -> OffsetRange:
        """The batch's range; the first one when it has several (a load label)."""
        return self.ranges[0]

    @property
    def label_range(self) -> OffsetRange | None:
        return self.ranges[0] if self.ranges else None

    def describe(self) -> str:
        """``topic[p] start..last`` per range (no content)."""
        return "; ".join(str(r) for r in self.ranges)

    def table_rows(self) -> dict[str, list[dict]]:
        g = self.grouped
        return {
            S.OBJECT_META.name: g.objects,
            S.STATE_META.name: g.states,
            S.IMAGE_META.name: g.images,
        }


def read(
    kafka: KafkaResource,
    rng: OffsetRange,
    roots: tuple[Path, ...],
    workers: int,
    transcoding: Transcoding | None = None,
) -> Batch:
    """Read exactly the offset range, parse every message, group the rows. Parsing may
    start a process pool (``core.dicom.parallel``); a run worker shuts it down after the step."""
    return read_ranges(kafka, [rng], roots, workers, transcoding)


def read_ranges(
    kafka: KafkaResource,
    ranges: list[OffsetRange],
    roots: tuple[Path, ...],
    workers: int,
    transcoding: Transcoding | None = None,
) -> Batch:
    """``read`` over several ranges (of different partitions), grouped together."""
    t0 = time.perf_counter()
    records = []
    lost = []
    for rng in ranges:
        readable, gone = read_readable(kafka, rng)
        records.extend(readable)
        lost.extend(gone)
    batch = Batch(list(ranges), GroupedBatch(), lost=lost)
    batch.timings["read_s"] = round(time.perf_counter() - t0, 4)
    t1 = time.perf_counter()
    batch.grouped = group(process_records(records, roots, workers, transcoding))
    batch.timings["parse_s"] = round(time.perf_counter() - t1, 4)
    g = batch.grouped
    if not g.reconciles:
        raise CountsDoNotReconcile(
            f"counts do not reconcile: {g.consumed} != {g.accepted} + {len(g.rejections)}"
        )
    return batch


def read_readable(kafka: KafkaResource, rng: OffsetRange) -> tuple[list, list[OffsetRange]]:
    """The records of ``rng`` still in the partition, and the part of it retention
    deleted first (a failed range relaunched after the log start moved past its start):
    the readable rest is processed, not failed again forever."""
    try:
        return kafka.read_range(rng.topic, rng.partition, rng.start, rng.end), []
    except OffsetRangeUnavailable as exc:
        begin = exc.log_start
        if begin is None or begin <= rng.start:
            raise
    gone = [OffsetRange(rng.topic, rng.partition, rng.start, min(begin, rng.end))]
    if begin >= rng.end:
        return [], gone
    return kafka.read_range(rng.topic, rng.partition, begin, rng.end), gone


def publish(
    kafka: KafkaResource,
    batch: Batch,
    state_topic: str | None,
    image_topic: str | None,
) -> tuple[int, int]:
    """State records keyed by series, image records keyed by SOP instance (as upstream).
    A topic given as None is not published to (a run that rebuilds other sinks).
    Returns (state messages, image messages)."""
    g = batch.grouped
    messages = {}
    if state_topic is not None:
        messages[state_topic] = [OutgoingMessage(state_key(r), encode_row(r)) for r in g.states]
    if image_topic is not None:
        messages[image_topic] = [OutgoingMessage(image_key(r), encode_row(r)) for r in g.images]
    sent = kafka.publish_all(messages) if messages else {}
    return sent.get(state_topic, 0), sent.get(image_topic, 0)


def publish_dead_letters(
    kafka: KafkaResource, batch: Batch, dlq_topic: str, run_id: str, mask: bool = False
) -> tuple[int, int]:
    """Rejected messages to the dead-letter topic, cut to fit where a site's topic is too
    small, identifying fields masked with ``mask``. Returns (dead letters, cut)."""
    topic = batch.ranges[0].topic if batch.ranges else ""
    letters = [dead_letter(r, topic, run_id) for r in batch.grouped.rejections]
    if mask:
        letters = [masked(d) for d in letters]
    return kafka.publish_dead_letters(dlq_topic, letters)


def error_rows(batch: Batch, run_id: str) -> list[dict]:
    """``dicom_ingest_error`` rows of the batch's rejected messages, each with the full
    original value (even when its dead letter had to be cut)."""
    topic = batch.ranges[0].topic if batch.ranges else ""
    now = datetime.now().replace(tzinfo=None)
    rows = []
    for r in batch.grouped.rejections:
        payload, encoding = payload_for_table(r.payload)
        rows.append(
            S.INGEST_ERROR.row(
                topic=topic,
                partition=r.partition,
                offset=r.offset,
                reason=str(r.reason),
                detail=r.detail,
                trace_id=r.trace_id,
                run_id=run_id,
                payload=payload,
                payload_encoding=encoding,
                created_time=now,
            )
        )
    return rows


def commit(
    kafka: KafkaResource, postgres: PostgresResource, consumer_group: str, rng: OffsetRange
) -> PartitionProgress:
    """Record the range as processed; the group's offset moves over the contiguous
    prefix of processed ranges only (``core.progress``). Commits of one partition take
    turns (a lock in the index database): two runs of overlapping ranges (a retry beside
    a re-execution) would otherwise both read the same progress and the later write
    would drop the other's range, moving the offset back."""
    with postgres.exclusive(_commit_lock(consumer_group, rng.topic, rng.partition)):
        return kafka.commit_processed(consumer_group, rng.topic, rng.partition, rng.start, rng.end)


def refresh_commits(
    kafka: KafkaResource, postgres: PostgresResource, consumer_group: str, topic: str
) -> int:
    """Commit every partition's progress again, unchanged (``KafkaResource.recommit``),
    taking turns with the runs' commits; returns how many partitions had a commit."""
    refreshed = 0
    for part in kafka.partition_offsets(topic) or []:
        with postgres.exclusive(_commit_lock(consumer_group, topic, part.partition)):
            refreshed += kafka.recommit(consumer_group, topic, part.partition) is not None
    return refreshed


def _commit_lock(consumer_group: str, topic: str, partition: int) -> str:
    return f"wado commit {consumer_group} {topic} {partition}"
