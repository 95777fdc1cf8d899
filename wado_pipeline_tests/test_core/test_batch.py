"""Grouping a batch: one row per key, latest wins, counts reconcile."""

import json
from datetime import datetime, timedelta

from wado_pipeline.bench.synthetic import (
    InstanceSpec,
    build_dataset,
    storage_path,
    store_message,
    write_dataset,
)
from wado_pipeline.core.batch_rows import SourceRecord, group
from wado_pipeline.core.dicom.parallel import process_records

T0 = datetime(2025, 3, 1, 12, 0, 0)


def _write(root, spec, created, tenant="T1"):
    ds = build_dataset(spec)
    path = storage_path(root, tenant, spec)
    write_dataset(ds, path)
    return store_message(path, ds, tenant, created_time=created)


def test_latest_wins_and_first_created_time(tmp_path):
    series = InstanceSpec(study_uid="1.2.1", series_uid="1.2.1.1", sop_uid="1.2.1.1.1")
    msgs = []
    # same SOP instance received three times, out of time order, with different descriptions
    for i, (minutes, desc) in enumerate([(10, "second"), (20, "third"), (0, "first")]):
        spec = InstanceSpec(
            study_uid=series.study_uid,
            series_uid=series.series_uid,
            sop_uid=series.sop_uid,
            attributes={"SeriesDescription": desc},
            instance_number=i + 1,
        )
        # each version gets its own file path so all three exist on disk
        spec_path_sop = f"{spec.sop_uid}"
        ds = build_dataset(spec)
        path = tmp_path / "T1" / f"v{i}" / f"{spec_path_sop}.dcm"
        write_dataset(ds, path)
        msgs.append(store_message(path, ds, "T1", created_time=T0 + timedelta(minutes=minutes)))
    records = [SourceRecord(0, 100 + i, json.dumps(m).encode()) for i, m in enumerate(msgs)]
    g = group(process_records(records, [tmp_path]))
    assert (g.consumed, g.accepted, len(g.rejections)) == (3, 3, 0)
    assert len(g.objects) == 3 and len(g.states) == 1 and len(g.images) == 1
    state, image = g.states[0], g.images[0]
    assert state["series_description"] == "third"  # created T0+20 is the newest
    assert image["instance_number"] == 2
    assert state["created_time"] == T0 and image["created_time"] == T0
    assert state["updated_time"] == T0 + timedelta(minutes=20)


def test_offset_breaks_created_time_ties(tmp_path):
    base = InstanceSpec(study_uid="1.9", series_uid="1.9.1", sop_uid="1.9.1.1")
    msgs = []
    for i, desc in enumerate(["a", "b"]):
        spec = InstanceSpec(
            study_uid=base.study_uid,
            series_uid=base.series_uid,
            sop_uid=base.sop_uid,
            attributes={"SeriesDescription": desc},
        )
        ds = build_dataset(spec)
        path = tmp_path / "T1" / f"v{i}.dcm"
        write_dataset(ds, path)
        msgs.append(store_message(path, ds, "T1", created_time=T0))
    records = [
        SourceRecord(0, o, json.dumps(m).encode()) for o, m in zip((7, 8), msgs, strict=True)
    ]
    assert group(process_records(records, [tmp_path])).states[0]["series_description"] == "b"
    records.reverse()  # order of arrival in the list does not matter, the offset does
    assert group(process_records(records, [tmp_path])).states[0]["series_description"] == "b"


def test_counts_reconcile_with_rejections(tmp_path):
    good = [_write(tmp_path, InstanceSpec(instance_number=i), T0) for i in range(5)]
    values = [json.dumps(m).encode() for m in good] + [b"junk", b"[]", None]
    records = [SourceRecord(1, i, v) for i, v in enumerate(values)]
    g = group(process_records(records, [tmp_path]))
    assert g.reconciles and g.consumed == 8 and g.accepted == 5
    assert sorted(g.rejects_by_reason().items()) == [("bad_json", 2), ("not_object", 1)]
    assert [r.offset for r in g.rejections] == [5, 6, 7]
    assert g.rejections[0].payload == b"junk"


def test_parallel_equals_serial(tmp_path):
    msgs = [
        _write(tmp_path, InstanceSpec(instance_number=i), T0 + timedelta(seconds=i))
        for i in range(150)
    ]
    values = [json.dumps(m).encode() for m in msgs]
    values[17] = b"not json"
    records = [SourceRecord(2, i, v) for i, v in enumerate(values)]
    serial = process_records(records, [tmp_path], workers=1)
    parallel = process_records(records, [tmp_path], workers=2)
    assert [type(o).__name__ for o in serial] == [type(o).__name__ for o in parallel]
    assert group(serial).images == group(parallel).images
    assert [o.offset for o in parallel] == list(range(150))


def test_object_rows_fit_bytes_and_keys_reject(tmp_path):
    msg = _write(tmp_path, InstanceSpec(), T0)
    cjk = dict(msg, accession_number="山" * 64, trace_id="t-cjk")  # 192 bytes > 64
    key = dict(msg, tenant_id="病" * 30, trace_id="t-key")  # tenant_id is in every key
    node = dict(msg, worker_node_id="n" * 80, trace_id="t-node")  # NOT NULL, not a key
    records = [SourceRecord(0, i, json.dumps(m).encode()) for i, m in enumerate((cjk, key, node))]
    g = group(process_records(records, [tmp_path]))
    rows = {r["trace_id"]: r for r in g.objects}
    assert set(rows) == {"t-cjk", "t-node"}
    row = rows["t-cjk"]
    assert row["accession_number"] == "山" * 21 and len(row["accession_number"].encode()) <= 64
    assert g.warnings["accession_number"] == 1
    assert rows["t-node"]["worker_node_id"] == "n" * 64 and g.warnings["worker_node_id"] == 1
    (rej,) = g.rejections
    assert rej.reason == "too_long" and "tenant_id" in rej.detail
