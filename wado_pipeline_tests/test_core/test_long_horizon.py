"""The self-healing rules over simulated days: a model-based test (Hypothesis stateful).

It drives the functions the storage topic sensor calls, in the order it calls them
(``skip_taken``, the age trigger, ``relaunches_due``, ``plan_batches``), the group's
progress as the runs commit it (``PartitionProgress``, with the clipping of a range
whose start retention deleted, ``steps.read_readable``'s rule) and Dagster's run retries,
against a broker whose log start moves. It injects failing runs, dying workers, outages
of minutes to hours, jumps of idle hours and retention. Checked at every step:
- the committed offset never decreases;
- no range is handed to a run while another run holds any of its offsets;
- every relaunch has a run key of its own;
- after an outage ends, every hole is relaunched within 60 s;
- the cursor and the commit metadata stay bounded.
At the end, with the services up, everything drains: every offset ever produced is
processed or reported lost.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from wado_pipeline.core.planning import (
    RELAUNCH_MAX_DELAY_MS,
    BatchPolicy,
    Cursor,
    OffsetRange,
    PartitionState,
    expired_holes,
    plan_batches,
    relaunches_due,
    skip_taken,
)
from wado_pipeline.core.progress import MAX_DONE_INTERVALS, PartitionProgress

TICK_MS = 5_000
POLICY = BatchPolicy(
    batch_messages=50, wait_seconds=5, max_batch_messages=2000, max_inflight=3, tick_seconds=5
)
DAGSTER_RETRIES = 2  # dagster.yaml run_retries.max_retries
CURSOR_MAX_BYTES = 4096
TOPIC = "storage"
TOTALS = {"examples": 0, "steps": 0, "simulated_ms": 0, "faults": {}}


@dataclass
class Run:
    start: int
    end: int
    retries_left: int


class Pipeline(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.now = 0
        self.begin = self.end = 0
        self.produced_at: dict[int, int] = {}
        self.progress: PartitionProgress | None = None  # the group never committed yet
        self.cursor = Cursor(TOPIC)
        self.runs: list[Run] = []
        self.keys: set[str] = set()
        self.processed: set[int] = set()
        self.lost: set[int] = set()
        self.up = True
        self.last_committed = 0
        self.faults: dict[str, int] = {}
        TOTALS["examples"] += 1
        self._tick()  # the pipeline runs before the first message arrives

    # ------------------------------------------------------------ the world

    def _fault(self, name: str) -> None:
        self.faults[name] = self.faults.get(name, 0) + 1
        TOTALS["faults"][name] = TOTALS["faults"].get(name, 0) + 1

    def _tick(self) -> list[tuple[int, int]]:
        """One sensor evaluation; the ranges it hands to runs."""
        self.now += TICK_MS
        TOTALS["simulated_ms"] += TICK_MS
        TOTALS["steps"] += 1
        if 0 not in self.cursor.partitions:
            start = self.progress.committed if self.progress else self.begin
            self.cursor.partitions[0] = PartitionState(next=start, start=start)
        state = self.cursor.partitions[0]
        skip_taken(state, [], self.progress)
        pending = self.end - max(state.next, self.begin)
        if pending > 0 and state.ts_offset != state.next:
            state.oldest_ts = self.produced_at.get(max(state.next, self.begin))
            state.ts_offset = state.next if state.oldest_ts is not None else None
        done = state.progress_of(self.progress, self.begin)
        for s, e in expired_holes(state, done, self.begin):
            self.lost.update(range(s, e))
        covered = [(r.start, r.end) for r in self.runs]
        allowed = POLICY.max_inflight - len(self.runs)
        handed = []
        for hole, number in relaunches_due(
            state, done, covered, self.now, POLICY.max_batch_messages, allowed
        ):
            key = f"{TOPIC}:0:{hole.start}-{hole.end}#relaunch-{number}"
            assert key not in self.keys, f"run key {key} reused"
            self.keys.add(key)
            handed.append((hole.start, hole.end))
        plan = plan_batches(
            self.cursor, {0: (self.begin, self.end)}, self.now, POLICY, {0: len(self.runs)}
        )
        for lost in plan.lost:
            self.lost.update(range(lost.start, lost.end))
        handed += [(r.start, r.end) for r in plan.ranges]
        for s, e in handed:
            assert not any(s < r.end and r.start < e for r in self.runs), (s, e, self.runs)
            self.runs.append(Run(s, e, DAGSTER_RETRIES))
        return handed

    def _finish(self, run: Run, ok: bool) -> None:
        self.runs.remove(run)
        if not ok:
            if run.retries_left:  # Dagster's run retry: a new run of the same range
                self.runs.append(Run(run.start, run.end, run.retries_left - 1))
            return
        rng = OffsetRange(TOPIC, 0, run.start, run.end)
        if rng.start < self.begin:  # retention deleted its start: the rest is processed
            self.lost.update(range(rng.start, min(self.begin, rng.end)))
        self.processed.update(range(max(rng.start, self.begin), rng.end))
        if self.progress is None:
            self.progress = PartitionProgress(self.begin)
        self.progress.record(rng.start, rng.end)

    def _holes(self) -> list[tuple[int, int]]:
        """Offsets handed to runs and not processed (nothing is in flight between steps)."""
        state = self.cursor.partitions.get(0)
        if state is None:
            return []
        return state.progress_of(self.progress, self.begin).unprocessed(upto=state.next)

    def _step(self) -> None:
        """A tick, then every run in flight ends (runs take under a tick here)."""
        self._tick()
        for run in list(self.runs):
            self._finish(run, ok=self.up)

    # ------------------------------------------------------------ rules

    @rule(n=st.integers(1, 3000))
    def produce(self, n: int) -> None:
        for offset in range(self.end, self.end + n):
            self.produced_at[offset] = self.now
        self.end += n

    @rule()
    def tick(self) -> None:
        self._step()

    @rule()
    def a_run_fails(self) -> None:
        self._tick()
        if self.runs:
            self._fault("failed run")
            self._finish(self.runs[0], ok=False)

    @rule()
    def a_worker_dies(self) -> None:
        """Dagster's run monitoring fails its run: retried like any failed run."""
        self._tick()
        if self.runs:
            self._fault("dead worker")
            self._finish(self.runs[-1], ok=False)

    @rule(minutes=st.sampled_from([1, 5, 30, 120, 360]))
    def outage(self, minutes: int) -> None:
        self._fault(f"outage {minutes} min")
        self.up = False
        for _ in range(minutes * 60_000 // TICK_MS):
            self._step()
        self.up = True
        recovered = self.now
        holes = self._holes()
        while holes and self.now - recovered <= RELAUNCH_MAX_DELAY_MS + TICK_MS:
            self._step()
            holes = self._holes()
        assert not holes, f"unprocessed {holes} {self.now - recovered} ms after recovery"

    @rule(hours=st.integers(1, 48))
    def idle(self, hours: int) -> None:
        """Hours without traffic (jumped, not ticked: nothing happens meanwhile)."""
        self.now += hours * 3_600_000
        TOTALS["simulated_ms"] += hours * 3_600_000

    @rule(k=st.integers(1, 5000))
    def retention_moves_the_log_start(self, k: int) -> None:
        self._fault("log start moved")
        self.begin = min(self.end, self.begin + k)

    # ------------------------------------------------------------ invariants

    @invariant()
    def committed_never_decreases(self) -> None:
        committed = self.progress.committed if self.progress else 0
        assert committed >= self.last_committed
        self.last_committed = committed

    @invariant()
    def bounded(self) -> None:
        assert len(self.cursor.to_json()) <= CURSOR_MAX_BYTES
        if self.progress:
            assert len(self.progress.done) <= MAX_DONE_INTERVALS

    def teardown(self) -> None:
        """Services up: everything drains, and every offset produced is accounted for."""
        if not hasattr(self, "cursor"):
            return
        self.up = True
        for _ in range(200):
            self._step()
            state = self.cursor.partitions.get(0)
            if state and state.next >= self.end and not self.runs and not self._holes():
                break
        everything = set(range(self.end))
        missing = everything - self.processed - self.lost
        assert not missing, f"{len(missing)} offsets neither processed nor reported lost"
        committed = self.progress.committed if self.progress else self.begin
        assert committed >= min(self.end, max(self.begin, committed))


Pipeline.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    derandomize=True,  # the same histories on every run: a failure here is never luck
    suppress_health_check=[HealthCheck.too_slow],
)


def test_self_healing_over_simulated_days(capsys):
    Pipeline.TestCase("runTest").runTest()
    days = TOTALS["simulated_ms"] / 86_400_000
    faults = ", ".join(f"{k}: {v}" for k, v in sorted(TOTALS["faults"].items()))
    with capsys.disabled():  # shown in every run, not only under -s
        print(
            f"\nsimulated {days:.1f} days over {TOTALS['examples']} histories, "
            f"{TOTALS['steps']} sensor ticks; faults injected: {faults}"
        )
    assert TOTALS["faults"] and TOTALS["steps"] > 0
