"""Retention of Dagster's own storage on the real dagster-postgres storage: which runs
the prune_dagster_storage job deletes, which it keeps, and that nothing of a deleted run
stays behind."""

import dataclasses
import time

import pytest
from dagster import AssetKey, DagsterInstance
from sqlalchemy import create_engine, text

from wado_pipeline.core.planning import OffsetRange
from wado_pipeline.core.run_contract import JOB_NAME, RETENTION_JOB, run_config_for
from wado_pipeline.definitions import build_definitions
from wado_pipeline.resources.doris import MariaDBResource
from wado_pipeline.resources.ingest_settings import IngestSettings
from wado_pipeline_tests.support import (
    encode,
    offset_commits,
    run_range,
    synthetic_messages,
    verify,
)

pytestmark = pytest.mark.stack

# Tables of dagster-postgres that hold a run's rows.
PER_RUN = ("runs", "run_tags", "event_logs", "asset_check_executions")


def _rows_of(storage_url: str, run_ids: set[str]) -> dict[str, int]:
    engine = create_engine(storage_url)
    try:
        with engine.connect() as conn:
            return {
                t: conn.execute(
                    text(f"SELECT count(*) FROM {t} WHERE run_id = ANY(:ids)"),
                    {"ids": list(run_ids)},
                ).scalar_one()
                for t in PER_RUN
            }
    finally:
        engine.dispose()


def test_retention_keeps_latest_results_and_unresolved_failures(
    settings, produce, storage_root, dagster_home, monkeypatch
):
    home, storage_url = dagster_home
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", storage_url)
    produce(encode(synthetic_messages(storage_root, 30)), partition=0)
    # a window of a few microseconds: every finished run is past it
    short = dataclasses.replace(settings, run_retention_days=1e-10)
    defs = build_definitions(short)
    prune_job = defs.resolve_job_def(RETENTION_JOB)
    ingest = defs.resolve_job_def(JOB_NAME)

    def prune(instance):
        result = prune_job.execute_in_process(
            instance=instance, resources={"ingest": IngestSettings.from_settings(short)}
        )
        assert result.success
        (mat,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
        return {k: v.value for k, v in mat.event_specific_data.metadata.items()}

    with DagsterInstance.from_config(str(home)) as instance:
        a = run_range(settings, instance, 0, 0, 10)
        b = run_range(settings, instance, 0, 10, 20)
        # Doris unreachable: the run fails after writing PostgreSQL and the topics
        f = ingest.execute_in_process(
            run_config=run_config_for(OffsetRange(settings.storage_topic, 0, 20, 30)),
            instance=instance,
            resources={"doris": MariaDBResource(url="mysql+pymysql://wado:wado@127.0.0.1:9/x")},
            raise_on_error=False,
        )
        assert a.success and b.success and not f.success
        v = verify(settings, instance)

        before = time.time()
        report = prune(instance)
        # the window is microseconds long: ticks were purged up to the prune's own start
        assert before <= report["ticks_purged_before"] <= time.time()
        remaining = {r.run_id for r in instance.get_runs()}
        # a: nothing latest. b: Doris' latest materializations and the group's offsets.
        # f: unresolved (20..29 unprocessed), and PostgreSQL's latest. v: latest checks.
        assert a.run_id not in remaining
        assert {b.run_id, f.run_id, v.run_id} <= remaining
        assert report["runs_deleted"] == 1 and report["kept_unresolved_failure"] == 0
        assert _rows_of(storage_url, {a.run_id}) == dict.fromkeys(PER_RUN, 0)

        g = run_range(settings, instance, 0, 20, 30)  # the failed range, processed now
        assert g.success
        report = prune(instance)
        remaining = {r.run_id for r in instance.get_runs()}
        assert {b.run_id, f.run_id}.isdisjoint(remaining)
        assert {g.run_id, v.run_id} <= remaining  # v still holds every check's latest result
        assert _rows_of(storage_url, {a.run_id, b.run_id, f.run_id}) == dict.fromkeys(PER_RUN, 0)
        # the asset history still starts at the latest materialization
        doris_image = AssetKey(["doris", "dicom_image_meta"])
        latest = instance.get_latest_materialization_event(doris_image)
        assert latest is not None and latest.run_id == g.run_id
        # the first pruning run is gone too; the second was in flight while it pruned
        assert len([r for r in instance.get_runs() if r.job_name == RETENTION_JOB]) == 1


def test_the_pruning_run_commits_every_partition_progress_again(
    settings, kafka, dagster_home, monkeypatch
):
    """The group has no members, so Kafka expires a partition's commit
    offsets.retention.minutes after it was made: each pruning commits the progress
    again, unchanged, so an idle partition keeps it. Read from __consumer_offsets."""
    home, storage_url = dagster_home
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", storage_url)
    group, topic = settings.consumer_group, settings.storage_topic
    kafka.commit_processed(group, topic, 0, 0, 0)  # progress at the partition's start
    kafka.commit_processed(group, topic, 2, 0, 0)
    (first,) = offset_commits(settings.kafka_bootstrap, group, topic, 0)
    defs = build_definitions(settings)
    with DagsterInstance.from_config(str(home)) as instance:
        result = defs.resolve_job_def(RETENTION_JOB).execute_in_process(instance=instance)
    assert result.success
    (out,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    assert out.event_specific_data.metadata["group_commits_refreshed"].value == 2
    commits = offset_commits(settings.kafka_bootstrap, group, topic, 0)
    assert len(commits) == 2 and commits[1][0] == first[0]  # the same offset, again
    assert commits[1][1] > first[1]
    assert len(offset_commits(settings.kafka_bootstrap, group, topic, 2)) == 2
    assert kafka.committed_offsets(group, topic, [0, 1, 2]) == {0: 0, 2: 0}
