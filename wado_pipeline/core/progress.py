"""Which offsets of a partition are processed: the group offset and what lies beyond it.

The consumer group's committed offset is the end of the contiguous prefix of
successfully processed batches. A batch that succeeds beyond a gap (an earlier batch
failed, or is still running) cannot move the offset; it is remembered as a *done*
interval, stored in the commit's metadata string next to the offset. When the gap is
filled, the offset jumps over every done interval it now touches. Kafka tools thus
show the true lag: a failed batch holds the offset until it is re-executed.

Pure logic; ``resources.kafka`` reads and writes the commits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

METADATA_VERSION = 1
# Kafka's default offset.metadata.max.bytes is 4096; each interval takes ~20 bytes.
MAX_DONE_INTERVALS = 150


def _merge(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


@dataclass
class PartitionProgress:
    """``committed``: every offset below it is processed; ``done``: processed intervals
    ``[start, end)`` beyond it (sorted, disjoint, none touching ``committed``)."""

    committed: int
    done: list[tuple[int, int]] = field(default_factory=list)

    def record(self, start: int, end: int) -> None:
        """A batch ``[start, end)`` succeeded: move the offset as far as it may go."""
        merged = _merge([*self.done, (start, end)])
        rest = []
        for s, e in merged:
            if s <= self.committed:
                self.committed = max(self.committed, e)
            else:
                rest.append((s, e))
        self.done = rest

    def processed(self, since: int) -> list[tuple[int, int]]:
        """Every processed interval from ``since`` on: below the committed offset and
        each one beyond a gap (what a sink rebuild must replay, not only the prefix)."""
        spans = [(0, self.committed), *self.done]
        return [(max(s, since), e) for s, e in spans if e > max(s, since)]

    def unprocessed(self, upto: int) -> list[tuple[int, int]]:
        """The gaps in ``[committed, upto)``: offsets handed to runs but not yet done."""
        gaps = []
        pos = self.committed
        for s, e in self.done:
            if s >= upto:
                break
            if s > pos:
                gaps.append((pos, min(s, upto)))
            pos = max(pos, e)
        if pos < upto:
            gaps.append((pos, upto))
        return gaps

    def to_metadata(self) -> str:
        """The commit metadata string (bounded: see ``MAX_DONE_INTERVALS``)."""
        if not self.done:
            return ""
        done = self.done[:MAX_DONE_INTERVALS]
        return json.dumps({"v": METADATA_VERSION, "done": done}, separators=(",", ":"))

    @classmethod
    def from_commit(cls, offset: int, metadata: str | None) -> PartitionProgress:
        """Progress from a committed offset and its metadata (foreign or empty metadata:
        nothing known beyond the offset)."""
        done: list[tuple[int, int]] = []
        if metadata:
            try:
                obj = json.loads(metadata)
                if isinstance(obj, dict) and obj.get("v") == METADATA_VERSION:
                    done = [(int(s), int(e)) for s, e in obj.get("done", [])]
            except (ValueError, TypeError):
                done = []
        progress = cls(offset)
        for s, e in _merge(done):
            progress.record(s, e)
        return progress


def subtract(gaps: list[tuple[int, int]], covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``gaps`` minus the ``covered`` intervals (e.g. ranges of runs in flight)."""
    out = []
    cover = _merge(list(covered))
    for start, end in gaps:
        pos = start
        for s, e in cover:
            if e <= pos or s >= end:
                continue
            if s > pos:
                out.append((pos, s))
            pos = max(pos, e)
        if pos < end:
            out.append((pos, end))
    return out
