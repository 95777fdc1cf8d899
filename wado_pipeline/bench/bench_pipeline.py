"""End-to-end benchmarks on the local stack (``wado-pipeline bench backlog|steady``).

backlog: N store messages already in the storage topic, each naming a realistic file.
  (a) the core loop: the resources' read / parse / publish / upsert / commit calls that
      the ops make, in a plain loop without Dagster — the ceiling;
  (b) the real deployment: dagster-daemon with the sensor, queued runs and
      dagster-postgres storage, timed from the daemon's start to the last row visible
      in PostgreSQL and MariaDB.
steady: messages produced at a fixed rate while the daemon runs; the time from each
  message's production to its row being visible in PostgreSQL and in MariaDB.

Each mode works in its own topics, PostgreSQL schema, MariaDB database and Dagster
storage database, all dropped afterwards. Nothing here is a test: it prints figures.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kafka import KafkaProducer
from sqlalchemy import create_engine, text

from wado_pipeline.assets import batch_steps
from wado_pipeline.bench.sandbox import dagster_home, dagster_process, namespace
from wado_pipeline.bench.synthetic import synthetic_archive
from wado_pipeline.bench.upstream import session_cpu_by_role
from wado_pipeline.core import schema as S
from wado_pipeline.core.dicom.parallel import shutdown_pool
from wado_pipeline.core.planning import OffsetRange
from wado_pipeline.core.run_contract import PARTITION_TAG, RANGE_TAG
from wado_pipeline.resources.configured import build_resources
from wado_pipeline.settings import Settings

# ------------------------------------------------------------------ data


def make_archive(root: Path, n: int, large_share: float = 0.2) -> list[dict]:
    """n synthetic CT/MR instances: 256x256 (~130 KB) and a share of 512x512 (~520 KB)."""
    n_large = int(n * large_share)
    messages = [m for _, _, m in synthetic_archive(root, "bench", n - n_large, seed="s256")]
    messages += [m for _, _, m in synthetic_archive(root, "bench", n_large, seed="s512", rows=512)]
    return messages


def produce(
    s: Settings,
    messages: list[dict],
    rate: float | None = None,
    where: dict[tuple[int, int], str] | None = None,
) -> dict[str, float]:
    """Publish (keyed by series); returns trace_id -> wall time of its send. ``where``,
    if given, is filled with (partition, offset) -> trace_id."""
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all", linger_ms=5)
    sent: dict[str, float] = {}
    start = time.monotonic()
    futures = []
    for i, m in enumerate(messages):
        if rate:
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        sent[m["trace_id"]] = time.time()
        futures.append(
            (
                m["trace_id"],
                producer.send(
                    s.storage_topic, key=m["series_uid"].encode(), value=json.dumps(m).encode()
                ),
            )
        )
    producer.flush()
    for trace_id, f in futures:
        meta = f.get(timeout=60)
        if where is not None:
            where[(meta.partition, meta.offset)] = trace_id
    producer.close()
    return sent


# ------------------------------------------------------------------ (a) core loop


def core_loop(s: Settings, n: int) -> dict:
    """The ops' steps (``assets.batch_steps``) in a plain loop over the same resources the
    runs get from ``definitions``: no Dagster, the same calls."""
    resources = build_resources(s, env_secrets=False)
    kafka, pg, doris = resources["kafka"], resources["postgres"], resources["doris"]
    ingest = resources["ingest"]
    pg.create_tables()  # as the tables' owner would, with init-db
    doris.create_tables()
    stages = dict.fromkeys(("read_s", "parse_s", "publish_s", "postgres_s", "doris_s"), 0.0)
    batches = 0
    t0 = time.perf_counter()
    for o in kafka.partition_offsets(s.storage_topic):
        whole = OffsetRange(s.storage_topic, o.partition, o.beginning, o.end)
        for rng in whole.slices(s.max_batch_messages):
            batch = batch_steps.read(
                kafka, rng, ingest.roots, ingest.parse_workers, ingest.transcoding
            )
            stages["read_s"] += batch.timings["read_s"]
            stages["parse_s"] += batch.timings["parse_s"]
            t = time.perf_counter()
            batch_steps.publish(kafka, batch, s.state_topic, s.image_topic)
            stages["publish_s"] += time.perf_counter() - t
            t = time.perf_counter()
            errors = {S.INGEST_ERROR.name: batch_steps.error_rows(batch, "core-loop")}
            pg.write_batch({**batch.table_rows(), **errors}, rng)
            stages["postgres_s"] += time.perf_counter() - t
            t = time.perf_counter()
            doris.write_batch(batch.table_rows(), rng)
            stages["doris_s"] += time.perf_counter() - t
            if batch.grouped.rejections:
                batch_steps.publish_dead_letters(kafka, batch, s.dlq_topic, "core-loop")
            batch_steps.commit(kafka, pg, s.consumer_group, rng)
            batches += 1
    elapsed = time.perf_counter() - t0
    shutdown_pool()
    kafka.teardown_after_execution(None)
    pg.dispose()
    doris.dispose()
    return {
        "core_msgs_per_s": round(n / elapsed, 1),
        "core_seconds": round(elapsed, 2),
        "core_batches": batches,
        "core_stage_s": {k: round(v, 2) for k, v in stages.items()},
    }


# ------------------------------------------------------------------ (b) Dagster


@contextmanager
def dagster_daemon(s: Settings, workdir: Path) -> Iterator[tuple[Path, str, int]]:
    """dagster-daemon on a fresh dagster-postgres database; yields (home, storage url,
    the daemon's session: its code server, warm process and run workers are in it)."""
    with dagster_home(workdir, s.postgres_url) as (home, storage):
        with dagster_process(["dagster-daemon", "run"], s, home, storage) as proc:
            yield home, storage, proc.pid
        time.sleep(2)  # let the run workers' last events land before the database goes


def _count(engine, sql: str) -> int:
    with engine.connect() as conn:
        try:
            return conn.execute(text(sql)).scalar_one()
        except Exception:  # the table appears with the first run
            conn.rollback()
            return 0


def wait_for_rows(s: Settings, expected_images: int, timeout: float) -> float:
    pg = create_engine(s.postgres_url)
    maria = create_engine(s.doris_url)
    pg_sql = f'SELECT count(*) FROM "{s.postgres_schema}".dicom_image_meta'
    maria_sql = "SELECT count(*) FROM dicom_image_meta"
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if (
                _count(pg, pg_sql) >= expected_images
                and _count(maria, maria_sql) >= expected_images
            ):
                return time.perf_counter()
            time.sleep(0.25)
        raise TimeoutError(f"rows did not arrive within {timeout:.0f}s")
    finally:
        pg.dispose()
        maria.dispose()


def run_stats(home: Path, storage: str, group_name: str) -> dict:
    """Runs, mean batch, stage times and worker memory from the Dagster instance."""
    os.environ["DAGSTER_POSTGRES_URL"] = storage
    from dagster import AssetKey, DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        runs = [r for r in instance.get_runs() if r.tags.get(RANGE_TAG)]
        sizes = []
        for r in runs:
            a, b = (int(x) for x in r.tags[RANGE_TAG].split("-"))
            sizes.append(b - a)
        records = instance.fetch_materializations(
            AssetKey(["kafka", "consumer_groups", group_name]), limit=10_000
        ).records
        metas = [rec.asset_materialization.metadata for rec in records]

        def total(key):
            return round(sum(m[key].value for m in metas if key in m), 2)

        return {
            "runs": len(runs),
            "runs_succeeded": sum(r.status.value == "SUCCESS" for r in runs),
            "mean_batch": round(statistics.mean(sizes), 1) if sizes else 0,
            "dagster_stage_s": {"read_s": total("read_s"), "parse_s": total("parse_s")},
            "worker_peak_rss_mb": max(
                (m["worker_peak_rss_mb"].value for m in metas if "worker_peak_rss_mb" in m),
                default=None,
            ),
            "pool_peak_rss_mb": max(
                (m["pool_peak_rss_mb"].value for m in metas if "pool_peak_rss_mb" in m),
                default=None,
            ),
        }


def batch_runs(home: Path, storage: str) -> list[dict]:
    """Every batch run from Dagster's run records, oldest first, read once: partition,
    offsets, and when it was requested, left the queue, started and ended (epoch s)."""
    os.environ["DAGSTER_POSTGRES_URL"] = storage
    from dagster import DagsterEventType, DagsterInstance

    out = []
    with DagsterInstance.from_config(str(home)) as instance:
        for record in instance.get_run_records(ascending=True):
            run = record.dagster_run
            span = run.tags.get(RANGE_TAG)
            part = run.tags.get(PARTITION_TAG, "").rsplit("-", 1)[-1]
            if not span or not part.isdigit():
                continue
            start, end = (int(x) for x in span.split("-"))
            events = [
                r.event_log_entry
                for r in instance.get_records_for_run(run.run_id, limit=1000).records
            ]
            starting = [
                e.timestamp
                for e in events
                if e.dagster_event_type == DagsterEventType.PIPELINE_STARTING
            ]
            out.append(
                {
                    "partition": int(part),
                    "start": start,
                    "end": end,
                    "requested": record.create_timestamp.timestamp(),
                    "dequeued": starting[0] if starting else None,
                    "started": record.start_time,
                    "ended": record.end_time,
                    "steps": step_spans(events),
                }
            )
    return out


def step_spans(events: list) -> dict[str, tuple[float, float]]:
    """Each step's STEP_START and STEP_SUCCESS times (epoch s) from a run's events: how
    a run's time splits between its ops and Dagster's own work around them."""
    from dagster import DagsterEventType

    began: dict[str, float] = {}
    spans: dict[str, tuple[float, float]] = {}
    for e in events:
        step, kind = e.step_key, e.dagster_event_type
        if step and kind == DagsterEventType.STEP_START:
            began[step] = e.timestamp
        elif step in began and kind == DagsterEventType.STEP_SUCCESS:
            spans[step.rsplit(".", 1)[-1]] = (began[step], e.timestamp)
    return spans


def upkeep_runs(home: Path, storage: str, since: float) -> list[dict]:
    """The runs that are not batches (verification, pruning) as job name and times in
    seconds after ``since``: what shared the cores with the batches."""
    os.environ["DAGSTER_POSTGRES_URL"] = storage
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_run_records(ascending=True)
        return [
            {
                "job": r.dagster_run.job_name,
                "requested_s": round(r.create_timestamp.timestamp() - since, 2),
                "started_s": round(r.start_time - since, 2) if r.start_time else None,
                "ended_s": round(r.end_time - since, 2) if r.end_time else None,
            }
            for r in records
            if RANGE_TAG not in r.dagster_run.tags
        ]


def run_timeline(runs: list[dict], since: float) -> list[dict]:
    """``runs`` (``batch_runs``) as partition, size and times in seconds after ``since``."""

    def rel(t: float | None) -> float | None:
        return round(t - since, 2) if t is not None else None

    return [
        {
            "partition": str(r["partition"]),
            "size": r["end"] - r["start"],
            **{f"{k}_s": rel(r[k]) for k in ("requested", "dequeued", "started", "ended")},
        }
        for r in runs
    ]


def settle_runs(home: Path, storage: str, timeout: float = 120) -> None:
    """Until no run is queued or in progress (their last events are then stored)."""
    os.environ["DAGSTER_POSTGRES_URL"] = storage
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    with DagsterInstance.from_config(str(home)) as instance:
        busy = RunsFilter(
            statuses=[
                DagsterRunStatus.QUEUED,
                DagsterRunStatus.NOT_STARTED,
                DagsterRunStatus.STARTING,
                DagsterRunStatus.STARTED,
                DagsterRunStatus.CANCELING,
            ]
        )
        deadline = time.monotonic() + timeout
        while instance.get_runs_count(busy) and time.monotonic() < deadline:
            time.sleep(0.5)


def storage_profile(storage: str) -> dict:
    """What Dagster's storage database holds: its size and, per event type, how many
    events and how many bytes of serialized event they take."""
    engine = create_engine(storage)
    try:
        with engine.connect() as conn:
            size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
            try:
                rows = conn.execute(
                    text(
                        "SELECT coalesce(dagster_event_type, 'LOG'), count(*), "
                        "sum(length(event)) FROM event_logs GROUP BY 1 ORDER BY 3 DESC"
                    )
                ).all()
            except Exception:  # no run yet: the schema is created with the first one
                conn.rollback()
                rows = []
    finally:
        engine.dispose()
    return {
        "bytes": size,
        "events": {t: {"count": c, "bytes": int(b)} for t, c, b in rows},
    }


def storage_growth(before: dict, after: dict, runs: int) -> dict:
    """Storage written per run between two ``storage_profile`` readings."""
    delta = after["bytes"] - before["bytes"]
    events = sum(e["count"] for e in after["events"].values()) - sum(
        e["count"] for e in before["events"].values()
    )
    return {
        "storage_delta_kib": round(delta / 1024, 1),
        "storage_kib_per_run": round(delta / 1024 / runs, 1) if runs else None,
        "events_per_run": round(events / runs, 1) if runs else None,
        "events_by_type": after["events"],
    }


def backlog(n: int, max_batch: int) -> dict:
    base = dataclasses.replace(Settings.from_env(), max_batch_messages=max_batch)
    with tempfile.TemporaryDirectory(prefix="wado-bench-") as tmp:
        root = Path(tmp) / "storage"
        print(f"writing {n} DICOM files …", file=sys.stderr)
        messages = make_archive(root, n)
        sop_count = len({m["sop_uid"] for m in messages})
        with namespace(base, root, "bench") as a:
            produce(a, messages)
            print("(a) core loop …", file=sys.stderr)
            core = core_loop(a, n)
        with namespace(base, root, "bench") as b:
            produce(b, messages)
            print("(b) dagster-daemon …", file=sys.stderr)
            with dagster_daemon(b, Path(tmp)) as (home, storage, session):
                t0 = time.perf_counter()
                started_at = time.time()
                t1 = wait_for_rows(b, sop_count, timeout=max(600, n / 5))
                settle_runs(home, storage)
                roles = session_cpu_by_role(session)
                cpu = sum(roles.values())
                stats = run_stats(home, storage, b.consumer_group)
                timeline = run_timeline(batch_runs(home, storage), started_at)
    dagster_rate = n / (t1 - t0)
    # The daemon's start-up (loading the code location, its first tick) is paid once per
    # deployment, not per backlog: the rate from the first run's request shows the rest.
    first = timeline[0]["requested_s"] if timeline else None
    running_rate = n / (t1 - t0 - first) if first is not None else None
    return {
        "mode": "backlog",
        "n": n,
        "max_batch_messages": max_batch,
        **core,
        "dagster_msgs_per_s": round(dagster_rate, 1),
        "cpu_s": round(cpu, 2),
        "cpu_s_per_1000_messages": round(cpu / n * 1000, 2),
        "cpu_s_per_1000_messages_by_role": {
            role: round(v / n * 1000, 2) for role, v in sorted(roles.items())
        },
        "dagster_seconds": round(t1 - t0, 2),
        "ratio": round(dagster_rate / core["core_msgs_per_s"], 3),
        "dagster_msgs_per_s_from_first_run": round(running_rate, 1) if running_rate else None,
        "ratio_from_first_run": round(running_rate / core["core_msgs_per_s"], 3)
        if running_rate
        else None,
        **stats,
        "timeline": timeline,
        "machine_cores": os.cpu_count(),
    }


def cpu_stats(session: int, window_from: dict[str, float], n: int) -> dict:
    """The deployment's CPU seconds so far, per 1,000 of the ``n`` messages, and per
    1,000 over the sending window (from ``window_from``, the session's CPU by role at the
    first send, to the last run's end: start-up left out), in all and by role."""
    now = session_cpu_by_role(session)
    cpu, before = sum(now.values()), sum(window_from.values())
    return {
        "cpu_s": round(cpu, 2),
        "cpu_s_per_1000_messages": round(cpu / n * 1000, 2),
        "window_cpu_s_per_1000_messages": round((cpu - before) / n * 1000, 2),
        "window_cpu_s_per_1000_messages_by_role": {
            role: round((s - window_from.get(role, 0.0)) / n * 1000, 2)
            for role, s in sorted(now.items())
        },
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return round(ordered[k], 2)


def steady(rates: list[float], seconds: float) -> dict:
    base = Settings.from_env()
    out: dict = {"mode": "steady", "duration_s": seconds, "rates": {}}
    with tempfile.TemporaryDirectory(prefix="wado-bench-") as tmp:
        root = Path(tmp) / "storage"
        for rate in rates:
            n = int(rate * seconds)
            messages = [m for _, _, m in synthetic_archive(root, "bench", n, seed=f"r{rate}")]
            workdir = Path(tmp) / f"r{rate}"
            workdir.mkdir()
            with (
                namespace(base, root, "bench") as s,
                dagster_daemon(s, workdir) as (home, storage, session),
            ):
                time.sleep(8)  # the daemon's first sensor tick: measure steady state
                print(f"steady {rate}/s for {seconds}s …", file=sys.stderr)
                before = storage_profile(storage)
                where: dict[tuple[int, int], str] = {}
                watcher = RowWatcher(s).start()  # watching from before the first send
                window_from = session_cpu_by_role(session)
                sent = produce(s, messages, rate=rate, where=where)
                watcher.wait_for(set(sent), timeout=120)
                seen = watcher.stop()
                settle_runs(home, storage)
                stats = run_stats(home, storage, s.consumer_group)
                stats.update(storage_growth(before, storage_profile(storage), stats["runs"]))
                runs = batch_runs(home, storage)
                stats["breakdown"] = latency_breakdown(runs, sent, where, seen["pg"])
                requested = [(r["partition"], r["end"], r["requested"]) for r in runs]
                stats.update(end_of_window(sent, where, seen["pg"], requested))
                since = min(sent.values())
                stats.update(
                    timeline=run_timeline(runs, since), **cpu_stats(session, window_from, n)
                )
                stats["upkeep_runs"] = upkeep_runs(home, storage, since)
            lat_pg = [seen["pg"][t] - sent[t] for t in seen["pg"]]
            lat_maria = [seen["maria"][t] - sent[t] for t in seen["maria"]]
            out["rates"][str(rate)] = {
                "n": n,
                "visible_pg": len(lat_pg),
                "visible_mariadb": len(lat_maria),
                "p50_s": percentile(lat_pg, 50),
                "p95_s": percentile(lat_pg, 95),
                "p99_s": percentile(lat_pg, 99),
                "mariadb_p50_s": percentile(lat_maria, 50),
                "mariadb_p95_s": percentile(lat_maria, 95),
                "mariadb_p99_s": percentile(lat_maria, 99),
                **stats,
            }
    first = out["rates"][str(rates[0])]
    out.update(
        n=sum(r["n"] for r in out["rates"].values()),
        p50_s=first["p50_s"],
        p95_s=first["p95_s"],
        p99_s=first["p99_s"],
        worker_peak_rss_mb=first["worker_peak_rss_mb"],
        machine_cores=os.cpu_count(),
    )
    return out


class RowWatcher:
    """Stamps each ``trace_id`` with the wall time its row is first visible in
    PostgreSQL and in MariaDB, polling every ``interval`` s from ``start()`` on, i.e.
    from before the first message is sent: a row that appears while messages are still
    being produced is stamped then, not when production ends."""

    def __init__(self, s: Settings, interval: float = 0.2, queries: dict | None = None) -> None:
        """``queries``: name -> (engine, SQL selecting trace ids); by default the
        pipeline's PostgreSQL and MariaDB tables."""
        self.interval = interval
        self._queries = queries or {
            "pg": (
                create_engine(s.postgres_url),
                f'SELECT trace_id FROM "{s.postgres_schema}".dicom_object_meta',
            ),
            "maria": (create_engine(s.doris_url), "SELECT trace_id FROM dicom_object_meta"),
        }
        self.seen: dict[str, dict[str, float]] = {name: {} for name in self._queries}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="row-watcher", daemon=True)

    def _poll(self) -> None:
        for name, (engine, sql) in self._queries.items():
            with engine.connect() as conn:
                try:
                    ids = conn.execute(text(sql)).scalars().all()
                except Exception:  # the table may not exist yet
                    conn.rollback()
                    continue
            now = time.time()
            for t in ids:
                self.seen[name].setdefault(t, now)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._poll()
            self._stop.wait(self.interval)

    def start(self) -> RowWatcher:
        self._thread.start()
        return self

    def wait_for(self, ids: set[str], timeout: float) -> bool:
        """Until every id is visible in both databases, or ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(ids <= set(v) for v in self.seen.values()):
                return True
            time.sleep(self.interval)
        return False

    def stop(self) -> dict[str, dict[str, float]]:
        self._stop.set()
        self._thread.join(timeout=30)
        for engine, _ in self._queries.values():
            engine.dispose()
        return self.seen


def end_of_window(
    sent: dict[str, float],
    where: dict[tuple[int, int], str],
    visible: dict[str, float],
    requested: list[tuple[int, int, float]],
) -> dict:
    """Whether the pipeline kept up, at the moment the last message was sent: per
    partition, the messages sent but not yet handed to any run (``requested``: each
    run's partition, end offset and request time) and those not yet visible; and how
    long after the last send the last row became visible."""
    t_end = max(sent.values())
    unrequested: dict[int, int] = {}
    not_visible: dict[int, int] = {}
    for (part, offset), trace in where.items():
        covered = max((e for p, e, t in requested if p == part and t <= t_end), default=0)
        unrequested[part] = unrequested.get(part, 0) + (offset >= covered)
        not_visible[part] = not_visible.get(part, 0) + (visible.get(trace, t_end + 1) > t_end)
    done = [visible[t] for t in sent if t in visible]
    return {
        "unrequested_at_end": {str(p): n for p, n in sorted(unrequested.items())},
        "not_visible_at_end": {str(p): n for p, n in sorted(not_visible.items())},
        "catch_up_s": round(max(done) - t_end, 2) if len(done) == len(sent) else None,
    }


def add_step_stages(stages: dict[str, list[float]], run: dict) -> None:
    """A run's op durations (``step:NAME_s``), the time from RUN_START to its first step
    (resources, plan) and from its last step to its end (its last events)."""
    spans = run.get("steps") or {}
    for name, (a, b) in spans.items():
        stages.setdefault(f"step:{name}_s", []).append(b - a)
    if spans and run["ended"] is not None:
        first = min(a for a, _ in spans.values())
        last = max(b for _, b in spans.values())
        stages.setdefault("run_start_to_first_step_s", []).append(first - run["started"])
        stages.setdefault("last_step_to_run_end_s", []).append(run["ended"] - last)
        gaps = sum(b - a for a, b in spans.values())
        stages.setdefault("between_steps_s", []).append(last - first - gaps)


def latency_breakdown(
    runs: list[dict],
    sent: dict[str, float],
    where: dict[tuple[int, int], str],
    visible: dict[str, float],
) -> dict[str, dict[str, float]]:
    """Per run (``batch_runs``): the first message's age when the sensor requested the
    run, request -> RUN_START (split at the queue's dequeue: the wait in the queue, then
    the launch and the worker's start), RUN_START -> rows visible (PostgreSQL), visible
    -> run end. Returns p50/p99 of each stage over the runs."""
    stages: dict[str, list[float]] = {
        "first_message_age_at_request_s": [],
        "request_to_run_start_s": [],
        "request_to_dequeue_s": [],
        "dequeue_to_run_start_s": [],
        "run_start_to_rows_visible_s": [],
        "rows_visible_to_run_end_s": [],
    }
    for r in runs:
        first = where.get((r["partition"], r["start"]))
        if first is None or first not in visible or r["started"] is None:
            continue
        created, started = r["requested"], r["started"]
        stages["first_message_age_at_request_s"].append(created - sent[first])
        stages["request_to_run_start_s"].append(started - created)
        if r["dequeued"] is not None:
            stages["request_to_dequeue_s"].append(r["dequeued"] - created)
            stages["dequeue_to_run_start_s"].append(started - r["dequeued"])
        stages["run_start_to_rows_visible_s"].append(visible[first] - started)
        if r["ended"] is not None:
            stages["rows_visible_to_run_end_s"].append(r["ended"] - visible[first])
        add_step_stages(stages, r)
    return {
        name: {"p50": percentile(v, 50), "p99": percentile(v, 99), "runs": len(v)}
        for name, v in stages.items()
        if v
    }
