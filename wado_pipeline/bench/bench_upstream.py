"""``bench steady|backlog --against-upstream PATH``: the same measurement of the upstream
consumer (``PATH/bin/wado-consumer``), right after the pipeline's, on the same stack,
rates and synthetic files (its own copy: it transcodes in place), with its own topics,
consumer group and a database made by the site's DDL. Both results and their ratios
are printed and stored.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from kafka import KafkaAdminClient
from sqlalchemy import create_engine

from wado_pipeline.bench.bench_pipeline import RowWatcher, percentile, produce
from wado_pipeline.bench.sandbox import namespace
from wado_pipeline.bench.synthetic import synthetic_archive
from wado_pipeline.bench.upstream import (
    cpu_seconds,
    site_database,
    upstream_config,
    upstream_program,
)
from wado_pipeline.settings import Settings


def _await_group_member(bootstrap: str, group: str, timeout: float = 60.0) -> None:
    """Until the consumer has joined its group (it would start at the log end otherwise
    and miss what was sent before)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            described = admin.describe_groups([group]).get(group, {})
            state = described.get("group_state") or described.get("state")
            if state == "Stable" and described.get("members"):
                return
            time.sleep(0.5)
    finally:
        admin.close()
    raise TimeoutError(f"upstream's consumer did not join group {group} in {timeout:g} s")


class _UpstreamRun:
    """One run of upstream's consumer on a namespace of its own."""

    def __init__(self, upstream_dir: Path, base: Settings, tmp: Path, label: str) -> None:
        self.upstream_dir, self.base, self.tmp, self.label = upstream_dir, base, tmp, label
        self.root = tmp / f"{label}-storage"

    def messages(self, n: int, seed: str) -> list[dict]:
        return [m for _, _, m in synthetic_archive(self.root, "bench", n, seed=seed)]

    def run(self, messages: list[dict], rate: float | None, before_start: bool) -> dict:
        """Send ``messages`` (at ``rate``, or all at once), before or after the consumer
        starts; returns trace_id -> send time, first-seen times and the consumer's CPU."""
        with namespace(self.base, self.root, "benchup") as s, site_database(s.postgres_url) as db:
            workdir = self.tmp / self.label
            workdir.mkdir()
            config = upstream_config(
                self.upstream_dir, s, db, self.root, f"{s.storage_topic}_log", s.consumer_group
            )
            sent = produce(s, messages) if before_start else {}
            engine = create_engine(db)
            queries = {"upstream": (engine, "SELECT trace_id FROM dicom_object_meta")}
            watcher = RowWatcher(s, queries=queries).start()
            started = time.time()
            with upstream_program(self.upstream_dir, "wado-consumer", workdir, config) as (
                proc,
                _log,
            ):
                window_from = 0.0
                if not before_start:
                    _await_group_member(s.kafka_bootstrap, s.consumer_group)
                    window_from = cpu_seconds(proc.pid)
                    sent = produce(s, messages, rate=rate)
                complete = watcher.wait_for(set(sent), timeout=max(120, len(messages) / 20))
                cpu = cpu_seconds(proc.pid)
            seen = watcher.stop()["upstream"]
        return {
            "sent": sent,
            "seen": seen,
            "started": started,
            "cpu_s": cpu,
            "window_cpu_s": cpu - window_from,
            "all": complete,
        }


def steady_upstream(upstream_dir: Path, rates: list[float], seconds: float) -> dict:
    base = Settings.from_env()
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="wado-bench-up-") as tmp:
        for rate in rates:
            n = int(rate * seconds)
            print(f"upstream: steady {rate}/s for {seconds}s …", file=sys.stderr)
            up = _UpstreamRun(upstream_dir, base, Path(tmp), f"r{rate}")
            got = up.run(up.messages(n, seed=f"r{rate}"), rate, before_start=False)
            lat = [got["seen"][t] - got["sent"][t] for t in got["seen"] if t in got["sent"]]
            out[str(rate)] = {
                "n": n,
                "visible": len(lat),
                "p50_s": percentile(lat, 50) if lat else None,
                "p95_s": percentile(lat, 95) if lat else None,
                "p99_s": percentile(lat, 99) if lat else None,
                "cpu_s": round(got["cpu_s"], 2),
                "cpu_s_per_1000_messages": round(got["cpu_s"] / n * 1000, 2),
                "window_cpu_s_per_1000_messages": round(got["window_cpu_s"] / n * 1000, 2),
            }
    return out


def backlog_upstream(upstream_dir: Path, n: int) -> dict:
    base = Settings.from_env()
    with tempfile.TemporaryDirectory(prefix="wado-bench-up-") as tmp:
        print(f"upstream: backlog of {n} …", file=sys.stderr)
        up = _UpstreamRun(upstream_dir, base, Path(tmp), "backlog")
        got = up.run(up.messages(n, seed="backlog"), None, before_start=True)
    last = max(got["seen"].values()) if got["seen"] else None
    elapsed = last - got["started"] if last else None
    return {
        "n": n,
        "visible": len(got["seen"]),
        "msgs_per_s": round(n / elapsed, 1) if elapsed else None,
        "seconds": round(elapsed, 2) if elapsed else None,
        "cpu_s": round(got["cpu_s"], 2),
        "cpu_s_per_1000_messages": round(got["cpu_s"] / n * 1000, 2),
    }


def ratio(ours: float | None, theirs: float | None) -> float | None:
    return round(ours / theirs, 3) if ours and theirs else None


def with_steady_comparison(result: dict, upstream: dict) -> dict:
    """The pipeline's steady result with upstream's beside it, and pipeline/upstream
    ratios of each percentile (below 1: the pipeline is faster)."""
    compared = {}
    for rate, theirs in upstream.items():
        ours = result["rates"].get(rate, {})
        compared[rate] = {q: ratio(ours.get(q), theirs.get(q)) for q in ("p50_s", "p95_s", "p99_s")}
    return {**result, "upstream": upstream, "pipeline_vs_upstream": compared}


def with_backlog_comparison(result: dict, upstream: dict) -> dict:
    """The pipeline's backlog result with upstream's beside it; above 1: faster here."""
    ours = result.get("dagster_msgs_per_s")
    return {
        **result,
        "upstream": upstream,
        "pipeline_vs_upstream_msgs_per_s": ratio(ours, upstream.get("msgs_per_s")),
    }
