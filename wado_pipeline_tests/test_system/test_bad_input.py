"""The bad-input corpus: every kind of broken message ends in the dead-letter topic and
the error table with its reason, while the rest of its batch is written."""

import base64
import json
import os

import pytest
from dagster import instance_for_test
from sqlalchemy import create_engine, inspect, text

from wado_pipeline.bench.synthetic import (
    InstanceSpec,
    build_dataset,
    storage_path,
    store_message,
    write_dataset,
)
from wado_pipeline.core import schema as S
from wado_pipeline_tests.support import consume_all, dump_tables, run_range

pytestmark = pytest.mark.stack

SQL_TEXT = "Robert'); DROP TABLE dicom_state_meta;--"


def _file(root, tenant="T1", **spec_kw):
    spec = InstanceSpec(**spec_kw)
    ds = build_dataset(spec)
    path = storage_path(root, tenant, spec)
    write_dataset(ds, path)
    return path, ds, store_message(path, ds, tenant)


def build_corpus(root, outside):
    """(value, expected reason or None for accepted) for every kind of bad input."""
    cases = []

    def add(value, reason):
        raw = value if isinstance(value, bytes) or value is None else json.dumps(value).encode()
        cases.append((raw, reason))

    good = _file(root)[2]
    add(good, None)
    add(b"{this is not json", "bad_json")
    add(b"", "bad_json")
    add([good], "not_object")
    add({k: v for k, v in good.items() if k != "sop_uid"}, "missing_field")
    add(dict(good, file_size="123"), "bad_type")
    add(dict(good, patient_id="P" * 65), "too_long")
    add(dict(good, study_date="2024-02-30"), "bad_date")
    add(dict(good, transfer_status="Lost"), "bad_enum")
    add(dict(good, file_path=str(root / "T1" / "nowhere.dcm")), "file_missing")
    # outside the storage roots: plainly, through "..", and through a symlink
    p_out, _, m_out = _file(outside)
    add(m_out, "path_outside_root")
    add(
        dict(m_out, file_path=str(root / ".." / p_out.relative_to(root.parent))),
        "path_outside_root",
    )
    link = root / "T1" / "escape.dcm"
    link.symlink_to(p_out)
    add(dict(m_out, file_path=str(link)), "path_outside_root")
    # files that are not (whole) DICOM
    junk = root / "T1" / "report.pdf"
    junk.write_bytes(b"%PDF-1.7 " * 100)
    add(dict(good, file_path=str(junk), file_size=junk.stat().st_size), "not_dicom")
    p_cut, _, m_cut = _file(root)
    data = p_cut.read_bytes()
    p_cut.write_bytes(data[:600])
    add(dict(m_cut, file_size=600), "truncated")
    spec = InstanceSpec(remove=("SOPClassUID",))
    _, _, m_req = _file(root, **{"remove": spec.remove})
    add(m_req, "missing_required")
    add(dict(_file(root)[2], series_uid="1.2.3.4.5.6"), "uid_mismatch")
    # a message naming another size: the instance was received again (the file is whole
    # and holds it: rows), or the file was cut short in its pixel data (rejected)
    m_size = _file(root)[2]
    add(dict(m_size, file_size=m_size["file_size"] - 1), None)
    p_short, _, m_short = _file(root)
    p_short.write_bytes(p_short.read_bytes()[:-10])
    add(m_short, "size_mismatch")
    # hostile but valid text: stored verbatim (NUL removed), nothing executed
    _, _, m_sql = _file(
        root,
        attributes={"SeriesDescription": SQL_TEXT},
        raw={(0x0008, 0x1030): ("LO", b"HEAD\x00CT")},
    )
    add(m_sql, None)
    # close to the broker's 1 MiB message limit, with a huge key field: rejected
    add(dict(good, trace_id="A" * 1_000_000), "too_long")
    # a huge non-key value is cut to its column with a warning, never a rejection
    add(dict(good, trace_id="cut-accession", accession_number="A" * 100_000), None)
    # at the broker's edge (the exact-limit message: test_broker_edge.py)
    add(None, "bad_json")  # a null value (tombstone)
    add(b'{"trace_id": "\xff\xfe caf\xe9"}', "bad_json")  # not UTF-8
    add(b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "bad_json")  # nested 10,000 levels
    add(dict(good, file_size=2**64), "bad_value")  # too large for int64
    text_good = json.dumps(good)
    add((text_good[:-1] + ', "tenant_id": "T2"}').encode(), "duplicate_field")
    return cases


# Reasons that refuse the store message itself: no receipt row for these.
MESSAGE_REASONS = frozenset(
    {
        "bad_json",
        "duplicate_field",
        "not_object",
        "missing_field",
        "bad_type",
        "too_long",
        "bad_date",
        "bad_enum",
        "bad_value",
    }
)


def test_bad_input_corpus(settings, produce, storage_root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    cases = build_corpus(storage_root, outside)
    bad_kinds = [reason for _, reason in cases if reason]
    assert len(bad_kinds) >= 20 and len(set(bad_kinds)) >= 14
    produce([v for v, _ in cases], partition=0, key=b"corpus")  # a key allows a null value
    n = len(cases)
    with instance_for_test() as instance:
        result = run_range(settings, instance, 0, 0, n)
    assert result.success
    meta = {
        tuple(e.asset_key.path): e.step_materialization_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }[("kafka", "consumer_groups", settings.consumer_group)]
    expected_rejects = {i: r for i, (_, r) in enumerate(cases) if r}
    # counts reconcile
    assert meta["consumed"].value == n
    assert meta["accepted"].value + meta["rejected"].value == n
    assert meta["rejected"].value == len(expected_rejects)

    tables = dump_tables(settings)
    errors = {row[2]: row[3] for row in tables["postgres.dicom_ingest_error"]}
    assert errors == expected_rejects
    dlq = consume_all(settings.kafka_bootstrap, settings.dlq_topic, expected=len(expected_rejects))
    by_offset = {int(dict(r.headers)["wado.offset"]): r for r in dlq}
    assert {o: dict(r.headers)["wado.reason"].decode() for o, r in by_offset.items()} == (
        expected_rejects
    )
    for offset, record in by_offset.items():
        assert record.value == cases[offset][0]  # the original value, byte for byte
    # the good messages of the same batch were written, and every valid store message
    # has its receipt, whatever then happened to its file
    # (one row per trace_id: several cases reuse the good message's)
    receipts = {
        json.loads(v)["trace_id"] for v, r in cases if r is None or r not in MESSAGE_REASONS
    }
    assert {row[0] for row in tables["postgres.dicom_object_meta"]} == receipts
    cols = S.STATE_META.column_names
    descriptions = {r[cols.index("series_description")] for r in tables["doris.dicom_state_meta"]}
    studies = {r[cols.index("study_description")] for r in tables["postgres.dicom_state_meta"]}
    assert SQL_TEXT in descriptions and "HEADCT" in studies
    # nothing was executed: the tables are all still there
    for url in (settings.postgres_url, settings.doris_url):
        engine = create_engine(url)
        schema = settings.postgres_schema if url == settings.postgres_url else None
        assert set(inspect(engine).get_table_names(schema=schema)) >= {
            t.name for t in S.PIPELINE_TABLES
        }
        engine.dispose()
    with create_engine(settings.postgres_url).connect() as conn:
        stored = conn.execute(
            text(
                f'SELECT payload FROM "{settings.postgres_schema}".dicom_ingest_error '
                "WHERE reason = 'too_long' ORDER BY \"offset\" DESC LIMIT 1"
            )
        ).scalar_one()
    assert len(stored) > 900_000  # the huge message is kept, not dropped
    # every stored payload is the original value, byte for byte (base64 where not text)
    with create_engine(settings.postgres_url).connect() as conn:
        rows = conn.execute(
            text(
                f'SELECT "offset", payload, payload_encoding FROM '
                f'"{settings.postgres_schema}".dicom_ingest_error'
            )
        ).all()
    for offset, payload, encoding in rows:
        original = cases[offset][0]
        if original is None:
            assert payload is None and encoding is None
        elif encoding == "base64":
            assert base64.b64decode(payload) == original
        else:
            assert encoding == "utf-8" and payload.encode() == original
    assert "base64" in {r[2] for r in rows}
    assert os.path.islink(storage_root / "T1" / "escape.dcm")
