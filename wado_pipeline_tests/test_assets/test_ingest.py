"""One micro-batch run end to end, on the real Kafka, PostgreSQL and MariaDB."""

import hashlib
import json

import pytest
from dagster import (
    ReexecutionOptions,
    execute_job,
    instance_for_test,
)

from wado_pipeline.core import schema as S
from wado_pipeline.core.planning import OffsetRange
from wado_pipeline.core.run_contract import JOB_NAME, run_config_for
from wado_pipeline.definitions import build_definitions
from wado_pipeline.resources.doris import MariaDBResource
from wado_pipeline.resources.kafka import KafkaResource
from wado_pipeline_tests.support import (
    consume_all,
    corpus_messages,
    dump_tables,
    encode,
    expected_from_files,
    reconstructable_job,
    run_range,
    synthetic_messages,
    verify,
)

pytestmark = pytest.mark.stack


BAD = [
    (b"{not json", "bad_json"),
    (b"[1, 2, 3]", "not_object"),
    (json.dumps({"trace_id": "x"}).encode(), "missing_field"),
]


def test_batch_end_to_end(settings, produce, storage_root):
    good = corpus_messages(storage_root) + synthetic_messages(storage_root, 60)
    missing = dict(good[-1], trace_id="missing-file", file_path=str(storage_root / "nope.dcm"))
    values = encode(good[:30]) + [b for b, _ in BAD] + encode(good[30:]) + encode([missing])
    produce(values, partition=1)
    n = len(values)
    with instance_for_test() as instance:
        result = run_range(settings, instance, 1, 0, n)
        assert result.success
        assert not result.get_asset_check_evaluations()  # checks are verify_batches' job
        verified = verify(settings, instance)
    checks = {
        (tuple(e.asset_key.path), e.check_name): e for e in verified.get_asset_check_evaluations()
    }
    assert len(checks) == 6 + 1  # batch_keys on each table, batch_rejects
    failed = {k for k, e in checks.items() if not e.passed}
    assert failed == {(("postgres", "dicom_ingest_error"), "batch_rejects")}
    rejects = checks[(("postgres", "dicom_ingest_error"), "batch_rejects")]
    assert rejects.severity.value == "WARN"
    assert rejects.metadata["rejects_by_reason"].value == {
        "bad_json": 1,
        "not_object": 1,
        "missing_field": 1,
        "file_missing": 1,
    }
    present = checks[(("doris", "dicom_image_meta"), "batch_keys")]
    assert present.metadata["expected_keys"].value == len(expected_from_files(good)["images"])

    tables = dump_tables(settings)
    expected = expected_from_files(good)
    for backend, flavor in (("postgres", "postgres"), ("doris", "mariadb")):
        image_cols = S.IMAGE_META.for_backend(flavor).column_names
        tenant, study, series, sop, width = (
            image_cols.index(c)
            for c in ("tenant_id", "study_uid", "series_uid", "sop_uid", "width")
        )
        # a receipt for every valid store message, the one whose file is missing too
        receipts = {r[0] for r in tables[f"{backend}.dicom_object_meta"]}
        assert receipts == expected["objects"] | {"missing-file"}
        assert {r[:1] + r[2:4] for r in tables[f"{backend}.dicom_state_meta"]} == expected["states"]
        assert {
            (r[tenant], r[study], r[series], r[sop], r[width])
            for r in tables[f"{backend}.dicom_image_meta"]
        } == expected["images"]
    # the two databases hold the same rows (PostgreSQL's image table has no
    # study_date_origin, as a site's)
    for t in S.PIPELINE_TABLES:
        pg_cols = t.for_backend("postgres").column_names
        maria_cols = t.for_backend("mariadb").column_names
        for a, b in zip(tables[f"postgres.{t.name}"], tables[f"doris.{t.name}"], strict=True):
            pg_row = dict(zip(pg_cols, a, strict=True))
            maria_row = {c: v for c, v in zip(maria_cols, b, strict=True) if c in pg_row}
            assert pg_row == maria_row, [c for c in pg_row if pg_row[c] != maria_row[c]]

    errors = tables["postgres.dicom_ingest_error"]
    reason_at = {r[2]: r[3] for r in errors}  # offset -> reason
    assert reason_at == {
        30: "bad_json",
        31: "not_object",
        32: "missing_field",
        n - 1: "file_missing",
    }

    states = consume_all(settings.kafka_bootstrap, settings.state_topic)
    images = consume_all(settings.kafka_bootstrap, settings.image_topic)
    assert {json.loads(r.value)["sop_uid"] for r in images} == {e[3] for e in expected["images"]}
    published = [json.loads(r.value) for r in states]
    assert {r["series_uid"] for r in published} == {e[2] for e in expected["states"]}
    # upstream's keys: lowercase hex MD5 of tenant_patient_study_series
    assert {r.key.decode() for r in states} == {
        hashlib.md5(
            f"{r['tenant_id']}_{r['patient_id']}_{r['study_uid']}_{r['series_uid']}".encode()
        ).hexdigest()
        for r in published
    }
    first = json.loads(images[0].value)
    assert set(first) == set(S.IMAGE_META.column_names)  # the topic has study_date_origin
    assert len(first["created_time"]) >= 19 and first["created_time"][10] == "T"

    dlq = consume_all(settings.kafka_bootstrap, settings.dlq_topic, expected=4)
    headers = [dict(r.headers) for r in dlq]
    assert [h["wado.reason"] for h in headers] == [
        b"bad_json",
        b"not_object",
        b"missing_field",
        b"file_missing",
    ]
    assert [int(h["wado.offset"]) for h in headers] == [30, 31, 32, n - 1]
    assert dlq[0].value == BAD[0][0]

    kafka = KafkaResource(bootstrap=settings.kafka_bootstrap)
    assert kafka.committed_offsets(settings.consumer_group, settings.storage_topic, [1]) == {1: n}


def test_materialization_metadata(settings, produce, storage_root):
    good = synthetic_messages(storage_root, 10)
    produce([*encode(good), b"junk"], partition=0)
    with instance_for_test() as instance:
        result = run_range(settings, instance, 0, 0, 11)
    mats = {
        tuple(e.asset_key.path): e.step_materialization_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    meta = mats[("postgres", "dicom_image_meta")]
    assert meta["rows_upserted"].value == 10
    assert "0..10" in meta["offset_range"].value
    summary = mats[("kafka", "consumer_groups", settings.consumer_group)]
    assert summary["consumed"].value == 11 and summary["rejected"].value == 1
    assert summary["rejects_by_reason"].value == {"bad_json": 1}
    assert "rejects_by_reason" not in meta  # the tables say nothing about rejects
    assert "warnings_by_column" not in meta  # nothing was cut
    assert len(mats) == 11  # 3 + 3 tables, 3 topics, error table, group offsets
    text = json.dumps({k: str(v) for m in mats.values() for k, v in m.items()})
    assert "Müller" not in text and "PAT1" not in text  # no patient names or IDs
    header, rule, *rows = meta["preview"].value.splitlines()  # a Markdown table
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert len(rows) == 3 and rule.count("---") == len(cols)
    first = dict(zip(cols, (c.strip() for c in rows[0].strip("|").split("|")), strict=True))
    assert first["width"] == "64" and "patient_name" not in first
    assert "preview" not in mats[("doris", "dicom_image_meta")]  # the same rows: once


def test_cjk_name_and_long_description_are_cut_with_warnings(settings, produce, storage_root):
    from wado_pipeline.bench.synthetic import (
        InstanceSpec,
        build_dataset,
        storage_path,
        store_message,
        write_dataset,
    )

    spec = InstanceSpec(
        patient_name="山" * 64, attributes={"SeriesDescription": "Ç" * 300}, charset="ISO_IR 192"
    )
    ds = build_dataset(spec)
    path = storage_path(storage_root, "T1", spec)
    write_dataset(ds, path)
    produce(encode([store_message(path, ds, "T1")]), partition=0)
    with instance_for_test() as instance:
        result = run_range(settings, instance, 0, 0, 1)
    meta = {
        tuple(e.asset_key.path): e.step_materialization_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }[("doris", "dicom_state_meta")]
    assert meta["warnings_by_column"].value == {"patient_name": 1, "series_description": 1}
    tables = dump_tables(settings)
    cols = S.STATE_META.column_names
    (row,) = tables["doris.dicom_state_meta"]
    name, desc = row[cols.index("patient_name")], row[cols.index("series_description")]
    # fits Doris' byte-sized VARCHAR(64) / VARCHAR(256), cut at a character boundary
    assert name == "山" * 21 and len(name.encode()) == 63
    assert desc == "Ç" * 128 and len(desc.encode()) == 256
    assert tables["postgres.dicom_state_meta"] == tables["doris.dicom_state_meta"]


def test_reexecution_changes_nothing(settings, produce, storage_root, monkeypatch):
    produce([*encode(synthetic_messages(storage_root, 40)), b"junk"], partition=2)
    for k, v in settings.to_env().items():
        monkeypatch.setenv(k, v)
    job = reconstructable_job()
    with instance_for_test() as instance:
        first = run_range(settings, instance, 2, 0, 41)
        assert first.success
        before = dump_tables(settings)
        assert len(before["postgres.dicom_image_meta"]) == 40
        assert len(before["postgres.dicom_ingest_error"]) == 1
        # what the UI's "Re-execute all" does: the parent's run config, a new run
        with execute_job(
            job, instance, reexecution_options=ReexecutionOptions(parent_run_id=first.run_id)
        ) as again:
            assert again.success
            assert again.dagster_run.run_config == first.dagster_run.run_config
        assert dump_tables(settings) == before


def test_reexecute_from_failure_redoes_only_the_failed_write(
    settings, produce, storage_root, monkeypatch
):
    produce(encode(synthetic_messages(storage_root, 20)), partition=0)
    env = settings.to_env()
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    # Doris unreachable: a closed port on loopback
    monkeypatch.setenv("WADO_DORIS_URL", "mysql+pymysql://wado:wado@127.0.0.1:9/x")
    job = reconstructable_job()
    config = run_config_for(OffsetRange(settings.storage_topic, 0, 0, 20))
    with instance_for_test() as instance:
        with execute_job(job, instance, run_config=config) as failed:
            assert not failed.success
            failed_steps = {e.step_key for e in failed.get_step_failure_events()}
            assert failed_steps == {"ingest_batch.write_doris"}
        kafka = KafkaResource(bootstrap=settings.kafka_bootstrap)
        # the group is not committed while a write is missing
        assert kafka.committed_offsets(settings.consumer_group, settings.storage_topic, [0]) == {}
        monkeypatch.setenv("WADO_DORIS_URL", env["WADO_DORIS_URL"])
        with execute_job(
            job,
            instance,
            reexecution_options=ReexecutionOptions.from_failure(failed.run_id, instance),
        ) as retried:
            assert retried.success
            ran = {e.step_key for e in retried.get_step_success_events()}
            # the failed write and the offset commit after it
            assert ran == {"ingest_batch.write_doris", "ingest_batch.commit_offsets"}
    tables = dump_tables(settings)
    assert len(tables["doris.dicom_image_meta"]) == 20
    origin = S.IMAGE_META.for_backend("mariadb").column_names.index("study_date_origin")
    maria_rows = [r[:origin] + r[origin + 1 :] for r in tables["doris.dicom_image_meta"]]
    assert maria_rows == tables["postgres.dicom_image_meta"]
    assert kafka.committed_offsets(settings.consumer_group, settings.storage_topic, [0]) == {0: 20}


def test_bad_range_fails_loudly(settings, produce):
    produce([b"x"] * 3, partition=0)
    with instance_for_test() as instance:
        result = run_range(settings, instance, 0, 0, 10, raise_on_error=False)  # past the end
        assert not result.success
        (failure,) = result.get_step_failure_events()
        assert "ends at 3" in failure.event_specific_data.error.message


def test_asset_graph_edges(settings):
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    storage = ("kafka", settings.storage_topic)
    outputs = {tuple(k.path) for k in graph.get_all_asset_keys()} - {storage}
    assert outputs == {
        ("kafka", settings.state_topic),
        ("kafka", settings.image_topic),
        ("kafka", settings.dlq_topic),
        ("postgres", "dicom_ingest_error"),
        ("kafka", "consumer_groups", settings.consumer_group),
        *{(backend, t.name) for backend in ("postgres", "doris") for t in S.PIPELINE_TABLES},
    }
    for key in graph.get_all_asset_keys():
        if tuple(key.path) != storage:
            parents = {tuple(p.path) for p in graph.get(key).parent_keys}
            assert parents == {storage}, key
    job = defs.resolve_job_def(JOB_NAME)
    assert job.executor_def.name == "in_process"
    for key in graph.get_all_asset_keys():
        policy = graph.get(key).freshness_policy
        if key.path[0] in ("postgres", "doris") and key.path[1] != "dicom_ingest_error":
            assert policy is not None, key
            assert policy.fail_window.to_timedelta().total_seconds() == 900


class LossyDoris(MariaDBResource):
    """A writer with a bug: it drops the last image row. The checks must notice."""

    def write_batch(self, rows_by_table, rng=None):
        rows = dict(rows_by_table)
        rows["dicom_image_meta"] = list(rows["dicom_image_meta"])[:-1]
        return super().write_batch(rows, rng)


def test_checks_catch_a_missing_row(settings, produce, storage_root):
    produce(encode(synthetic_messages(storage_root, 12)), partition=0)
    job = build_definitions(settings).resolve_job_def(JOB_NAME)
    with instance_for_test() as instance:
        job.execute_in_process(
            run_config=run_config_for(OffsetRange(settings.storage_topic, 0, 0, 12)),
            instance=instance,
            resources={"doris": LossyDoris(url=settings.doris_url)},
        )
        first = verify(settings, instance)
        again = verify(settings, instance)  # a failed verification does not move on
    for result in (first, again):
        checks = {
            (tuple(e.asset_key.path), e.check_name): e for e in result.get_asset_check_evaluations()
        }
        bad = checks[(("doris", "dicom_image_meta"), "batch_keys")]
        assert not bad.passed
        assert (bad.metadata["expected_keys"].value, bad.metadata["found_keys"].value) == (12, 11)
        assert checks[(("postgres", "dicom_image_meta"), "batch_keys")].passed


def test_each_verification_covers_the_runs_since_the_last(settings, produce, storage_root):
    produce(encode(synthetic_messages(storage_root, 20)), partition=0)

    def image_check(result):
        (e,) = [
            e
            for e in result.get_asset_check_evaluations()
            if e.asset_key.path == ["postgres", "dicom_image_meta"]
        ]
        return e.passed, e.metadata["runs_verified"].value, e.metadata["expected_keys"].value

    with instance_for_test() as instance:
        assert run_range(settings, instance, 0, 0, 12).success
        assert image_check(verify(settings, instance)) == (True, 1, 12)
        assert run_range(settings, instance, 0, 12, 20).success
        assert image_check(verify(settings, instance)) == (True, 1, 8)  # only the new run
        assert image_check(verify(settings, instance)) == (True, 0, 0)  # nothing new


def test_reject_sinks_materialize_only_in_a_batch_with_rejects(settings, produce, storage_root):
    produce(encode(synthetic_messages(storage_root, 5)), partition=0)
    with instance_for_test() as instance:
        result = run_range(settings, instance, 0, 0, 5)
    assert result.success
    mats = {tuple(e.asset_key.path) for e in result.get_asset_materialization_events()}
    assert ("kafka", settings.dlq_topic) not in mats
    assert ("postgres", "dicom_ingest_error") not in mats
    assert len(mats) == 9  # 3 + 3 tables, 2 topics, group offsets
    assert consume_all(settings.kafka_bootstrap, settings.dlq_topic) == []
