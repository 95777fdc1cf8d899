"""Upsert semantics on the real databases: newer wins, older never overwrites,
created_time keeps the first value, re-running changes nothing."""

from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

from wado_pipeline.core import schema as S
from wado_pipeline.resources.sql.upserts import doris_insert_sql

pytestmark = pytest.mark.stack

T0 = datetime(2025, 1, 1, 8, 0, 0)


def state_row(desc: str, when: datetime, name: str = "Doe^Jane") -> dict:
    row = dict.fromkeys(S.STATE_META.column_names)
    row.update(
        tenant_id="T",
        patient_id="P",
        study_uid="1.2",
        series_uid="1.2.3",
        study_uid_hash="1" * 20,
        series_uid_hash="2" * 20,
        study_date_origin="20250101",
        study_date=when.date(),
        series_description=desc,
        patient_name=name,
        created_time=when,
        updated_time=when,
    )
    return row


def read_state(engine, table: str):
    with engine.connect() as conn:
        return conn.execute(
            text(f"SELECT series_description, created_time, updated_time FROM {table}")
        ).all()


@pytest.fixture(params=["postgres", "mariadb"])
def backend(request, postgres, doris):
    res = postgres if request.param == "postgres" else doris
    res.create_tables()
    table = (
        f'"{postgres.schema_name}".dicom_state_meta'
        if request.param == "postgres"
        else "dicom_state_meta"
    )
    return res, table


def test_newer_wins_older_never_overwrites(backend):
    res, table = backend
    res.write_batch({"dicom_state_meta": [state_row("v2", T0 + timedelta(hours=2))]})
    res.write_batch({"dicom_state_meta": [state_row("v1", T0)]})  # older, arrives late
    assert read_state(res.engine, table) == [("v2", T0, T0 + timedelta(hours=2))]
    res.write_batch({"dicom_state_meta": [state_row("v3", T0 + timedelta(hours=3))]})
    assert read_state(res.engine, table) == [("v3", T0, T0 + timedelta(hours=3))]


def test_rerun_changes_nothing(backend):
    res, table = backend
    rows = [state_row("v1", T0)]
    res.write_batch({"dicom_state_meta": rows})
    before = read_state(res.engine, table)
    res.write_batch({"dicom_state_meta": rows})
    assert read_state(res.engine, table) == before == [("v1", T0, T0)]


def test_cjk_name_and_long_description_fit_mariadb(doris):
    doris.create_tables()
    row = state_row("d" * 256, T0, name="山" * 21)
    doris.write_batch({"dicom_state_meta": [row]})
    with doris.engine.connect() as conn:
        name, desc = conn.execute(
            text("SELECT patient_name, series_description FROM dicom_state_meta")
        ).one()
    assert name == "山" * 21 and len(desc) == 256


def test_doris_insert_sql_is_plain_insert():
    """Doris flavour: plain INSERT (merge-on-write + sequence column do the upsert)."""
    sql = doris_insert_sql(S.STATE_META)
    assert sql == (
        "INSERT INTO `dicom_state_meta` (`tenant_id`, `patient_id`, `study_uid`, "
        "`series_uid`, `study_uid_hash`, `series_uid_hash`, `study_date_origin`, "
        "`patient_name`, `patient_sex`, `patient_birth_date`, `patient_birth_time`, "
        "`patient_age`, `patient_size`, `patient_weight`, `pregnancy_status`, `study_date`, "
        "`study_time`, `accession_number`, `study_id`, `study_description`, `modality`, "
        "`series_number`, `series_date`, `series_time`, `series_description`, "
        "`body_part_examined`, `protocol_name`, `series_related_instances`, `created_time`, "
        "`updated_time`) VALUES (%(tenant_id)s, %(patient_id)s, %(study_uid)s, "
        "%(series_uid)s, %(study_uid_hash)s, %(series_uid_hash)s, %(study_date_origin)s, "
        "%(patient_name)s, %(patient_sex)s, %(patient_birth_date)s, %(patient_birth_time)s, "
        "%(patient_age)s, %(patient_size)s, %(patient_weight)s, %(pregnancy_status)s, "
        "%(study_date)s, %(study_time)s, %(accession_number)s, %(study_id)s, "
        "%(study_description)s, %(modality)s, %(series_number)s, %(series_date)s, "
        "%(series_time)s, %(series_description)s, %(body_part_examined)s, "
        "%(protocol_name)s, %(series_related_instances)s, %(created_time)s, "
        "%(updated_time)s)"
    )


def test_doris_flavor_insert_runs_over_the_mysql_protocol(settings):
    """The Doris statement is valid MySQL-protocol SQL; against MariaDB (no merge-on-
    write) it appends, which is exactly why the MariaDB flavour exists."""
    from wado_pipeline.resources.doris import DorisInsertResource, MariaDBResource

    res = MariaDBResource(url=settings.doris_url)
    res.create_tables()
    res.dispose()
    doris_like = DorisInsertResource(url=settings.doris_url)
    doris_like.write_batch({"dicom_state_meta": [state_row("v1", T0)]})
    with doris_like.engine.connect() as conn:
        assert conn.execute(text("SELECT series_description FROM dicom_state_meta")).all() == [
            ("v1",)
        ]
    doris_like.dispose()


def test_concurrent_first_runs_create_tables_once(postgres, doris):
    """Runs of several partitions start together on a fresh database."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(r.create_tables) for r in (postgres, doris) * 3]
        for f in futures:
            f.result()  # raises if a CREATE raced
    with postgres.engine.connect() as conn:
        n = conn.execute(
            text("SELECT count(*) FROM information_schema.tables WHERE table_schema = :s"),
            {"s": postgres.schema_name},
        ).scalar_one()
    assert n == 4
