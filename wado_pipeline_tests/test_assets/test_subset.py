"""Subsets of the batch asset: a data team rebuilds one sink from Kafka without touching
the others: only the selected sinks are written, the next
verification finds them complete, and the group offset moves only in a run that writes
every sink."""

import pytest
from dagster import (
    AssetKey,
    DagsterRun,
    ReexecutionOptions,
    execute_job,
    instance_for_test,
)
from sqlalchemy import create_engine, text

from wado_pipeline.assets.keys import asset_keys
from wado_pipeline.core import schema as S
from wado_pipeline.core.run_contract import JOB_NAME, PENDING_TAG
from wado_pipeline.dagster_internals import PARENT_RUN_ID_TAG, make_new_run_id
from wado_pipeline.definitions import build_definitions
from wado_pipeline_tests.support import (
    consume_all,
    dump_tables,
    encode,
    ranges,
    reconstructable_job,
    run_range,
    synthetic_messages,
    tick,
    verify,
)

pytestmark = pytest.mark.stack


def _run_subset(settings, instance, selection, start, end, raise_on_error=True):
    keys = [k if isinstance(k, AssetKey) else AssetKey(k) for k in selection]
    return run_range(settings, instance, 0, start, end, raise_on_error, asset_selection=keys)


def test_rebuilding_one_doris_table_touches_nothing_else(settings, produce, storage_root, kafka):
    messages = synthetic_messages(storage_root, 30)
    produce(encode(messages), partition=0)
    with instance_for_test() as instance:
        assert run_range(settings, instance, 0, 0, 30).success
        before = dump_tables(settings)
        group = kafka.committed_offsets(settings.consumer_group, settings.storage_topic, [0])
        topics = {
            t: len(consume_all(settings.kafka_bootstrap, t))
            for t in (settings.state_topic, settings.image_topic)
        }
        engine = create_engine(settings.doris_url)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM dicom_state_meta"))
        engine.dispose()
        # a PostgreSQL row changed behind the pipeline's back stays as it is: proof the
        # rebuild does not write PostgreSQL
        pg = create_engine(settings.postgres_url)
        with pg.begin() as conn:
            conn.execute(
                text(f"UPDATE \"{settings.postgres_schema}\".dicom_state_meta SET modality = 'XX'")
            )
        pg.dispose()

        result = _run_subset(settings, instance, [("doris", "dicom_state_meta")], 0, 30)
        assert result.success
        materialized = {e.asset_key for e in result.get_asset_materialization_events()}
        assert materialized == {AssetKey(["doris", "dicom_state_meta"])}
        verified = verify(settings, instance).get_asset_check_evaluations()
        refilled = [e for e in verified if e.asset_key == AssetKey(["doris", "dicom_state_meta"])]
        assert len(refilled) == 1 and refilled[0].passed
        assert refilled[0].metadata["expected_keys"].value == len(
            {(m["tenant_id"], m["study_uid"], m["series_uid"]) for m in messages}
        )

    after = dump_tables(settings)
    assert after["doris.dicom_state_meta"] == before["doris.dicom_state_meta"]  # refilled
    at = S.STATE_META.for_backend("postgres").column_names.index("modality")
    pg_rows = after["postgres.dicom_state_meta"]
    assert pg_rows and {r[at] for r in pg_rows} == {"XX"}  # PostgreSQL untouched
    assert after["doris.dicom_image_meta"] == before["doris.dicom_image_meta"]
    assert kafka.committed_offsets(settings.consumer_group, settings.storage_topic, [0]) == group
    for t, n in topics.items():
        assert len(consume_all(settings.kafka_bootstrap, t)) == n  # nothing published


def test_a_partial_run_never_moves_the_group(settings, produce, storage_root, kafka):
    produce(encode(synthetic_messages(storage_root, 10)), partition=0)
    with instance_for_test() as instance:
        result = _run_subset(
            settings,
            instance,
            [("postgres", "dicom_object_meta"), asset_keys(settings)["group_offsets"]],
            0,
            10,
            raise_on_error=False,
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.message
    assert "moves only in a run that writes every sink" in message
    assert kafka.committed_offsets(settings.consumer_group, settings.storage_topic, [0]) == {}


def test_materialize_all_without_config_takes_what_is_pending_and_replays_it(
    settings, produce, storage_root, monkeypatch, kafka
):
    """The UI's "Materialize all" gives no range: the run takes what is pending in every
    partition, records it, and its re-execution replays exactly that, never newer."""
    messages = synthetic_messages(storage_root, 30)
    for i, m in enumerate(messages):
        produce(encode([m]), partition=i % 3)
    for k, v in settings.to_env().items():
        monkeypatch.setenv(k, v)
    job = reconstructable_job()
    with instance_for_test() as instance:
        with execute_job(job, instance) as first:  # no run config at all
            assert first.success
            tags = instance.get_run_by_id(first.run_id).tags
        assert tags[PENDING_TAG] == "0:0-10,1:0-10,2:0-10"
        topic, parts = settings.storage_topic, [0, 1, 2]
        assert kafka.committed_offsets(settings.consumer_group, topic, parts) == dict.fromkeys(
            parts, 10
        )
        later = synthetic_messages(storage_root, 6, seed="later")
        for i, m in enumerate(later):
            produce(encode([m]), partition=i % 3)
        options = ReexecutionOptions(parent_run_id=first.run_id)
        with execute_job(job, instance, reexecution_options=options) as again:
            assert again.success
            assert instance.get_run_by_id(again.run_id).tags[PENDING_TAG] == tags[PENDING_TAG]
    # the replay wrote the same 30 messages, not the 6 that came later
    assert len(dump_tables(settings)["postgres.dicom_object_meta"]) == 30
    assert kafka.committed_offsets(settings.consumer_group, topic, parts) == dict.fromkeys(
        parts, 10
    )


def test_the_sensor_hands_a_run_without_range_what_is_pending_and_skips_it(
    settings, produce, storage_root
):
    """Coordination: only the sensor hands out offsets. Its next tick writes what is
    pending into the run's tag (the run waits for it) and its cursor skips that, so the
    two never overlap; later messages go to the sensor's own batches."""
    produce(encode(synthetic_messages(storage_root, 120)), partition=0)
    with instance_for_test() as instance:
        # two runs launched from the UI without a range, not started yet (in flight)
        first, second = (
            instance.add_run(
                DagsterRun(job_name=JOB_NAME, run_id=make_new_run_id(), run_config={}, tags={})
            )
            for _ in range(2)
        )
        # and a re-execution of an earlier one, which replays its parent's ranges
        again = instance.add_run(
            DagsterRun(
                job_name=JOB_NAME,
                run_id=make_new_run_id(),
                run_config={},
                tags={PARENT_RUN_ID_TAG: make_new_run_id()},
            )
        )
        assigning = tick(settings, instance)
        assert not assigning.run_requests
        tags = [instance.get_run_by_id(r.run_id).tags for r in (first, second, again)]
        # the older run takes what is pending; the newer one what is left (nothing)
        assert [t[PENDING_TAG] for t in tags[:2]] == ["0:0-120", ""]
        assert PENDING_TAG not in tags[2]
        produce(encode(synthetic_messages(storage_root, 60, seed="later")), partition=0)
        got = ranges(tick(settings, instance))
        assert got and got[0][:2] == (0, 120)  # the sensor starts after the claimed range
        assert all(start >= 120 for _, start, _ in got)


def test_a_partial_run_without_a_range_is_refused(settings, produce, storage_root, kafka):
    """Only a run that writes every sink may take what is pending; a partial one would
    leave the sinks it skips without those offsets."""
    produce(encode(synthetic_messages(storage_root, 5)), partition=0)
    job = build_definitions(settings).resolve_job_def(JOB_NAME)
    with instance_for_test() as instance:
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[AssetKey(["doris", "dicom_state_meta"])],
            raise_on_error=False,
        )
        tags = instance.get_run_by_id(result.run_id).tags
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "needs an offset range" in failure.event_specific_data.error.message
    assert PENDING_TAG not in tags  # nothing claimed from the sensor
    assert kafka.committed_offsets(settings.consumer_group, settings.storage_topic, [0]) == {}
