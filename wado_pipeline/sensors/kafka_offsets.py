"""The Kafka offset sensor: storage-topic offsets in, one run per micro-batch out.

Every 5 s it reads each partition's beginning and end offsets and the consumer group's
progress (never message content, apart from one timestamp for the age trigger), plans
batches with ``core.planning`` and requests one run per offset range. The cursor holds
the next offset per partition; it is saved with the tick, so a failed tick advances
nothing. The group's offsets are committed by the runs, after writing.

It also keeps the pipeline healing by itself (a run whose worker died is failed by
Dagster's run monitoring, which asks the run launcher, ``instance.launcher``):
- *Holes*: offsets handed to runs that are neither processed (group progress) nor
  covered by a run in flight. After Dagster's own run retries are spent, the sensor
  relaunches the range with backoff (20 s, 40 s, then every 60 s) until it succeeds.
  The ``no_failed_batches`` check on the storage topic is red meanwhile.
- A broker that does not answer fails the tick, so the UI shows it in red.
"""

import time

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
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
    plan_batches,
    relaunches_due,
    skip_taken,
    slices,
)
from wado_pipeline.core.run_contract import (
    DATA_LANE,
    PARTITION_TAG,
    PENDING_TAG,
    RANGE_TAG,
    REBUILD_PARTITION_TAG,
    REBUILD_PLAN_TAG,
    REBUILD_TAG,
    RELAUNCH_TAG,
    SENSOR_NAME,
    SENSOR_TICK_SECONDS,
    SINK_TAG,
    UNPROCESSED_CHECK,
    partition_tag,
    range_from_tags,
    rebuild_plan_from_tag,
    run_config_for,
    tags_for,
)
from wado_pipeline.resources.dagster_runs import (
    claimed_ranges,
    failed_runs_by_range,
    in_flight_runs,
    launched_without_range,
    recent_rebuild_plans,
)
from wado_pipeline.resources.ingest_settings import IngestSettings
from wado_pipeline.resources.kafka import CodecUnavailable, KafkaResource
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
            lines.append(
                f"{topic}[{p}] offsets {h.start}..{h.end - 1} unprocessed ({who}); "
                f"relaunched {h.attempts} time(s)"
            )
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
            for part in slices(rng, cap):
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


def build_kafka_sensor(job: JobDefinition, storage_asset_key, keys_of):
    @sensor(
        name=SENSOR_NAME,
        job=job,
        minimum_interval_seconds=SENSOR_TICK_SECONDS - 1,
        default_status=DefaultSensorStatus.RUNNING,
        description=__doc__,
    )
    def storage_topic_sensor(
        context: SensorEvaluationContext, kafka: KafkaResource, ingest: IngestSettings
    ):
        topic = ingest.storage_topic
        instance = context.instance
        now_ms = int(time.time() * 1000)

        def ptag(p: int) -> str:
            return partition_tag(topic, p)

        # (A run whose worker died is failed by Dagster's run monitoring, which asks the
        # run launcher: see dagster.yaml. A slow run is never taken for a dead one.)
        inflight_runs = in_flight_runs(instance, job.name)

        # Runs launched without a range (UI "Materialize all") resolve their own ranges:
        # wait until they have, then skip what they took (``claimed``).
        unranged = launched_without_range(instance)
        if any(PENDING_TAG not in r.tags for r in unranged):
            return SkipReason(
                "a run launched without an offset range is resolving what is pending; "
                "cursor unchanged until it has"
            )
        claimed = claimed_ranges(unranged, topic)

        budget = max(kafka.timeout_seconds * 3, 5.0)

        def ask(what: str, fn):
            try:
                return bounded_call(fn, budget, what)
            except CodecUnavailable as exc:  # the broker answered: say what is missing
                raise UndecodableTopic(f"{exc}; no runs requested, cursor unchanged") from None
            except Exception as exc:  # broker down or slow: a failed tick, cursor unchanged
                raise KafkaUnavailable(
                    f"Kafka at {kafka.bootstrap} did not answer ({what}: {type(exc).__name__}); "
                    "no runs requested, cursor unchanged"
                ) from None

        offsets = ask("end offsets", lambda: kafka.partition_offsets(topic))
        if offsets is None:
            return SkipReason(f"topic {topic} does not exist; cursor unchanged")
        parts = [o.partition for o in offsets]
        progress = ask(
            "group offsets", lambda: kafka.group_progress(ingest.consumer_group, topic, parts)
        )

        cursor = Cursor.from_json(context.cursor, topic)
        for o in offsets:
            if o.partition not in cursor.partitions:
                start = progress[o.partition].committed if o.partition in progress else o.beginning
                cursor.partitions[o.partition] = PartitionState(next=start, start=start)
                context.log.info(f"{topic}[{o.partition}]: starting at offset {start}")

        # Skip offsets other runs took or that are processed already (a run launched from
        # the UI without a range), so the two never take the same offsets.
        for o in offsets:
            state = cursor.partitions[o.partition]
            skipped = skip_taken(state, claimed.get(o.partition, []), progress.get(o.partition))
            if skipped is not None:
                context.log.info(
                    f"{topic}[{o.partition}]: offsets {skipped[0]}..{skipped[1] - 1} taken by "
                    "another run or processed; skipping them"
                )

        policy = ingest.policy
        # Age trigger: the broker timestamp of each partition's oldest pending message.
        # Read for every batch's first record, full or not: decoding it proves the
        # codec is readable before the range goes to a run.
        for o in offsets:
            state = cursor.partitions[o.partition]
            pending = o.end - max(state.next, o.beginning)
            if pending > 0 and state.ts_offset != state.next:
                state.oldest_ts = ask(
                    "timestamp",
                    lambda o=o, s=state: kafka.first_timestamp(topic, o.partition, s.next),
                )
                state.ts_offset = state.next if state.oldest_ts is not None else None

        # Holes: handed to runs, not processed, nothing in flight. Relaunch when due.
        requests: list[RunRequest] = []
        expired: list[LostRange] = []
        inflight: dict[int, int] = {}
        waiting: dict[int, int] = {}
        for o in offsets:
            p, state = o.partition, cursor.partitions[o.partition]
            mine = [r for r in inflight_runs if r.tags.get(PARTITION_TAG) == ptag(p)]
            inflight[p] = len(mine)
            waiting[p] = sum(1 for r in mine if r.status in NOT_STARTED)
            done = state.progress_of(progress.get(p), o.beginning)
            for s, e in expired_holes(state, done, o.beginning):
                expired.append(LostRange(p, s, e))
            covered = [rng for rng in (range_from_tags(r.tags) for r in mine) if rng is not None]
            covered += claimed.get(p, [])
            allowed = policy.max_inflight - inflight[p]
            due = relaunches_due(state, done, covered, now_ms, policy.max_batch_messages, allowed)
            for h, number in due:
                rng = OffsetRange(topic, p, h.start, h.end)
                context.log.warning(
                    f"{topic}[{p}] offsets {h.start}..{h.end - 1} unprocessed: "
                    f"relaunch {h.attempts}"
                )
                requests.append(run_request_for(rng, attempt=h.attempts, number=number))
                inflight[p] += 1

        plan = plan_batches(
            cursor,
            {o.partition: (o.beginning, o.end) for o in offsets},
            now_ms,
            policy,
            inflight,
            waiting,
        )
        requests.extend(run_request_for(r) for r in plan.ranges)
        requests.extend(
            rebuild_requests(instance, cursor, topic, ingest.max_batch_messages, keys_of)
        )
        events = []
        for lost in [*expired, *plan.lost]:
            event = lost_offsets_evaluation(
                storage_asset_key, OffsetRange(topic, lost.partition, lost.start, lost.end)
            )
            context.log.warning(event.description)
            events.append(event)

        # The unprocessed-ranges check: a hole counts once its run failed, or once it has
        # lasted the grace period (time for a retry run to appear). Stored on change only.
        failed = {}
        holes = {}
        for p, state in cursor.partitions.items():
            if not state.holes:
                continue
            failed[p] = failed_runs_by_range(instance, job.name, ptag(p))
            confirmed = [
                h
                for h in state.holes
                if now_ms - h.first_seen_ms >= RELAUNCH_GRACE_MS
                or any(s < h.end and h.start < e for s, e in failed[p])
            ]
            if confirmed:
                holes[p] = confirmed
        summary = describe_holes(topic, holes, failed)
        signature = ";".join(
            f"{p}:{h.start}-{h.end}" for p, hs in sorted(holes.items()) for h in hs
        )
        if signature != cursor.reported:
            cursor.reported = signature
            events.append(
                AssetCheckEvaluation(
                    asset_key=storage_asset_key,
                    check_name=UNPROCESSED_CHECK,
                    passed=not holes,
                    severity=AssetCheckSeverity.ERROR,
                    description=summary or "every range handed to a run is processed or in flight",
                    metadata={
                        "unprocessed_ranges": [
                            f"{p}:{h.start}-{h.end}" for p, hs in sorted(holes.items()) for h in hs
                        ]
                        or "none",
                    },
                )
            )
            if holes:
                context.log.warning(summary)

        if not requests:
            pending = sum(o.end - cursor.partitions[o.partition].next for o in offsets)
            busy = sum(1 for n in inflight.values() if n >= policy.max_inflight)
            why = f"; {busy} partition(s) at their in-flight run limit" if busy else ""
            return SensorResult(
                skip_reason=SkipReason(f"{pending} message(s) pending; no batch due{why}"),
                cursor=cursor.to_json(),
                asset_events=events,
            )
        return SensorResult(run_requests=requests, cursor=cursor.to_json(), asset_events=events)

    return storage_topic_sensor
