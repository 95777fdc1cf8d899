"""Weeks of operation in minutes: `dagster dev` (daemon, code server,
webserver) under steady traffic, with a retention window of minutes instead of days.

- Dagster's storage stops growing once retention has caught up with the first window;
- the resident memory of the daemon, the code server, the webserver and the run
  launcher's warm process shows no upward trend after warm-up;
- the sensor's cursor stays bounded;
- afterwards the UI still shows run history, lineage, freshness and checks, and
  re-executes a recent run.

The figures are printed (``pytest -s`` shows them; they are in the docs/sizing.md).
"""

import dataclasses
import json
import statistics
import threading
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance
from sqlalchemy import create_engine, text

from wado_pipeline.bench.bench_pipeline import produce
from wado_pipeline.core.run_contract import JOB_NAME, SENSOR_NAME
from wado_pipeline_tests.support import synthetic_messages, wait_until
from wado_pipeline_tests.test_system.test_ui import gql, running_dagster_dev
from wado_pipeline_tests.test_system.test_ui_actions import REEXECUTE, _finished

pytestmark = [pytest.mark.stack, pytest.mark.slow]

WINDOW_S = 120  # WADO_RUN_RETENTION_DAYS of two minutes
RATE = 10.0  # messages per second, as a busy hospital's steady flow
TRAFFIC_S = 390
SAMPLE_S = 10
WARMUP_S = 120
# Bounds stated in the README: after warm-up, each process's RSS may not rise by more
# than this between the first and the last minute of samples.
RSS_RISE_MAX_MIB = 24
CURSOR_MAX_BYTES = 4096

RUNS = """{ runsOrError { ... on Runs { results { runId status jobName
  tags { key value } } } } }"""
ASSET = """query ($path: [String!]!) { assetNodes(assetKeys: [{path: $path}]) {
  dependencyKeys { path }
  freshnessStatusInfo { freshnessStatus }
  assetChecksOrError { ... on AssetChecks { checks { name
    executionForLatestMaterialization { status evaluation { success } } } } }
  assetMaterializations(limit: 1) { runId timestamp }
} }"""


def _processes(pgid: int) -> dict[str, int]:
    """RSS (KiB) of the process group's long-lived processes, summed per role."""
    out = {"daemon": 0, "code_server": 0, "webserver": 0, "warm_process": 0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) != pgid or fields[0] == "Z":
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        if "execute_run" in cmd or "execute_step" in cmd or comm == "wado-run-worker":
            continue  # a run worker: short-lived by design
        if "wado_pipeline.instance.warm_process" in cmd:
            role = "warm_process"  # the run launcher's (its workers are named above)
        elif "dagster._daemon" in cmd or "dagster-daemon" in cmd:
            role = "daemon"
        elif "webserver" in cmd:
            role = "webserver"
        elif "code-server" in cmd or "api grpc" in cmd:
            role = "code_server"
        else:
            continue
        rss = next(line for line in status.splitlines() if line.startswith("VmRSS"))
        out[role] += int(rss.split()[1])
    return out


def _cursor_bytes(instance: DagsterInstance) -> int:
    for state in instance.all_instigator_state():
        if state.instigator_name == SENSOR_NAME and state.instigator_data is not None:
            return len(getattr(state.instigator_data, "cursor", None) or "")
    return 0


def test_storage_memory_and_cursor_plateau_under_steady_traffic(
    settings, dagster_home, storage_root, monkeypatch
):
    home, storage_url = dagster_home
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", storage_url)
    soak = dataclasses.replace(
        settings, run_retention_days=WINDOW_S / 86400, retention_interval_minutes=1
    )
    messages = synthetic_messages(storage_root, int(RATE * TRAFFIC_S), seed="soak")
    engine = create_engine(storage_url)
    samples = []

    def size() -> int:
        with engine.connect() as conn:
            return conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()

    with (
        running_dagster_dev(soak, home, storage_url) as (url, proc),
        DagsterInstance.from_config(str(home)) as instance,
    ):
        sender = threading.Thread(target=produce, args=(soak, messages, RATE), daemon=True)
        t0 = time.monotonic()
        sender.start()
        while sender.is_alive():
            samples.append(
                {
                    "t": round(time.monotonic() - t0),
                    "storage_bytes": size(),
                    "cursor_bytes": _cursor_bytes(instance),
                    **_processes(proc.pid),
                }
            )
            sender.join(timeout=SAMPLE_S)
        runs = gql(url, RUNS)["runsOrError"]["results"]

        # ---- the UI after retention has deleted older runs
        ingest_runs = [r for r in runs if r["jobName"] == JOB_NAME]
        bad = [r["runId"] for r in runs if r["status"] == "FAILURE"]
        assert ingest_runs and not bad
        node = wait_until(
            lambda: _verified(url),
            150,
            "the latest materialization to be verified and fresh",
            interval=5,
        )
        assert [d["path"] for d in node["dependencyKeys"]] == [["kafka", settings.storage_topic]]
        recent = next(r for r in ingest_runs if r["status"] == "SUCCESS")
        out = gql(url, REEXECUTE, parent=recent["runId"])["launchRunReexecution"]
        assert out["__typename"] == "LaunchRunSuccess", out
        _finished(url, out["run"]["runId"])
        old = [
            r
            for r in instance.get_run_records()
            if time.time() - r.update_timestamp.timestamp() > WINDOW_S + 150
        ]
    with engine.connect() as conn:
        tables = conn.execute(
            text(
                "SELECT relname, pg_total_relation_size(oid) FROM pg_class "
                "WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace "
                "ORDER BY 2 DESC LIMIT 8"
            )
        ).all()
    engine.dispose()
    print("largest tables at the end:", ", ".join(f"{t} {n // 1024} KiB" for t, n in tables))

    # ---- figures
    print(
        "\nsoak samples (t s, storage KiB, cursor B, "
        "RSS MiB daemon/code server/webserver/warm process):"
    )
    for s in samples:
        print(
            f"  {s['t']:4d} {s['storage_bytes'] // 1024:8d} {s['cursor_bytes']:5d} "
            f"{s['daemon'] / 1024:7.1f} {s['code_server'] / 1024:7.1f} "
            f"{s['webserver'] / 1024:7.1f} {s['warm_process'] / 1024:7.1f}"
        )

    # Retention ran: what is left past the window (plus a pruning interval and autovacuum)
    # is only what it must keep (each asset's and check's latest), never a run per batch.
    assert len(old) <= 20, [r.dagster_run.job_name for r in old]

    # Storage: the growth of the last two minutes against the growth rate before the
    # first pruning (independent of the code: the database's own size).
    early = [s for s in samples if 20 <= s["t"] <= WINDOW_S]
    rate_before = (early[-1]["storage_bytes"] - early[0]["storage_bytes"]) / (
        early[-1]["t"] - early[0]["t"]
    )
    last = samples[-1]
    ref = min(samples, key=lambda s: abs(s["t"] - (last["t"] - 120)))
    growth_late = last["storage_bytes"] - ref["storage_bytes"]
    unpruned = rate_before * (last["t"] - ref["t"])
    print(
        f"storage: {rate_before / 1024:.1f} KiB/s before the first pruning; last "
        f"{last['t'] - ref['t']} s: {growth_late / 1024:+.0f} KiB (without retention "
        f"{unpruned / 1024:.0f} KiB)"
    )
    assert growth_late <= 0.25 * unpruned

    # Memory: after warm-up, the mean of the last minute against the first minute.
    warm = [s for s in samples if s["t"] >= WARMUP_S]
    for role in ("daemon", "code_server", "webserver", "warm_process"):
        first = statistics.mean(s[role] for s in warm[:6]) / 1024
        final = statistics.mean(s[role] for s in warm[-6:]) / 1024
        print(f"{role}: {first:.1f} -> {final:.1f} MiB RSS")
        assert first > 0, f"no {role} process found"
        assert final - first <= RSS_RISE_MAX_MIB, role

    # Cursor: bounded, and not growing with the number of batches.
    cursors = [s["cursor_bytes"] for s in samples if s["cursor_bytes"]]
    half = cursors[: len(cursors) // 2]
    print(f"cursor: {min(cursors)}..{max(cursors)} bytes")
    assert max(cursors) <= CURSOR_MAX_BYTES
    assert cursors[-1] <= max(half) + 64
    Path(home / "soak.json").write_text(json.dumps(samples))


def _verified(url: str) -> dict | None:
    """The Doris image table's node once it is fresh and its latest materialization has
    a successful batch check (the verification runs once a minute)."""
    node = gql(url, ASSET, path=["doris", "dicom_image_meta"])["assetNodes"][0]
    checks = {
        c["name"]: c["executionForLatestMaterialization"]
        for c in node["assetChecksOrError"]["checks"]
    }
    evaluation = (checks["batch_keys"] or {}).get("evaluation")
    fresh = node["freshnessStatusInfo"]["freshnessStatus"] == "HEALTHY"
    if not (fresh and evaluation and node["assetMaterializations"]):
        return None
    assert evaluation["success"] is True
    return node
