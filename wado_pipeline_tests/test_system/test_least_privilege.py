"""Least privilege on the real stack: the tables are made by their owner (as
`wado-pipeline init-db` does), the runs get roles with only the printed grants, and
dead letters can be masked for sites whose Kafka is widely readable."""

import dataclasses
import json
import uuid

import pytest
from dagster import instance_for_test
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from wado_pipeline.core.dead_letter import MASK
from wado_pipeline.core.run_contract import HEADER_MASKED
from wado_pipeline_tests.support import (
    assert_tables_match,
    consume_all,
    encode,
    run_range,
    synthetic_messages,
)
from wado_pipeline_tests.test_resources.test_grants import (
    mariadb_as_root,
    print_grants,
    psql_as_superuser,
)

pytestmark = pytest.mark.stack


@pytest.fixture
def dml_settings(settings):
    """Settings whose database URLs use fresh roles holding only the printed grants."""
    role, reader, password = f"dml_{uuid.uuid4().hex[:8]}", f"ro_{uuid.uuid4().hex[:8]}", "pw"
    for sql, run in (
        (
            f'CREATE ROLE "{role}" LOGIN PASSWORD \'{password}\'; CREATE ROLE "{reader}";',
            psql_as_superuser,
        ),
        (
            f"CREATE USER '{role}'@'%' IDENTIFIED BY '{password}'; CREATE USER '{reader}'@'%';",
            mariadb_as_root,
        ),
    ):
        assert run(sql).returncode == 0
    for backend, run in (("postgres", psql_as_superuser), ("mariadb", mariadb_as_root)):
        grants = print_grants(role, "--reader", reader, "--backend", backend, settings=settings)
        done = run(grants)
        assert done.returncode == 0, done.stderr

    def as_role(url: str) -> str:
        return make_url(url).set(username=role, password=password).render_as_string(False)

    yield dataclasses.replace(
        settings, postgres_url=as_role(settings.postgres_url), doris_url=as_role(settings.doris_url)
    )
    psql_as_superuser(
        f'DROP OWNED BY "{role}", "{reader}"; DROP ROLE "{role}"; DROP ROLE "{reader}";'
    )
    mariadb_as_root(f"DROP USER IF EXISTS '{role}'@'%', '{reader}'@'%';")


def test_the_roles_really_have_no_ddl(dml_settings):
    schema = dml_settings.postgres_schema
    for url, ddl in (
        (dml_settings.postgres_url, f'CREATE TABLE "{schema}".probe (i int)'),
        (dml_settings.doris_url, "CREATE TABLE probe (i int)"),
    ):
        engine = create_engine(url)
        with (
            pytest.raises(SQLAlchemyError, match=r"permission denied|command denied"),
            engine.begin() as conn,
        ):
            conn.execute(text(ddl))
        engine.dispose()


def test_runs_work_with_dml_only_roles(dml_settings, settings, produce, storage_root):
    messages = synthetic_messages(storage_root, 40)
    produce([*encode(messages), b"not json"], partition=0)
    with instance_for_test() as instance:
        result = run_range(dml_settings, instance, 0, 0, 41)
        assert result.success
        texts = [
            json.dumps(str(e.dagster_event.event_specific_data)) + (e.message or "")
            for e in instance.all_logs(result.run_id)
            if e.dagster_event is not None
        ] + [e.message or "" for e in instance.all_logs(result.run_id)]
    assert not [t for t in texts if "permission denied" in t or "command denied" in t]
    tables = assert_tables_match(settings, messages)  # read back as the owner
    assert [r[3] for r in tables["postgres.dicom_ingest_error"]] == ["bad_json"]


def test_missing_tables_fail_the_run_once_naming_them_and_init_db(settings, produce):
    """A run creates nothing: with a table gone, it fails saying which and what to do."""
    engine = create_engine(settings.postgres_url)
    with engine.begin() as conn:
        conn.execute(text(f'DROP TABLE "{settings.postgres_schema}".dicom_state_meta'))
    engine.dispose()
    produce([b"{}"], partition=0)
    with instance_for_test() as instance:
        result = run_range(settings, instance, 0, 0, 1, raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.get_step_failure_events() if "write_postgres" in e.step_key]
    message = failure.event_specific_data.error.message
    assert "table dicom_state_meta is missing" in message
    assert "wado-pipeline init-db" in message


def test_masked_dead_letters_keep_the_full_value_in_the_error_table(settings, produce):
    masked_settings = dataclasses.replace(settings, dead_letter_payload="masked")
    secret = {
        "patient_id": "PAT-SECRET-4711",
        "accession_number": "ACC-SECRET-99",
        "file_path": "/var/lib/wado/storage/T1/PAT-SECRET-4711.dcm",
        "trace_id": "t-1",
    }
    produce([json.dumps(secret).encode(), b"\xffnot json PAT-SECRET-4711"], partition=0)
    with instance_for_test() as instance:
        assert run_range(masked_settings, instance, 0, 0, 2).success
    letters = consume_all(settings.kafka_bootstrap, settings.dlq_topic, expected=2)
    by_offset = {int(dict(d.headers)["wado.offset"]): d for d in letters}
    fields = json.loads(by_offset[0].value)
    assert fields["patient_id"] == fields["accession_number"] == fields["file_path"] == MASK
    assert fields["trace_id"] == "t-1"  # not identifying: kept to trace the message
    assert dict(by_offset[0].headers)[HEADER_MASKED] == b"fields"
    assert by_offset[1].value is None  # not JSON: cannot be masked field by field
    assert dict(by_offset[1].headers)[HEADER_MASKED] == b"value-omitted"
    for d in letters:
        assert b"SECRET" not in (d.value or b"")
    engine = create_engine(settings.postgres_url)
    with engine.connect() as conn:
        payloads = conn.execute(
            text(
                f'SELECT "offset", payload FROM "{settings.postgres_schema}".dicom_ingest_error '
                'ORDER BY "offset"'
            )
        ).all()
    engine.dispose()
    assert json.loads(payloads[0][1]) == secret  # the full value, for those allowed to read it
