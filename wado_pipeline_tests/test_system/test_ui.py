"""The UI as a user sees it: `dagster dev` on the stack, data produced, then Dagster's
GraphQL API and a headless Chromium check the asset graph, a sensor-launched run,
materialization metadata, freshness and asset checks. Screenshots are saved in
test-artifacts/ and checked to be rendered pages, not blank ones."""

import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from wado_pipeline.bench.sandbox import dagster_process
from wado_pipeline.core import schema as S
from wado_pipeline_tests.support import (
    await_exit_of_processes_mentioning,
    encode,
    free_port,
    synthetic_messages,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.stack, pytest.mark.slow]


@contextmanager
def running_dagster_dev(
    settings, home: Path, storage_url: str
) -> Iterator[tuple[str, subprocess.Popen]]:
    """`dagster dev` (webserver, daemon, code server) for ``settings``; yields its URL
    and process (the leader of its process group) and stops it like Ctrl-C, waiting for
    every process it started to exit."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def up():
        try:
            return requests.get(f"{url}/server_info", timeout=2).ok
        except requests.RequestException:
            return False

    command = ["dagster", "dev", "-h", "127.0.0.1", "-p", str(port)]
    with dagster_process(command, settings, home, storage_url, stop_signal=signal.SIGINT) as proc:
        wait_until(up, 120, "the Dagster webserver", interval=1)
        yield url, proc
    await_exit_of_processes_mentioning(str(home), 120, "dagster dev's processes to exit")


def gql(url: str, query: str, **variables) -> dict:
    r = requests.post(f"{url}/graphql", json={"query": query, "variables": variables}, timeout=30)
    r.raise_for_status()
    body = r.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


RUNS = """{ runsOrError { ... on Runs { results { runId status
  tags { key value } } } } }"""
GRAPH = """{ assetNodes { assetKey { path } dependencyKeys { path } groupName kinds } }"""
ASSET = """query ($path: [String!]!) { assetNodes(assetKeys: [{path: $path}]) {
  freshnessStatusInfo { freshnessStatus }
  assetChecksOrError { ... on AssetChecks { checks { name
    executionForLatestMaterialization { status evaluation { success severity } } } } }
  assetMaterializations(limit: 1) { runId metadataEntries { label __typename
    ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text } } }
} }"""


FAILURES = """query ($runId: ID!) { logsForRun(runId: $runId) { ... on EventConnection {
  events { __typename ... on MessageEvent { message }
    ... on ExecutionStepFailureEvent { error { message causes { message } } }
    ... on RunFailureEvent { error { message } } } } } }"""


def failure_messages(url: str, run_id: str) -> list[str]:
    """What a failed run says about why (for the assertion message)."""
    events = gql(url, FAILURES, runId=run_id)["logsForRun"]["events"]
    out = []
    for e in events:
        if e["__typename"] in ("ExecutionStepFailureEvent", "RunFailureEvent"):
            err = e.get("error") or {}
            out.append(err.get("message", e.get("message")))
            out.extend(c["message"] for c in err.get("causes") or [])
    return out or [e.get("message") for e in events[-5:]]


def _tags(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["tags"]}


def screenshot(url: str, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / f"{name}.png"
    out.unlink(missing_ok=True)
    profile = ARTIFACTS / f".chromium-{name}"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--window-size=1600,1000",
            "--virtual-time-budget=20000",
            f"--screenshot={out}",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    shutil.rmtree(profile, ignore_errors=True)
    return out


def assert_rendered(png: Path) -> None:
    """A real page: many colours and not one flat colour everywhere."""
    from PIL import Image

    img = Image.open(png).convert("RGB").resize((400, 250))
    colours = img.getcolors(maxcolors=1_000_000)
    assert len(colours) > 50, f"{png.name}: only {len(colours)} colours"
    most = max(c for c, _ in colours)
    assert most / (400 * 250) < 0.97, f"{png.name} is almost one colour"


def test_ui_shows_lineage_runs_metadata_freshness_and_checks(
    settings, produce, storage_root, dagster_dev
):
    url = dagster_dev
    produce([*encode(synthetic_messages(storage_root, 120)), b"not json"], partition=0)

    def all_offsets_done():
        runs = gql(url, RUNS)["runsOrError"]["results"]
        bad = [r for r in runs if r["status"] in ("FAILURE", "CANCELED")]
        assert not bad, [failure_messages(url, r["runId"]) for r in bad]
        done = [r for r in runs if r["status"] == "SUCCESS" and "wado/offsets" in _tags(r)]
        ends = [int(_tags(r)["wado/offsets"].split("-")[1]) for r in done]
        return done if ends and max(ends) == 121 else None

    runs = wait_until(all_offsets_done, 240, "sensor-launched runs to succeed", interval=3)
    tags = _tags(runs[0])
    assert tags["dagster/sensor_name"] == "storage_topic_sensor"
    assert tags["wado/partition"] == f"{settings.storage_topic}-0"

    nodes = {tuple(n["assetKey"]["path"]): n for n in gql(url, GRAPH)["assetNodes"]}
    storage = ("kafka", settings.storage_topic)
    for t in S.PIPELINE_TABLES:
        for backend in ("postgres", "doris"):
            node = nodes[(backend, t.name)]
            assert [tuple(d["path"]) for d in node["dependencyKeys"]] == [storage]
            assert node["groupName"] == "ingest" and backend in node["kinds"]
    assert ("kafka", settings.state_topic) in nodes and ("kafka", settings.image_topic) in nodes

    def fresh_and_checked():
        data = gql(url, ASSET, path=["doris", "dicom_image_meta"])["assetNodes"][0]
        checks = {
            c["name"]: c["executionForLatestMaterialization"]
            for c in data["assetChecksOrError"]["checks"]
        }
        verified = (checks["batch_keys"] or {}).get("evaluation")  # by verify_batches
        healthy = data["freshnessStatusInfo"]["freshnessStatus"] == "HEALTHY"
        return data if healthy and verified else None

    # the verification schedule ticks once a minute
    doris_image = wait_until(
        fresh_and_checked, 180, "Doris freshness and the batch verification", interval=3
    )
    meta = {e["label"]: e for e in doris_image["assetMaterializations"][0]["metadataEntries"]}
    assert meta["rows_upserted"]["intValue"] > 0
    assert meta["offset_range"]["text"]
    checks = {
        c["name"]: c["executionForLatestMaterialization"]
        for c in doris_image["assetChecksOrError"]["checks"]
    }
    assert checks["batch_keys"]["evaluation"]["success"] is True
    for table in ("dicom_object_meta", "dicom_state_meta"):
        node = gql(url, ASSET, path=["doris", table])["assetNodes"][0]
        assert node["freshnessStatusInfo"]["freshnessStatus"] == "HEALTHY", table

    if CHROMIUM is None:
        pytest.fail("chromium is not installed (make test installs it)")
    lineage = screenshot(f"{url}/asset-groups/ingest/lineage", "asset-lineage")
    run_page = screenshot(f"{url}/runs/{runs[0]['runId']}", "run-page")
    for png in (lineage, run_page):
        assert_rendered(png)
