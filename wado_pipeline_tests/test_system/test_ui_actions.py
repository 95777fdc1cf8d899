"""Every action the UI offers, through the webserver's GraphQL API (what its buttons
call) with a headless-Chromium screenshot of each result (test-artifacts/):

(a) materialize only doris/dicom_state_meta for a range, after the table was truncated:
    it is refilled; PostgreSQL, the topics and the group offset are untouched;
(b) "Materialize all" with no config: the pending messages are processed, and the run's
    re-execution replays exactly the same range;
(c) `wado-pipeline rebuild --sink doris` refills a truncated Doris table to exact counts.
"""

import os
import subprocess
import sys
import time

import pytest
from sqlalchemy import create_engine, text

from wado_pipeline.core import schema as S
from wado_pipeline.core.run_contract import PENDING_TAG, SENSOR_NAME
from wado_pipeline.resources.kafka import KafkaResource
from wado_pipeline_tests.support import (
    await_group_offsets,
    consume_all,
    dump_tables,
    encode,
    synthetic_messages,
    wait_until,
)
from wado_pipeline_tests.test_system.test_ui import (
    _tags,
    assert_rendered,
    failure_messages,
    gql,
    screenshot,
)

pytestmark = [pytest.mark.stack, pytest.mark.slow]

REPOS = """{ repositoriesOrError { ... on RepositoryConnection { nodes { name
  location { name } } } } }"""
LAUNCH = """mutation ($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } }
  ... on PythonError { message } ... on RunConfigValidationInvalid { errors { message } }
  ... on InvalidSubsetError { message } } }"""
REEXECUTE = """mutation ($parent: String!) { launchRunReexecution(reexecutionParams:
  {parentRunId: $parent, strategy: ALL_STEPS}) { __typename
  ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
RUN = """query ($id: ID!) { runOrError(runId: $id) { ... on Run { status
  tags { key value } assetSelection { path } } } }"""
SENSOR = """query ($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
  ... on Sensor { id } } }"""
STOP = """mutation ($id: String!) { stopSensor(id: $id) { __typename } }"""
START = """mutation ($selector: SensorSelector!) { startSensor(sensorSelector: $selector) {
  __typename ... on PythonError { message } } }"""


def _repo(url: str) -> dict:
    (node,) = gql(url, REPOS)["repositoriesOrError"]["nodes"]
    return {"repositoryLocationName": node["location"]["name"], "repositoryName": node["name"]}


def _launch(url: str, selection: list[list[str]], config: dict | None) -> str:
    params = {
        "selector": {
            **_repo(url),
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": p} for p in selection],
        },
        "runConfigData": config or {},
    }
    out = gql(url, LAUNCH, params=params)["launchRun"]
    assert out["__typename"] == "LaunchRunSuccess", out
    return out["run"]["runId"]


def _finished(url: str, run_id: str) -> dict:
    def ended():
        run = gql(url, RUN, id=run_id)["runOrError"]
        return run if run["status"] in ("SUCCESS", "FAILURE", "CANCELED") else None

    run = wait_until(ended, 240, f"run {run_id} to end", interval=1)
    assert run["status"] == "SUCCESS", failure_messages(url, run_id)
    return run


def _all_assets(url: str) -> list[list[str]]:
    nodes = gql(url, "{ assetNodes { assetKey { path } isMaterializable } }")["assetNodes"]
    return [n["assetKey"]["path"] for n in nodes if n["isMaterializable"]]


def _truncate_doris_state(settings) -> None:
    engine = create_engine(settings.doris_url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM dicom_state_meta"))
    engine.dispose()


def _range_config(settings, partition: int, start: int, end: int) -> dict:
    cfg = {"topic": settings.storage_topic, "partition": partition, "start": start, "end": end}
    return {"ops": {"ingest_batch": {"ops": {"read_batch": {"config": cfg}}}}}


def test_every_ui_action_works(settings, dagster_dev, produce, storage_root):
    url = dagster_dev
    kafka = KafkaResource(bootstrap=settings.kafka_bootstrap)
    topic, group = settings.storage_topic, settings.consumer_group
    first = synthetic_messages(storage_root, 24)
    produce(encode(first), partition=0)
    await_group_offsets(settings, {0: 24}, 180, "the sensor's runs to process the first messages")

    # (a) one Doris table, refilled after it was truncated
    before = dump_tables(settings)
    topics_before = {
        t: len(consume_all(settings.kafka_bootstrap, t))
        for t in (settings.state_topic, settings.image_topic)
    }
    _truncate_doris_state(settings)
    run_a = _launch(url, [["doris", "dicom_state_meta"]], _range_config(settings, 0, 0, 24))
    done_a = _finished(url, run_a)
    assert done_a["assetSelection"] == [{"path": ["doris", "dicom_state_meta"]}]
    after = dump_tables(settings)
    assert after["doris.dicom_state_meta"] == before["doris.dicom_state_meta"]
    for t in S.PIPELINE_TABLES:
        assert after[f"postgres.{t.name}"] == before[f"postgres.{t.name}"]
    for t, n in topics_before.items():
        assert len(consume_all(settings.kafka_bootstrap, t)) == n
    assert kafka.committed_offsets(group, topic, [0]) == {0: 24}
    assert_rendered(screenshot(f"{url}/runs/{run_a}", "ui-a-materialize-one-doris-table"))

    # (b) "Materialize all" without config, the sensor stopped so messages stay pending
    selector = {**_repo(url), "sensorName": SENSOR_NAME}
    sensor_id = gql(url, SENSOR, selector=selector)["sensorOrError"]["id"]
    assert gql(url, STOP, id=sensor_id)["stopSensor"]["__typename"] != "PythonError"
    time.sleep(1)  # a tick already running when the sensor was stopped ends on its own
    second = synthetic_messages(storage_root, 9, seed="second")
    for i, m in enumerate(second):
        produce(encode([m]), partition=i % 3)
    ends = {0: 27, 1: 3, 2: 3}
    run_b = _launch(url, _all_assets(url), None)
    done_b = _finished(url, run_b)
    assert _tags(done_b)[PENDING_TAG] == "0:24-27,1:0-3,2:0-3"
    assert kafka.committed_offsets(group, topic, [0, 1, 2]) == ends
    assert len(dump_tables(settings)["postgres.dicom_object_meta"]) == 33
    # its re-execution replays that range, not what came since
    third = synthetic_messages(storage_root, 2, seed="third")
    produce(encode(third), partition=1)
    again = gql(url, REEXECUTE, parent=run_b)["launchRunReexecution"]
    assert again["__typename"] == "LaunchRunSuccess", again
    rerun = _finished(url, again["run"]["runId"])
    assert _tags(rerun)[PENDING_TAG] == "0:24-27,1:0-3,2:0-3"
    assert kafka.committed_offsets(group, topic, [0, 1, 2]) == ends
    assert len(dump_tables(settings)["postgres.dicom_object_meta"]) == 33
    assert_rendered(screenshot(f"{url}/runs/{run_b}", "ui-b-materialize-all"))

    # (c) rebuild a truncated Doris table from Kafka with the command; the sensor (on
    # again) carries out the plan and takes the messages that came meanwhile
    started = gql(url, START, selector=selector)["startSensor"]
    assert started["__typename"] == "Sensor", started
    wait_until(
        lambda: kafka.committed_offsets(group, topic, [0, 1, 2]) == {0: 27, 1: 5, 2: 3},
        180,
        "the sensor to take the messages that came while it was stopped",
    )
    _truncate_doris_state(settings)
    port = url.rsplit(":", 1)[1]
    env = {**os.environ, **settings.to_env()}
    command = [sys.executable, "-m", "wado_pipeline.cli", "rebuild", "--sink", "doris"]
    done = subprocess.run(
        [*command, "--since", "2000-01-01", "--port", port],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert "rebuilt doris: 35 message(s) in 3 run(s)" in done.stdout, done.stdout
    final = dump_tables(settings)
    assert final["doris.dicom_state_meta"] == final["postgres.dicom_state_meta"]
    assert len(final["postgres.dicom_state_meta"]) == len(
        {(m["study_uid"], m["series_uid"]) for m in first + second + third}
    )
    plan = done.stdout.split("plan run ", 1)[1].split()[0]
    assert_rendered(screenshot(f"{url}/runs?q[]=tag%3Awado%2Frebuild%3D{plan}", "ui-c-rebuild"))
    print(done.stdout)
