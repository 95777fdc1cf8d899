"""Micro-batch planning: which offset ranges of which partitions to run next.

Pure logic, used by the Kafka sensor. A partition is due when it has at least
``batch_messages`` pending, or when its oldest pending message has waited
``wait_seconds``. Under backlog, consecutive batches of a partition grow fourfold
(50, 200, 800, … up to ``max_batch_messages``): the first messages of a backlog still
leave in a small, quick batch, and Dagster's per-run cost (a process start and a few
seconds of CPU) is soon amortised over large batches, so the pipeline catches up.
When a partition catches up, the size resets. At most ``max_inflight`` runs per
partition are queued or running, so the run queue never grows without bound.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BatchPolicy:
    batch_messages: int = 50
    wait_seconds: float = 5.0
    max_batch_messages: int = 2000
    max_inflight: int = 3


@dataclass(frozen=True)
class OffsetRange:
    topic: str
    partition: int
    start: int  # inclusive
    end: int  # exclusive

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def run_key(self) -> str:
        """Deterministic from the range: a re-evaluated tick cannot launch it twice."""
        return f"{self.topic}:{self.partition}:{self.start}-{self.end}"


@dataclass
class PartitionState:
    next: int  # first offset not yet handed to a run
    last_size: int = 0  # size of the latest batch while in backlog (0: caught up)
    oldest_ts: int | None = None  # broker timestamp (ms) of the message at ts_offset
    ts_offset: int | None = None


@dataclass
class Cursor:
    topic: str
    partitions: dict[int, PartitionState] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": 1,
                "topic": self.topic,
                "partitions": {
                    str(p): {
                        "next": s.next,
                        "last_size": s.last_size,
                        "oldest_ts": s.oldest_ts,
                        "ts_offset": s.ts_offset,
                    }
                    for p, s in sorted(self.partitions.items())
                },
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | None, topic: str) -> Cursor:
        """Parse a cursor; one for another topic (the setting changed) starts afresh."""
        if not text:
            return cls(topic)
        obj = json.loads(text)
        if obj.get("topic") != topic:
            return cls(topic)
        return cls(
            topic,
            {
                int(p): PartitionState(
                    next=s["next"],
                    last_size=s.get("last_size", 0),
                    oldest_ts=s.get("oldest_ts"),
                    ts_offset=s.get("ts_offset"),
                )
                for p, s in obj.get("partitions", {}).items()
            },
        )


@dataclass(frozen=True)
class LostRange:
    partition: int
    start: int
    end: int


@dataclass
class Plan:
    ranges: list[OffsetRange] = field(default_factory=list)
    lost: list[LostRange] = field(default_factory=list)


GROWTH = 4


def next_batch_size(pending: int, last_size: int, policy: BatchPolicy) -> int:
    """Size of the next backlog batch: growing fourfold from ``batch_messages`` to the cap."""
    grown = policy.batch_messages if last_size < policy.batch_messages else GROWTH * last_size
    return min(pending, policy.max_batch_messages, grown)


def plan_batches(
    cursor: Cursor,
    offsets: dict[int, tuple[int, int]],
    now_ms: int,
    policy: BatchPolicy,
    inflight: dict[int, int] | None = None,
) -> Plan:
    """Decide the runs to request and advance ``cursor`` in place.

    ``offsets`` maps partition -> (beginning, end). Every partition must already
    be in the cursor (the sensor seeds new ones). Timestamps for the time trigger
    come from ``cursor.partitions[p].oldest_ts`` (for offset ``ts_offset``).
    """
    plan = Plan()
    inflight = inflight or {}
    for p, (begin, end) in sorted(offsets.items()):
        state = cursor.partitions[p]
        if state.next < begin:
            # Retention deleted messages nobody processed: report, never hide.
            plan.lost.append(LostRange(p, state.next, begin))
            state.next = begin
        pending = end - state.next
        if pending <= 0:
            state.last_size = 0
            continue
        allowed = policy.max_inflight - inflight.get(p, 0)
        aged = (
            state.oldest_ts is not None
            and state.ts_offset == state.next
            and now_ms - state.oldest_ts >= policy.wait_seconds * 1000
        )
        while allowed > 0 and pending > 0:
            if pending >= policy.batch_messages:
                size = next_batch_size(pending, state.last_size, policy)
            elif aged:
                size = pending
            else:
                break
            plan.ranges.append(OffsetRange(cursor.topic, p, state.next, state.next + size))
            state.next += size
            pending -= size
            allowed -= 1
            aged = False  # the new oldest message's age is unknown until next tick
            state.last_size = size if size >= policy.batch_messages else 0
        if pending == 0:
            state.last_size = 0
    return plan
