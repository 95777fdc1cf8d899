"""The contract between the sensor, the runs, the checks and the operator tools.

One place for every name that crosses a layer: the job, graph, op and sensor names,
the run-config shape of a batch (and its inverse), the run tags, the dead-letter
headers and the storage topic's check names. A run is defined by its offset range
alone, so a rerun replays it exactly and no patient data reaches run config or tags.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wado_pipeline.core.planning import OffsetRange

JOB_NAME = "ingest_job"
SENSOR_NAME = "storage_topic_sensor"
# The sensor's ticks. Dagster's sensor daemon loops every 5 s (MIN_INTERVAL_LOOP_TIME),
# which alone made half of a message's latency (2.5 s on average); the daemon's run
# coordinator (instance/coordinator.py) sets its loop to SENSOR_LOOP_SECONDS. A sensor's
# minimum interval is whole seconds (0 means Dagster's default, 30 s), and a loop equal
# to it would alias into gaps of two loops, so the sensor ticks at the first loop at
# least SENSOR_MIN_INTERVAL_SECONDS after its last tick: every 1 to 1.25 s. (A loop of
# 0.25 s costs ~0.03 of a core with nothing to do; against 0.5 s it takes up to 0.25 s
# off the wait for the tick after a run ends.)
SENSOR_LOOP_SECONDS = 0.25
SENSOR_MIN_INTERVAL_SECONDS = 1
SENSOR_TICK_SECONDS = SENSOR_MIN_INTERVAL_SECONDS + SENSOR_LOOP_SECONDS  # the longest gap
GRAPH_NAME = "ingest_batch"  # the graph-backed multi-asset of one batch
READ_OP = "read_batch"  # the op whose config is the offset range

# Run tags
PARTITION_TAG = "wado/partition"  # "<topic>-<partition>": one run per partition at a time
# Which lane of the run queue a run takes (dagster.yaml): "data" (batches and rebuilds,
# as many as the machine has cores) or "upkeep" (verification and pruning, one beside).
LANE_TAG = "wado/lane"
DATA_LANE = {LANE_TAG: "data"}
UPKEEP_LANE = {LANE_TAG: "upkeep"}
# The upkeep jobs' runs are bounded (a verification, a pruning tick): one still going
# after this long is failed by Dagster's run monitoring, so it cannot hold the upkeep
# lane (limit 1) for good, whatever its launcher can tell of its worker.
UPKEEP_MAX_RUNTIME_S = 900
UPKEEP_JOB_TAGS = {**UPKEEP_LANE, "dagster/max_runtime": str(UPKEEP_MAX_RUNTIME_S)}
RANGE_TAG = "wado/offsets"  # "<start>-<end>", end exclusive
RELAUNCH_TAG = "wado/relaunch"  # n-th relaunch of an unprocessed range by the sensor
REPLAY_TAG = "wado/replay"  # "manual": launched by `wado-pipeline replay`
# A run launched without a range ("Materialize all" in the UI): the ranges it resolved
# at launch, "<partition>:<start>-<end>,…"; a re-execution replays exactly these.
PENDING_TAG = "wado/pending"
# Sink rebuilds (`wado-pipeline rebuild`, or the rebuild_sink job in the UI): the plan
# run's tag holds "<sink>|<partition>:<start>-<end>,…"; each bounded run it leads to is
# tagged with the plan run's id.
REBUILD_JOB = "rebuild_sink"
REBUILD_PLAN_TAG = "wado/rebuild_plan"
REBUILD_TAG = "wado/rebuild"
REBUILD_RUNS_TAG = "wado/rebuild_runs"  # how many bounded runs the plan leads to
SINK_TAG = "wado/sink"
# A rebuild run's partition: not PARTITION_TAG, so rebuilds never hold the sensor's runs
REBUILD_PARTITION_TAG = "wado/rebuild_partition"


@dataclass(frozen=True)
class Sink:
    """A place a batch lands, in every vocabulary the code speaks of it: its ``name``
    (``rebuild --sink``, the ``wado/sink`` tag, the first part of its tables' asset
    keys), its ``title`` (descriptions), the prefix of its tables' outputs in the batch
    graph (kept from the first release, so older runs stay re-executable) and the
    resource that writes it."""

    name: str
    title: str
    output_prefix: str | None
    resource: str

    def output(self, table: str) -> str:
        """The batch graph's output name for one of this sink's tables."""
        return f"{self.output_prefix}_{table}"


POSTGRES = Sink("postgres", "PostgreSQL", "pg", "postgres")
DORIS = Sink("doris", "Doris", "doris", "doris")
TOPICS = Sink("topics", "the state and image topics", None, "kafka")
TABLE_SINKS = (POSTGRES, DORIS)  # the sinks holding the pipeline's tables
SINKS = tuple(s.name for s in (DORIS, POSTGRES, TOPICS))
SINK_BY_NAME = {s.name: s for s in (DORIS, POSTGRES, TOPICS)}

# Batch verification: a job that runs the batch checks over the ranges that runs wrote
# since the last verification (not a step of every run: see assets/checks.py). Its run
# tag holds the update time (epoch s) of the newest run it verified.
VERIFY_JOB = "verify_batches"
VERIFY_SCHEDULE = "verify_batches_schedule"
VERIFIED_TAG = "wado/verified_through"

# Retention of Dagster's own storage (assets/retention_job.py)
RETENTION_JOB = "prune_dagster_storage"
RETENTION_SCHEDULE = "prune_dagster_storage_schedule"

# Checks on the storage topic
LOST_CHECK = "no_offsets_lost"
UNPROCESSED_CHECK = "no_failed_batches"

# Dead-letter headers (read by `wado-pipeline dlq` and a site's tools)
HEADER_REASON = "wado.reason"
HEADER_DETAIL = "wado.detail"
HEADER_TOPIC = "wado.topic"
HEADER_PARTITION = "wado.partition"
HEADER_OFFSET = "wado.offset"
HEADER_RUN_ID = "wado.run_id"
# Only on a dead letter whose value was cut to fit the dead-letter topic: the original
# value's length in bytes (the full value is in dicom_ingest_error).
HEADER_TRUNCATED_FROM = "wado.truncated_from_bytes"
# Only on a dead letter of a site that masks them (WADO_DEAD_LETTER_PAYLOAD=masked):
# "fields" (identifying fields masked) or "value-omitted" (not a JSON object).
HEADER_MASKED = "wado.masked"
# On a message `wado-pipeline dlq requeue` put back on the storage topic.
HEADER_REQUEUED_FROM = "wado.requeued_from"


def run_config_for(rng: OffsetRange) -> dict[str, Any]:
    """Run config of a batch: the offset range only (reruns replay it exactly)."""
    config = {"topic": rng.topic, "partition": rng.partition, "start": rng.start, "end": rng.end}
    return {"ops": {GRAPH_NAME: {"ops": {READ_OP: {"config": config}}}}}


def range_from_run_config(run_config: Mapping[str, Any]) -> OffsetRange:
    """The batch's offset range back from a run's config (inverse of ``run_config_for``)."""
    cfg = run_config["ops"][GRAPH_NAME]["ops"][READ_OP]["config"]
    return OffsetRange(cfg["topic"], cfg["partition"], cfg["start"], cfg["end"])


def partition_tag(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


def tags_for(rng: OffsetRange) -> dict[str, str]:
    return {
        PARTITION_TAG: partition_tag(rng.topic, rng.partition),
        RANGE_TAG: f"{rng.start}-{rng.end}",
        **DATA_LANE,
    }


def range_from_tags(tags: Mapping[str, str]) -> tuple[int, int] | None:
    """``(start, end)`` of a run from its range tag, or None when it has none."""
    try:
        start, end = (int(x) for x in tags.get(RANGE_TAG, "").split("-"))
    except ValueError:
        return None
    return start, end


def pending_tag(ranges: list[OffsetRange]) -> str:
    """The ``PENDING_TAG`` value of the ranges a run without config resolved."""
    return ",".join(f"{r.partition}:{r.start}-{r.end}" for r in ranges)


def ranges_from_pending_tag(topic: str, value: str) -> list[OffsetRange]:
    """Inverse of ``pending_tag`` (an empty value: nothing was pending)."""
    out = []
    for part in filter(None, value.split(",")):
        p, _, span = part.partition(":")
        start, end = span.split("-")
        out.append(OffsetRange(topic, int(p), int(start), int(end)))
    return out


def has_range_config(run_config: Mapping[str, Any]) -> bool:
    """Whether a run's config names its offset range (the sensor's runs always do)."""
    try:
        cfg = run_config["ops"][GRAPH_NAME]["ops"][READ_OP]["config"]
    except (KeyError, TypeError):
        return False
    return all(cfg.get(k) is not None for k in ("topic", "partition", "start", "end"))


def ranges_of_run(
    run_config: Mapping[str, Any], tags: Mapping[str, str], topic: str
) -> list[OffsetRange] | None:
    """The offset ranges a run processes: its config's range, or the ranges it resolved
    at launch (``PENDING_TAG``); None while a run without config has not resolved yet."""
    if has_range_config(run_config):
        return [range_from_run_config(run_config)]
    if PENDING_TAG in tags:
        return ranges_from_pending_tag(topic, tags[PENDING_TAG])
    return None


def rebuild_plan_tag(sink: str, ranges: list[OffsetRange]) -> str:
    return f"{sink}|{pending_tag(ranges)}"


def rebuild_plan_from_tag(topic: str, value: str) -> tuple[str, list[OffsetRange]]:
    sink, _, spans = value.partition("|")
    return sink, ranges_from_pending_tag(topic, spans)
