"""The Kafka offset sensor: storage-topic offsets in, one run per micro-batch out.

Every 1 to 1.25 s (``SENSOR_TICK_SECONDS``) it reads each partition's beginning and end
offsets and the consumer group's progress (never message content, apart from one
timestamp for the age trigger), plans
batches with ``core.planning`` and requests one run per offset range. The cursor holds
the next offset per partition; it is saved with the tick, so a failed tick advances
nothing. The group's offsets are committed by the runs, after writing.

It also keeps the pipeline healing by itself (a run whose worker died is failed by
Dagster's run monitoring, which asks the run launcher, ``instance.launcher``):
- *Holes*: offsets handed to runs that are neither processed (group progress) nor
  covered by a run in flight. After Dagster's own run retries are spent, the sensor
  relaunches the range with backoff (20 s, 40 s, then every 60 s) until it succeeds.
  The ``no_failed_batches`` check on the storage topic is red meanwhile.
- *Runs launched without a range* (UI "Materialize all"): the sensor hands them what is
  pending, in their ``wado/pending`` tag, and its cursor skips it.
- A broker that does not answer fails the tick, so the UI shows it in red.
"""

import time
from dataclasses import dataclass, field

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetKey,
    DagsterRunStatus,
    DefaultSensorStatus,
    JobDefinition,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from wado_pipeline.core.planning import (
    RELAUNCH_GRACE_MS,
    Cursor,
    Hole,
    LostRange,
    OffsetRange,
    PartitionState,
    expired_holes,
    pending_ranges,
    plan_batches,
    relaunches_due,
    skip_taken,
)
from wado_pipeline.core.progress import PartitionProgress
from wado_pipeline.core.run_contract import (
    DATA_LANE,
    PARTITION_TAG,
    PENDING_TAG,
    RANGE_TAG,
    REBUILD_PARTITION_TAG,
    REBUILD_PLAN_TAG,
    REBUILD_TAG,
    RELAUNCH_TAG,
    SENSOR_MIN_INTERVAL_SECONDS,
    SENSOR_NAME,
    SINK_TAG,
    UNPROCESSED_CHECK,
    partition_tag,
    pending_tag,
    range_from_tags,
    rebuild_plan_from_tag,
    run_config_for,
    tags_for,
)
from wado_pipeline.dagster_internals import PARENT_RUN_ID_TAG
from wado_pipeline.resources.dagster_instance.dagster_runs import (
    claimed_ranges,
    failed_runs_by_range,
    in_flight_runs,
    launched_without_range,
    recent_rebuild_plans,
)
from wado_pipeline.resources.ingest_settings import IngestSettings
from wado_pipeline.resources.kafka import CodecUnavailable, KafkaResource, PartitionOffsets
from wado_pipeline.resources.lost_offsets import lost_offsets_evaluation
from wado_pipeline.resources.retry import bounded_call

NOT_STARTED = (DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED)


class KafkaUnavailable(Exception):
    """The broker did not answer a sensor call (fails the tick: red in the UI)."""


class UndecodableTopic(Exception):
    """The broker answered, but with record batches this installation cannot decode
    (a codec library is missing). Fails the tick, cursor unchanged, naming the codec."""


def run_request_for(rng: OffsetRange, attempt: int = 0, number: int = 0) -> RunRequest:
    """The run of a range; for the sensor's relaunch of a failed range, ``attempt`` (the
    hole's, in the run's tag) and ``number`` (the partition's, in its unique run key)."""
    tags = tags_for(rng)
    if attempt:
        tags[RELAUNCH_TAG] = str(attempt)
    return RunRequest(
        run_key=rng.run_key + (f"#relaunch-{number}" if number else ""),
        run_config=run_config_for(rng),
        tags=tags,
    )


def describe_holes(topic: str, holes: dict[int, list[Hole]], failed: dict[int, dict]) -> str:
    """One line per unprocessed range, naming the failed run that covers it, if any."""
    lines = []
    for p, hs in sorted(holes.items()):
        for h in hs:
            runs = sorted(
                {rid for (s, e), rid in failed.get(p, {}).items() if s < h.end and h.start < e}
            )
            who = f"failed run(s) {', '.join(runs)}" if runs else "no run in flight"
            rng = OffsetRange(topic, p, h.start, h.end)
            lines.append(f"{rng.described} unprocessed ({who}); relaunched {h.attempts} time(s)")
    return "\n".join(lines)


def rebuild_requests(instance, cursor: Cursor, topic: str, cap: int, keys_of) -> list[RunRequest]:
    """Runs for sink rebuild plans not yet carried out (``assets.rebuild_job``): one per
    batch-cap slice, selecting only the sink's assets, tagged with the plan's run id.
    Without a partition tag they never hold up the sensor's own runs; their own
    concurrency limit (``wado/rebuild`` in dagster.yaml) paces them."""
    out = []
    for plan_run in reversed(recent_rebuild_plans(instance)):
        if plan_run.run_id in cursor.dispatched:
            continue
        sink, ranges = rebuild_plan_from_tag(topic, plan_run.tags[REBUILD_PLAN_TAG])
        for rng in ranges:
            for part in rng.slices(cap):
                out.append(
                    RunRequest(
                        run_key=f"rebuild:{plan_run.run_id}:{part.run_key}",
                        run_config=run_config_for(part),
                        asset_selection=keys_of(sink),
                        asset_check_keys=[],  # verify_batches verifies them with the rest
                        tags={
                            REBUILD_TAG: plan_run.run_id,
                            SINK_TAG: sink,
                            REBUILD_PARTITION_TAG: str(part.partition),
                            RANGE_TAG: f"{part.start}-{part.end}",
                            **DATA_LANE,
                        },
                    )
                )
        cursor.mark_dispatched(plan_run.run_id)
    return out


@dataclass
class Tick:
    """What one evaluation of the sensor reads once and its steps share."""

    context: SensorEvaluationContext
    kafka: KafkaResource
    ingest: IngestSettings
    job_name: str
    storage_asset_key: AssetKey
    now_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    cursor: Cursor | None = None
    offsets: list[PartitionOffsets] = field(default_factory=list)
    progress: dict[int, PartitionProgress] = field(default_factory=dict)
    claimed: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    inflight_runs: list = field(default_factory=list)
    unassigned: list = field(default_factory=list)
    requests: list[RunRequest] = field(default_factory=list)
    events: list = field(default_factory=list)
    inflight: dict[int, int] = field(default_factory=dict)

    @property
    def topic(self) -> str:
        return self.ingest.storage_topic

    @property
    def log(self):
        return self.context.log

    def ask(self, what: str, fn):
        """A bounded Kafka call; a broker that does not answer, or answers with batches
        this installation cannot decode, fails the tick with the cursor unchanged."""
        budget = max(self.kafka.timeout_seconds * 3, 5.0)
        try:
            return bounded_call(fn, budget, what)
        except CodecUnavailable as exc:  # the broker answered: say what is missing
            raise UndecodableTopic(f"{exc}; no runs requested, cursor unchanged") from None
        except Exception as exc:  # broker down or slow: a failed tick, cursor unchanged
            raise KafkaUnavailable(
                f"Kafka at {self.kafka.bootstrap} did not answer ({what}: "
                f"{type(exc).__name__}); no runs requested, cursor unchanged"
            ) from None


def read_claims(tick: Tick) -> None:
    """Runs in flight, and what runs launched without a range (UI "Materialize all")
    claim in their ``wado/pending`` tag; those without one yet are ``unassigned``.

    A run whose worker died is failed by Dagster's run monitoring, which asks the run
    launcher (dagster.yaml); a slow run is never taken for a dead one."""
    tick.inflight_runs = in_flight_runs(tick.context.instance, tick.job_name)
    unranged = launched_without_range(tick.context.instance)
    # A re-execution replays its parent's ranges: the sensor never hands it new ones.
    tick.unassigned = [
        r
        for r in reversed(unranged)
        if PENDING_TAG not in r.tags and not (r.parent_run_id or r.tags.get(PARENT_RUN_ID_TAG))
    ]
    tick.claimed = claimed_ranges(unranged, tick.topic)


def assign_claims(tick: Tick) -> None:
    """Give each run launched without a range what is pending now, up to the batch cap
    per partition, oldest run first: written to its ``wado/pending`` tag, which the run
    waits for and the cursor then skips. The sensor alone hands out offsets, so a UI run
    and the sensor's batches never overlap."""
    cap = tick.ingest.max_batch_messages
    bounds = {o.partition: (o.beginning, o.end) for o in tick.offsets}
    for run in tick.unassigned:
        starts = {p: state.next for p, state in tick.cursor.partitions.items()}
        ranges = pending_ranges(tick.topic, bounds, starts, cap)
        tick.context.instance.add_run_tags(run.run_id, {PENDING_TAG: pending_tag(ranges)})
        tick.log.info(f"run {run.run_id} launched without a range takes {pending_tag(ranges)}")
        for rng in ranges:
            tick.claimed.setdefault(rng.partition, []).append((rng.start, rng.end))
        skip_claimed(tick)


def read_offsets(tick: Tick) -> SkipReason | None:
    """Each partition's beginning and end, and the consumer group's progress."""
    offsets = tick.ask("end offsets", lambda: tick.kafka.partition_offsets(tick.topic))
    if offsets is None:
        return SkipReason(f"topic {tick.topic} does not exist; cursor unchanged")
    tick.offsets = offsets
    parts = [o.partition for o in offsets]
    group = tick.ingest.consumer_group
    tick.progress = tick.ask(
        "group offsets", lambda: tick.kafka.group_progress(group, tick.topic, parts)
    )
    return None


def read_cursor(tick: Tick) -> None:
    """The saved cursor; a new partition starts at the group's commit or its beginning."""
    cursor = tick.cursor = Cursor.from_json(tick.context.cursor, tick.topic)
    for o in tick.offsets:
        if o.partition not in cursor.partitions:
            got = tick.progress.get(o.partition)
            start = got.committed if got else o.beginning
            cursor.partitions[o.partition] = PartitionState(next=start, start=start)
            tick.log.info(f"{tick.topic}[{o.partition}]: starting at offset {start}")


def skip_claimed(tick: Tick) -> None:
    """Skip offsets other runs took or that are processed already, so the sensor and a
    run launched without a range never take the same offsets."""
    for o in tick.offsets:
        state = tick.cursor.partitions[o.partition]
        claimed = tick.claimed.get(o.partition, [])
        skipped = skip_taken(state, claimed, tick.progress.get(o.partition))
        if skipped is not None:
            rng = OffsetRange(tick.topic, o.partition, *skipped)
            tick.log.info(f"offsets {rng}: taken by another run or processed; skipping them")


def read_ages(tick: Tick) -> None:
    """Age trigger: the broker timestamp of each partition's oldest pending message,
    read for every batch's first record, full or not: decoding it proves the codec is
    readable before the range goes to a run."""
    for o in tick.offsets:
        state = tick.cursor.partitions[o.partition]
        pending = o.end - max(state.next, o.beginning)
        if pending > 0 and state.ts_offset != state.next:
            state.oldest_ts = tick.ask(
                "timestamp",
                lambda o=o, s=state: tick.kafka.first_timestamp(tick.topic, o.partition, s.next),
            )
            state.ts_offset = state.next if state.oldest_ts is not None else None


def relaunch_holes(tick: Tick) -> list[LostRange]:
    """Holes (handed to runs, not processed, nothing in flight) relaunched when due;
    returns the holes' parts that retention deleted before they were read."""
    policy = tick.ingest.policy
    expired: list[LostRange] = []
    for o in tick.offsets:
        p, state = o.partition, tick.cursor.partitions[o.partition]
        mine = [
            r
            for r in tick.inflight_runs
            if r.tags.get(PARTITION_TAG) == partition_tag(tick.topic, p)
        ]
        tick.inflight[p] = len(mine)
        done = state.progress_of(tick.progress.get(p), o.beginning)
        expired.extend(LostRange(p, s, e) for s, e in expired_holes(state, done, o.beginning))
        covered = [rng for rng in (range_from_tags(r.tags) for r in mine) if rng is not None]
        covered += tick.claimed.get(p, [])
        allowed = policy.max_inflight - tick.inflight[p]
        due = relaunches_due(state, done, covered, tick.now_ms, policy.max_batch_messages, allowed)
        for h, number in due:
            rng = OffsetRange(tick.topic, p, h.start, h.end)
            tick.log.warning(f"{rng} unprocessed: relaunch {h.attempts}")
            tick.requests.append(run_request_for(rng, attempt=h.attempts, number=number))
            tick.inflight[p] += 1
    return expired


def plan_new_batches(tick: Tick, keys_of) -> list[LostRange]:
    """The batches due now and the runs of sink rebuild plans; returns the offsets that
    expired from Kafka before the cursor reached them."""
    plan = plan_batches(
        tick.cursor,
        {o.partition: (o.beginning, o.end) for o in tick.offsets},
        tick.now_ms,
        tick.ingest.policy,
        tick.inflight,
    )
    tick.requests.extend(run_request_for(r) for r in plan.ranges)
    cap = tick.ingest.max_batch_messages
    instance = tick.context.instance
    tick.requests.extend(rebuild_requests(instance, tick.cursor, tick.topic, cap, keys_of))
    return plan.lost


def report_lost(tick: Tick, lost: list[LostRange]) -> None:
    """``no_offsets_lost`` evaluations for offsets deleted before they were processed."""
    for part in lost:
        rng = OffsetRange(tick.topic, part.partition, part.start, part.end)
        event = lost_offsets_evaluation(tick.storage_asset_key, rng)
        tick.log.warning(event.description)
        tick.events.append(event)


def report_unprocessed(tick: Tick) -> None:
    """The ``no_failed_batches`` evaluation, stored when the answer changes: a hole
    counts once its run failed, or once it has lasted the grace period (time for a retry
    run to appear)."""
    failed, holes = {}, {}
    for p, state in tick.cursor.partitions.items():
        if not state.holes:
            continue
        failed[p] = failed_runs_by_range(
            tick.context.instance, tick.job_name, partition_tag(tick.topic, p)
        )
        confirmed = [
            h
            for h in state.holes
            if tick.now_ms - h.first_seen_ms >= RELAUNCH_GRACE_MS
            or any(s < h.end and h.start < e for s, e in failed[p])
        ]
        if confirmed:
            holes[p] = confirmed
    names = [f"{p}:{h.start}-{h.end}" for p, hs in sorted(holes.items()) for h in hs]
    if ";".join(names) == tick.cursor.reported:
        return
    tick.cursor.reported = ";".join(names)
    summary = describe_holes(tick.topic, holes, failed)
    tick.events.append(
        AssetCheckEvaluation(
            asset_key=tick.storage_asset_key,
            check_name=UNPROCESSED_CHECK,
            passed=not holes,
            severity=AssetCheckSeverity.ERROR,
            description=summary or "every range handed to a run is processed or in flight",
            metadata={"unprocessed_ranges": names or "none"},
        )
    )
    if holes:
        tick.log.warning(summary)


def result(tick: Tick) -> SensorResult:
    cursor = tick.cursor.to_json()
    if tick.requests:
        return SensorResult(run_requests=tick.requests, cursor=cursor, asset_events=tick.events)
    pending = sum(o.end - tick.cursor.partitions[o.partition].next for o in tick.offsets)
    limit = tick.ingest.policy.max_inflight
    busy = sum(1 for n in tick.inflight.values() if n >= limit)
    why = f"; {busy} partition(s) at their in-flight run limit" if busy else ""
    return SensorResult(
        skip_reason=SkipReason(f"{pending} message(s) pending; no batch due{why}"),
        cursor=cursor,
        asset_events=tick.events,
    )


def build_kafka_sensor(job: JobDefinition, storage_asset_key: AssetKey, keys_of):
    @sensor(
        name=SENSOR_NAME,
        job=job,
        minimum_interval_seconds=SENSOR_MIN_INTERVAL_SECONDS,
        default_status=DefaultSensorStatus.RUNNING,
        description=__doc__,
    )
    def storage_topic_sensor(
        context: SensorEvaluationContext, kafka: KafkaResource, ingest: IngestSettings
    ):
        tick = Tick(context, kafka, ingest, job.name, storage_asset_key)
        read_claims(tick)
        skip = read_offsets(tick)
        if skip is not None:
            return skip
        read_cursor(tick)
        skip_claimed(tick)
        assign_claims(tick)
        read_ages(tick)
        expired = relaunch_holes(tick)
        lost = plan_new_batches(tick, keys_of)
        report_lost(tick, [*expired, *lost])
        report_unprocessed(tick)
        return result(tick)

    return storage_topic_sensor
