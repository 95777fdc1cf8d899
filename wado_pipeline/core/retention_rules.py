"""Which finished runs Dagster's storage may forget (the retention job's rules).

Pure: the caller reads the runs, the consumer group's progress and the runs that hold
an asset's latest materialization or a check's latest result; this decides.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from wado_pipeline.core.planning import OffsetRange
from wado_pipeline.core.progress import PartitionProgress, subtract


@dataclass(frozen=True)
class FinishedRun:
    """A run past the retention window, as the rules need it."""

    run_id: str
    succeeded: bool
    ranges: tuple[OffsetRange, ...] = ()
    # The sink a partial run (a rebuild) wrote; None for a run that writes every sink.
    sink: str | None = None


@dataclass
class Redone:
    """What makes a failed run's ranges redone: the group's progress (a run writing
    every sink), and the ranges later rebuilt successfully, per sink."""

    progress: dict[tuple[str, int], PartitionProgress] = field(default_factory=dict)
    rebuilt: dict[str, list[OffsetRange]] = field(default_factory=dict)

    def unresolved(self, run: FinishedRun) -> list[OffsetRange]:
        """The parts of ``run``'s ranges that no later run has processed."""
        out = []
        for rng in run.ranges:
            if run.sink is None:
                done = self.progress.get((rng.topic, rng.partition))
                if done is None:
                    out.append(rng)
                    continue
                gaps = [(s, e) for s, e in done.unprocessed(upto=rng.end) if s < rng.end]
                covered = []
            else:
                gaps = [(0, rng.end)]
                covered = [
                    (r.start, r.end)
                    for r in self.rebuilt.get(run.sink, [])
                    if (r.topic, r.partition) == (rng.topic, rng.partition)
                ]
            for s, e in subtract(gaps, covered):
                s, e = max(s, rng.start), min(e, rng.end)
                if s < e:
                    out.append(OffsetRange(rng.topic, rng.partition, s, e))
        return out


def deletable(runs: Iterable[FinishedRun], keep: set[str], redone: Redone) -> list[str]:
    """The ids of ``runs`` (all past the window) that may be deleted with their events.

    Kept: a run that holds an asset's latest materialization or a check's latest
    result (``keep``: the asset's history, freshness and lineage start there), and a
    failed run with a range no later run has processed (the UI is where it is
    re-executed, and ``no_failed_batches`` names it)."""
    out = []
    for run in runs:
        if run.run_id in keep:
            continue
        if not run.succeeded and run.ranges and redone.unresolved(run):
            continue
        out.append(run.run_id)
    return out
