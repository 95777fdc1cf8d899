"""The micro-batch plan: thresholds, age trigger, growth under backlog, retention loss."""

from wado_pipeline.core.planning import (
    BatchPolicy,
    Cursor,
    OffsetRange,
    PartitionState,
    merge_ranges,
    plan_batches,
    relaunch,
)

POLICY = BatchPolicy(batch_messages=50, wait_seconds=5, max_batch_messages=2000, max_inflight=3)
NOW = 1_000_000_000


def cursor_at(next_offset: int, **kw) -> Cursor:
    return Cursor("t", {0: PartitionState(next=next_offset, **kw)})


def test_49_young_messages_wait():
    c = cursor_at(0, oldest_ts=NOW - 1000, ts_offset=0)
    assert plan_batches(c, {0: (0, 49)}, NOW, POLICY).ranges == []
    assert c.partitions[0].next == 0


def test_50_messages_make_one_run():
    c = cursor_at(0)
    (r,) = plan_batches(c, {0: (0, 50)}, NOW, POLICY).ranges
    assert (r.start, r.end, r.run_key) == (0, 50, "t:0:0-50")
    assert c.partitions[0].next == 50


def test_one_old_message_makes_a_run():
    c = cursor_at(10, oldest_ts=NOW - 5000, ts_offset=10)
    (r,) = plan_batches(c, {0: (0, 11)}, NOW, POLICY).ranges
    assert (r.start, r.end) == (10, 11)


def test_a_message_that_would_pass_its_wait_before_the_next_tick_is_due_now():
    from dataclasses import replace

    ticking = replace(POLICY, tick_seconds=2)
    young = cursor_at(0, oldest_ts=NOW - 2999, ts_offset=0)  # 3 s + 2 s tick < 5 s
    assert plan_batches(young, {0: (0, 10)}, NOW, ticking).ranges == []
    due = cursor_at(0, oldest_ts=NOW - 3000, ts_offset=0)  # would be 5 s at the next tick
    (r,) = plan_batches(due, {0: (0, 10)}, NOW, ticking).ranges
    assert (r.start, r.end) == (0, 10)


def test_timestamp_of_another_offset_is_not_used():
    c = cursor_at(10, oldest_ts=NOW - 60000, ts_offset=9)
    assert plan_batches(c, {0: (0, 11)}, NOW, POLICY).ranges == []


def drain(c: Cursor, end: int) -> list[OffsetRange]:
    seen = []
    for _ in range(100):
        seen.extend(plan_batches(c, {0: (0, end)}, NOW, POLICY, {0: 0}).ranges)
        if c.partitions[0].next == end:
            break
    return seen


def test_a_due_partition_gets_one_run_for_everything_pending():
    seen = drain(cursor_at(0), 1999)
    assert [(r.start, r.end) for r in seen] == [(0, 1999)]


def test_a_backlog_is_cut_at_the_cap_and_covered_once():
    seen = drain(cursor_at(0), 10_000)
    assert [r.size for r in seen] == [2000] * 5
    assert [o for r in seen for o in range(r.start, r.end)] == list(range(10_000))
    assert len({r.run_key for r in seen}) == len(seen)
    assert [r.size for r in drain(cursor_at(0), 3333)] == [2000, 1333]


def test_inflight_limit_bounds_the_queue():
    c = cursor_at(0)
    plan = plan_batches(c, {0: (0, 10_000)}, NOW, POLICY, {0: 2})
    assert len(plan.ranges) == 1
    assert plan_batches(c, {0: (0, 10_000)}, NOW, POLICY, {0: 3}).ranges == []


def test_lost_offsets_are_reported_not_hidden():
    c = cursor_at(100)
    plan = plan_batches(c, {0: (250, 260)}, NOW, POLICY)
    (lost,) = plan.lost
    assert (lost.partition, lost.start, lost.end) == (0, 100, 250)
    assert c.partitions[0].next == 250


def test_cursor_json_roundtrip():
    c = Cursor(
        "t", {0: PartitionState(5, NOW, 5, end_seen=9, end_seen_ms=NOW), 2: PartitionState(7)}
    )
    assert Cursor.from_json(c.to_json(), "t") == c
    assert Cursor.from_json(c.to_json(), "other").partitions == {}


def test_a_cursor_saved_by_the_earlier_policy_still_reads():
    """Cursors saved before this version kept a "last_size" per partition (the old
    fourfold ramp); a daemon upgraded in place reads them and drops it."""
    old = '{"v":1,"topic":"t","reported":null,"partitions":{"0":{"next":5,"last_size":800,'
    old += '"oldest_ts":null,"ts_offset":null}}}'
    assert Cursor.from_json(old, "t").partitions == {0: PartitionState(5)}


def test_holes_relaunch_after_grace_then_with_backoff():
    from wado_pipeline.core.planning import (
        RELAUNCH_GRACE_MS,
        RELAUNCH_MAX_DELAY_MS,
        due_relaunches,
        track_holes,
    )

    t = 1_000_000
    holes = track_holes([], [(0, 50)], t)
    assert due_relaunches(holes, t + RELAUNCH_GRACE_MS - 1, 2000, 3) == []
    (first,) = due_relaunches(holes, t + RELAUNCH_GRACE_MS, 2000, 3)
    assert (first.start, first.end, first.attempts) == (0, 50, 1)
    # the relaunched run failed too: the hole is back, with its history
    t2 = t + RELAUNCH_GRACE_MS
    holes = track_holes(holes, [(0, 50)], t2 + 5_000)
    assert holes[0].attempts == 1 and holes[0].first_seen_ms == t
    waits = []
    now = t2
    for _ in range(5):
        step = 1_000
        while not due_relaunches(holes, now + step, 2000, 3):
            step += 1_000
        now += step
        waits.append(step)
    assert waits == [40_000, 60_000, 60_000, 60_000, 60_000]
    assert max(waits) == RELAUNCH_MAX_DELAY_MS


def test_long_hole_is_relaunched_in_pieces_and_respects_the_inflight_limit():
    from wado_pipeline.core.planning import RELAUNCH_GRACE_MS, due_relaunches, track_holes

    holes = track_holes([], [(0, 5000), (6000, 6100)], 0)
    due = due_relaunches(holes, RELAUNCH_GRACE_MS, 2000, 1)
    assert [(h.start, h.end) for h in due] == [(0, 2000)]
    assert due_relaunches(track_holes([], [(0, 10)], 0), RELAUNCH_GRACE_MS, 2000, 0) == []


def test_claim_past_skips_claimed_and_processed_intervals():
    from wado_pipeline.core.planning import claim_past

    assert claim_past(10, []) == 10
    assert claim_past(10, [(10, 60)]) == 60
    assert claim_past(10, [(60, 80), (0, 10), (10, 60)]) == 80  # chained, in any order
    assert claim_past(10, [(20, 30)]) == 10  # a claim further on does not move it
    assert claim_past(10, [(0, 5)]) == 10


def test_pending_ranges_start_at_the_cursor_and_stop_at_the_cap():
    from wado_pipeline.core.planning import OffsetRange, pending_ranges

    bounds = {0: (0, 100), 1: (50, 60), 2: (0, 0), 3: (0, 5000)}
    starts = {0: 40, 1: 10, 3: 0}  # partition 1's start expired: begin at 50
    got = pending_ranges("t", bounds, starts, cap=2000)
    assert got == [
        OffsetRange("t", 0, 40, 100),
        OffsetRange("t", 1, 50, 60),
        OffsetRange("t", 3, 0, 2000),
    ]


def test_merge_ranges_joins_overlapping_and_adjacent_ranges_per_partition():
    r = OffsetRange
    given = [r("t", 1, 10, 20), r("t", 0, 5, 9), r("t", 1, 0, 10), r("t", 1, 15, 25)]
    given += [r("t", 0, 0, 3), r("t", 1, 30, 30), r("u", 1, 0, 4)]
    merged = merge_ranges(given)
    assert merged == [r("t", 0, 0, 3), r("t", 0, 5, 9), r("t", 1, 0, 25), r("u", 1, 0, 4)]


def test_a_partition_with_a_run_in_flight_waits_for_a_full_batch():
    # a run of this partition is queued or running: 1999 pending wait, 2100 make one full run
    c = cursor_at(0)
    assert plan_batches(c, {0: (0, 1999)}, NOW, POLICY, {0: 1}).ranges == []
    (r,) = plan_batches(c, {0: (0, 2100)}, NOW, POLICY, {0: 1}).ranges
    assert (r.start, r.end) == (0, 2000)
    # behind that full run the rest waits; once the partition's runs have ended, it goes
    assert plan_batches(c, {0: (0, 2100)}, NOW, POLICY, {0: 2}).ranges == []
    (r,) = plan_batches(c, {0: (0, 2100)}, NOW, POLICY, {0: 0}).ranges
    assert (r.start, r.end) == (2000, 2100)


def test_a_running_run_holds_a_batch_that_is_not_full():
    c = cursor_at(0)
    assert plan_batches(c, {0: (0, 50)}, NOW, POLICY, {0: 1}).ranges == []
    (r,) = plan_batches(c, {0: (0, 50)}, NOW, POLICY, {0: 0}).ranges
    assert (r.start, r.end) == (0, 50)


def test_an_aged_remainder_waits_for_the_run_in_flight_to_end_then_leaves():
    c = cursor_at(0, oldest_ts=NOW - 5000, ts_offset=0)
    assert plan_batches(c, {0: (0, 30)}, NOW, POLICY, {0: 1}).ranges == []
    (r,) = plan_batches(c, {0: (0, 30)}, NOW, POLICY, {0: 0}).ranges
    assert (r.start, r.end) == (0, 30)


def test_a_young_remainder_held_behind_a_run_leaves_when_it_ends():
    """Ten messages, half a second old: on an idle partition they wait for the count or
    the age; held behind a run in flight they leave at the first tick after it ended
    (they have waited that run already), and the next ones wait as usual again."""
    young = NOW - 500
    idle = cursor_at(0, oldest_ts=young, ts_offset=0)
    assert plan_batches(idle, {0: (0, 10)}, NOW, POLICY, {0: 0}).ranges == []
    c = cursor_at(0, oldest_ts=young, ts_offset=0)
    assert plan_batches(c, {0: (0, 10)}, NOW, POLICY, {0: 1}).ranges == []
    assert c.partitions[0].held
    c = Cursor.from_json(c.to_json(), "t")  # the tick's cursor is saved in between
    assert c.partitions[0].held
    (r,) = plan_batches(c, {0: (0, 12)}, NOW + 1000, POLICY, {0: 0}).ranges
    assert (r.start, r.end) == (0, 12)
    assert not c.partitions[0].held
    c.partitions[0].oldest_ts, c.partitions[0].ts_offset = NOW + 1500, 12
    assert plan_batches(c, {0: (0, 20)}, NOW + 2000, POLICY, {0: 0}).ranges == []


def test_a_partition_whose_traffic_stopped_is_due_after_the_quiet_time():
    """Ten young messages, 0.5 s old: while more keep arriving they wait for the count
    or the age; once the end offset has not moved for ``quiet_seconds`` (1 s here)
    they leave, and a run in flight still holds them."""
    from dataclasses import replace

    quiet = replace(POLICY, quiet_seconds=1)
    c = cursor_at(0, oldest_ts=NOW - 500, ts_offset=0)
    assert plan_batches(c, {0: (0, 10)}, NOW, quiet, {0: 0}).ranges == []
    # 0.6 s later two more arrived: not quiet, and 1.1 s old is far from the 5 s
    assert plan_batches(c, {0: (0, 12)}, NOW + 600, quiet, {0: 0}).ranges == []
    c = Cursor.from_json(c.to_json(), "t")  # the tick's cursor is saved in between
    # 0.9 s after the last arrival: not yet
    assert plan_batches(c, {0: (0, 12)}, NOW + 1500, quiet, {0: 0}).ranges == []
    # 1 s after it: due, everything pending in one run
    (r,) = plan_batches(c, {0: (0, 12)}, NOW + 1600, quiet, {0: 0}).ranges
    assert (r.start, r.end) == (0, 12)
    # the same quiet partition with a run in flight: held behind it, as before
    busy = cursor_at(0, oldest_ts=NOW - 500, ts_offset=0)
    plan_batches(busy, {0: (0, 10)}, NOW, quiet, {0: 1})
    assert plan_batches(busy, {0: (0, 10)}, NOW + 2000, quiet, {0: 1}).ranges == []
    assert busy.partitions[0].held
    # with the rule off (0), only the count and the age make a run
    off = cursor_at(0, oldest_ts=NOW - 500, ts_offset=0)
    plan_batches(off, {0: (0, 10)}, NOW, POLICY, {0: 0})
    assert plan_batches(off, {0: (0, 10)}, NOW + 3000, POLICY, {0: 0}).ranges == []


def test_steady_heavy_traffic_makes_fewer_larger_runs():
    """167 messages per tick, each run in flight (queued, then running) for the two
    ticks after its request: one run every three ticks after the first, of three ticks'
    arrivals (not a run every tick, queued behind the last with a fixed small range)."""
    c = cursor_at(0)
    end, in_flight, sizes = 0, [], []
    for _ in range(30):
        end += 167
        in_flight = [age + 1 for age in in_flight if age + 1 < 3]
        plan = plan_batches(c, {0: (0, end)}, NOW, POLICY, {0: len(in_flight)})
        in_flight += [0 for _ in plan.ranges]
        sizes += [r.size for r in plan.ranges]
    assert sizes == [167] + [3 * 167] * 9
    assert end - sum(sizes) == 2 * 167  # the last two ticks' arrivals, behind a run


def test_a_tick_requests_the_partitions_round_robin():
    c = Cursor("t", {p: PartitionState(next=0) for p in range(3)})
    plan = plan_batches(c, {0: (0, 3400), 1: (0, 3800), 2: (0, 2100)}, NOW, POLICY)
    order = [(r.partition, r.start) for r in plan.ranges]
    assert order == [(0, 0), (1, 0), (2, 0), (0, 2000), (1, 2000), (2, 2000)]


def test_relaunches_over_a_six_hour_outage_get_fresh_keys_and_keep_pace():
    """The sensor's relaunch rules, tick by tick (5 s) over a 6-hour outage: each
    relaunch is in flight for 30 s (its hole covered, so forgotten), then fails and the
    hole comes back. Every relaunch needs a run key of its own (Dagster launches a key
    once), and one follows within the promised minute of the hole coming back."""
    tick_ms, in_flight_ms, outage_ms = 5_000, 30_000, 6 * 3600 * 1000
    state = PartitionState(next=100)
    keys: list[str] = []
    launched_at: list[int] = []
    running_until = None  # the relaunch in flight ends (fails) then
    back_since = 0  # when the hole last became uncovered
    worst_wait = 0
    rng = OffsetRange("t", 0, 0, 100)
    for now in range(0, outage_ms + 10 * 60_000, tick_ms):
        if running_until is not None and now >= running_until:
            running_until = None
            if now >= outage_ms:  # the service is back: this relaunch succeeded
                break
            back_since = now
        gaps = [] if running_until is not None else [(rng.start, rng.end)]
        for _hole, number in relaunch(state, gaps, now, 2000, 1):
            keys.append(rng.run_key + f"#relaunch-{number}")
            launched_at.append(now)
            worst_wait = max(worst_wait, now - back_since)
            running_until = now + in_flight_ms
        state = Cursor.from_json(Cursor("t", {0: state}).to_json(), "t").partitions[0]
    assert len(keys) == len(set(keys)), "a relaunch reused a run key"
    assert launched_at[-1] >= outage_ms - 60_000  # relaunched right up to the recovery
    assert worst_wait <= 60_000
    assert len(keys) >= outage_ms // (in_flight_ms + 60_000)


def test_a_range_cuts_itself_into_slices_of_the_cap():
    rng = OffsetRange("t", 2, 10, 4511)
    parts = rng.slices(2000)
    assert [(p.start, p.end) for p in parts] == [(10, 2010), (2010, 4010), (4010, 4511)]
    assert {(p.topic, p.partition) for p in parts} == {("t", 2)}
    assert OffsetRange("t", 0, 5, 5).slices(2000) == []
    assert rng.described == "t[2] offsets 10..4510" and str(rng) == "t[2] 10..4510"
