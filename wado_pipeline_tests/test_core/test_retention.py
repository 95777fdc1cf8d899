"""The retention rules: what Dagster's storage may forget."""

from wado_pipeline.core.planning import OffsetRange
from wado_pipeline.core.progress import PartitionProgress
from wado_pipeline.core.retention_rules import FinishedRun, Redone, deletable


def r(p: int, start: int, end: int) -> OffsetRange:
    return OffsetRange("t", p, start, end)


def test_successful_runs_go_unless_they_hold_a_latest_result():
    runs = [FinishedRun("a", True, (r(0, 0, 10),)), FinishedRun("b", True, (r(0, 10, 20),))]
    assert deletable(runs, keep={"b"}, redone=Redone()) == ["a"]


def test_a_failed_run_stays_until_its_range_is_processed():
    failed = FinishedRun("f", False, (r(0, 10, 20),))
    # the group is at 15: offsets 15..19 are not processed yet
    half = Redone(progress={("t", 0): PartitionProgress(15)})
    assert deletable([failed], set(), half) == []
    # processed past it, or out of order beyond the committed offset
    assert deletable([failed], set(), Redone(progress={("t", 0): PartitionProgress(20)})) == ["f"]
    beyond = Redone(progress={("t", 0): PartitionProgress(5, done=[(8, 30)])})
    assert deletable([failed], set(), beyond) == ["f"]
    # a partition the group never committed: nothing is known to be processed
    assert deletable([failed], set(), Redone()) == []


def test_a_failed_rebuild_stays_until_the_same_sink_is_rebuilt_over_its_range():
    failed = FinishedRun("f", False, (r(1, 0, 50),), sink="doris")
    processed = {("t", 1): PartitionProgress(100)}  # the pipeline itself processed it
    assert deletable([failed], set(), Redone(progress=processed)) == []
    other_sink = Redone(progress=processed, rebuilt={"postgres": [r(1, 0, 50)]})
    assert deletable([failed], set(), other_sink) == []
    partly = Redone(progress=processed, rebuilt={"doris": [r(1, 0, 30), r(0, 30, 50)]})
    assert deletable([failed], set(), partly) == []
    whole = Redone(progress=processed, rebuilt={"doris": [r(1, 0, 30), r(1, 25, 60)]})
    assert deletable([failed], set(), whole) == ["f"]


def test_failed_runs_without_a_range_go_and_kept_ids_always_stay():
    runs = [FinishedRun("v", False), FinishedRun("w", False, (r(0, 0, 5),))]
    done = Redone(progress={("t", 0): PartitionProgress(5)})
    assert deletable(runs, set(), done) == ["v", "w"]
    assert deletable(runs, {"v", "w"}, done) == []
