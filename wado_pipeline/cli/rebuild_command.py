"""``wado-pipeline rebuild``: refill one sink from Kafka through a running Dagster.

It launches the ``rebuild_sink`` job (the same one the UI's Launchpad offers), whose
plan the sensor carries out as bounded runs of the sink's assets, then follows those
runs and prints progress until every one has ended.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import requests

from wado_pipeline.core.run_contract import (
    REBUILD_JOB,
    REBUILD_PLAN_TAG,
    REBUILD_RUNS_TAG,
    REBUILD_TAG,
    rebuild_plan_from_tag,
)

RUN_TAGS = """query ($id: ID!) { runOrError(runId: $id) { __typename
  ... on Run { status tags { key value } } } }"""
RUNS_BY_TAG = """query ($key: String!, $value: String!) {
  runsOrError(filter: {tags: [{key: $key, value: $value}]}) {
    ... on Runs { results { runId status } } } }"""
ENDED = {"SUCCESS", "FAILURE", "CANCELED"}


class RebuildFailed(Exception):
    """The plan or some of its runs failed; the message names them."""


def _gql(url: str, query: str, **variables) -> dict:
    r = requests.post(f"{url}/graphql", json={"query": query, "variables": variables}, timeout=30)
    r.raise_for_status()
    body = r.json()
    if "errors" in body:
        raise RebuildFailed(f"Dagster refused the query: {body['errors'][0].get('message')}")
    return body["data"]


def run_config(
    sink: str, since: str | None, from_offset: int | None, partitions: list[int] | None
) -> dict:
    config: dict = {"sink": sink}
    if since is not None:
        config["since"] = since
    if from_offset is not None:
        config["from_offset"] = from_offset
    if partitions is not None:
        config["partitions"] = partitions
    return {"ops": {"plan_rebuild": {"config": config}}}


def rebuild(
    host: str,
    port: int,
    config: dict,
    topic: str,
    wait: bool = True,
    poll_s: float = 2.0,
    say: Callable[[str], None] = print,
) -> dict:
    """Launch the plan, follow its runs; returns a summary (raises ``RebuildFailed``)."""
    from dagster_graphql import DagsterGraphQLClient

    url = f"http://{host}:{port}"
    t0 = time.monotonic()
    plan_id = DagsterGraphQLClient(host, port_number=port).submit_job_execution(
        REBUILD_JOB, run_config=config
    )
    say(f"plan run {plan_id} launched")
    while True:
        run = _gql(url, RUN_TAGS, id=plan_id)["runOrError"]
        if run.get("status") in ENDED:
            break
        time.sleep(poll_s)
    if run["status"] != "SUCCESS":
        raise RebuildFailed(f"plan run {plan_id} ended {run['status']}; see it in the UI")
    tags = {t["key"]: t["value"] for t in run["tags"]}
    sink, ranges = rebuild_plan_from_tag(topic, tags.get(REBUILD_PLAN_TAG, "|"))
    expected = int(tags.get(REBUILD_RUNS_TAG, "0"))  # as the plan cut them
    messages = sum(r.end - r.start for r in ranges)
    say(f"{sink}: {messages} message(s) in {expected} run(s), launched by the sensor")
    summary = {"plan_run": plan_id, "sink": sink, "messages": messages, "runs": expected}
    if not wait or expected == 0:
        return summary
    shown = None
    while True:
        runs = _gql(url, RUNS_BY_TAG, key=REBUILD_TAG, value=plan_id)["runsOrError"]["results"]
        ok = sum(r["status"] == "SUCCESS" for r in runs)
        bad = [r["runId"] for r in runs if r["status"] in ("FAILURE", "CANCELED")]
        line = f"runs done {ok}/{expected}, failed {len(bad)}"
        if line != shown:
            say(line)
            shown = line
        if ok + len(bad) >= expected:
            break
        time.sleep(poll_s)
    elapsed = time.monotonic() - t0
    summary.update(
        elapsed_s=round(elapsed, 1),
        seconds_per_10k_messages=round(elapsed / messages * 10_000, 1) if messages else None,
    )
    if bad:
        raise RebuildFailed(
            f"{len(bad)} run(s) failed: {', '.join(bad)}; re-execute them in the UI "
            "(each replays its own range)"
        )
    return summary
