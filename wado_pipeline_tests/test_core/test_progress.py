"""Group progress: the committed offset covers exactly the contiguous processed prefix."""

import itertools

from hypothesis import given
from hypothesis import strategies as st

from wado_pipeline.core.progress import MAX_DONE_INTERVALS, PartitionProgress, subtract


def test_failed_batch_holds_the_offset_until_it_succeeds():
    p = PartitionProgress(0)
    p.record(50, 100)  # batch 0..49 failed; 50..99 succeeded
    p.record(100, 300)
    assert p.committed == 0
    assert p.unprocessed(upto=300) == [(0, 50)]
    p.record(0, 50)  # the re-execution
    assert (p.committed, p.done) == (300, [])


def test_reexecuting_an_old_batch_never_moves_back():
    p = PartitionProgress(500)
    p.record(0, 50)
    assert (p.committed, p.done) == (500, [])


def test_metadata_round_trip_and_foreign_metadata():
    p = PartitionProgress(10)
    p.record(20, 30)
    p.record(40, 45)
    again = PartitionProgress.from_commit(p.committed, p.to_metadata())
    assert (again.committed, again.done) == (10, [(20, 30), (40, 45)])
    # another tool's metadata string: nothing known beyond the offset
    assert PartitionProgress.from_commit(7, "written by kafka-consumer-groups").done == []
    assert PartitionProgress.from_commit(7, "").done == []


def test_metadata_stays_within_kafkas_default_limit():
    p = PartitionProgress(0)
    for i in range(1, 1000):
        p.record(i * 10, i * 10 + 5)  # 999 disjoint intervals
    assert len(p.to_metadata().encode()) < 4096
    assert len(PartitionProgress.from_commit(0, p.to_metadata()).done) == MAX_DONE_INTERVALS


@given(st.lists(st.integers(1, 30), min_size=1, max_size=20), st.randoms())
def test_any_order_of_batches_ends_at_the_contiguous_prefix(sizes, rnd):
    bounds = [0]
    for s in sizes:
        bounds.append(bounds[-1] + s)
    batches = list(itertools.pairwise(bounds))
    rnd.shuffle(batches)
    failed = batches.pop() if len(batches) > 1 else None
    p = PartitionProgress(0)
    done_offsets: set[int] = set()
    previous = 0
    for start, end in batches:
        p.record(start, end)
        done_offsets.update(range(start, end))
        prefix = 0
        while prefix in done_offsets:
            prefix += 1
        assert p.committed == prefix  # independent: the first offset not yet done
        assert p.committed >= previous
        previous = p.committed
        gaps = {o for s, e in p.unprocessed(bounds[-1]) for o in range(s, e)}
        assert gaps == set(range(bounds[-1])) - done_offsets
    if failed:
        p.record(*failed)
    assert (p.committed, p.done) == (bounds[-1], [])


def test_subtract_in_flight_ranges():
    assert subtract([(0, 100)], [(10, 20), (50, 150)]) == [(0, 10), (20, 50)]
    assert subtract([(0, 10), (20, 30)], []) == [(0, 10), (20, 30)]
    assert subtract([(0, 10)], [(0, 10)]) == []


def test_processed_spans_include_those_beyond_a_gap():
    """What a sink rebuild replays: the committed prefix and every processed range past
    a held gap (the first version replayed the prefix only)."""
    p = PartitionProgress(100, [(150, 200), (300, 320)])
    assert p.processed(since=0) == [(0, 100), (150, 200), (300, 320)]
    assert p.processed(since=160) == [(160, 200), (300, 320)]
    assert p.processed(since=400) == []
    assert PartitionProgress(0).processed(since=0) == []
