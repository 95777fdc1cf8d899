"""The verification's key look-up on the real databases: one query per chunk of keys
answers how many are present, how many rows have a NULL in a Doris key column and how
many keys are stored twice. The table here has no primary key (a site's hand-made
copy can lack one), so every one of the three can be non-zero."""

from datetime import datetime

import pytest
from sqlalchemy import Column, MetaData, Table, event

from wado_pipeline.core import schema as S
from wado_pipeline.resources.sql import queries

pytestmark = pytest.mark.stack

T0 = datetime(2025, 1, 1, 8, 0, 0)


def _row(series: str, patient: str | None) -> dict:
    row = dict.fromkeys(S.STATE_META.column_names)
    row.update(
        tenant_id="T",
        patient_id=patient,
        study_uid="1.2",
        series_uid=series,
        study_uid_hash="1" * 20,
        series_uid_hash="2" * 20,
        study_date_origin="20250101",
        study_date=T0.date(),
        created_time=T0,
        updated_time=T0,
    )
    return row


@pytest.fixture(params=["postgres", "mariadb"])
def keyless_state_table(request, postgres, doris):
    """A copy of dicom_state_meta without keys or constraints, in the test's database."""
    res = postgres if request.param == "postgres" else doris
    res.create_tables()
    model = res.tables[S.STATE_META.name]
    schema = postgres.schema_name if request.param == "postgres" else None
    copy = Table(
        "keyless_state_meta",
        MetaData(schema=schema),
        *(Column(c.name, c.type, nullable=True) for c in model.columns),
    )
    copy.create(res.engine)
    yield res.engine, copy
    copy.drop(res.engine)


def test_one_query_counts_present_null_and_duplicate_keys(keyless_state_table, monkeypatch):
    engine, table = keyless_state_table
    rows = [
        _row("s1", "P"),
        _row("s2", "P"),
        _row("s2", "P"),  # stored twice
        _row("s3", None),  # NULL patient_id: in Doris' key, not in the primary key
        _row("s3", None),  # twice, both NULL
        _row("unasked", None),  # not among the keys: counted nowhere
    ]
    with engine.begin() as conn:
        conn.execute(table.insert(), rows)
    keys = [("T", "1.2", f"s{i}") for i in range(1, 6)]  # s4, s5 are missing
    # Chunks of two keys: the counts add up over chunks, and a key's rows lie in one.
    monkeypatch.setattr(queries, "CHUNK", 2)
    statements = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with engine.connect() as conn:
        got = queries.key_counts(conn, S.STATE_META, table, keys)
    assert got == queries.KeyCounts(found=3, null_key_rows=2, duplicate_keys=2)
    assert len(statements) == 3  # ceil(5 / 2) chunks, one statement each
    with engine.connect() as conn:
        assert queries.key_counts(conn, S.STATE_META, table, []) == queries.KeyCounts(0, 0, 0)
