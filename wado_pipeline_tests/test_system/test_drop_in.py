"""Drop-in for an upstream site, end to end on the real stack.

Store messages are written as upstream's receiver writes them (``core.dicom.receiver``: null
and over-long accession numbers, NeedTransfer for real compressed files from pydicom's
test data, 9-digit timestamps, ``<root>/<tenant>/<YYYYMMDD>/…`` layout) into a
PostgreSQL schema whose tables come from the site-DDL fixture, for each Doris load
mode that runs here: ``insert`` into MariaDB, and ``routine_load`` with the stand-in
loader playing the site's Routine Load jobs while the pipeline holds only SELECT.
(``stream_load`` needs a Doris FE; its protocol has its own contract test.)
"""

import dataclasses
import hashlib
import json
import shutil
import uuid
from pathlib import Path

import pydicom
import pytest
from dagster import instance_for_test
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from wado_pipeline.core import schema as S
from wado_pipeline.core.dicom.receiver import receiver_layout, store_message
from wado_pipeline_tests.routine_load_standin import RoutineLoadStandIn
from wado_pipeline_tests.support import (
    consume_all,
    dump_tables,
    run_range,
    site_postgres_tables,
    verify,
)
from wado_pipeline_tests.test_resources.test_grants import mariadb_as_root

pytestmark = pytest.mark.stack

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# A site whose viewer shows only uncompressed images: every compressed file arrives
# NeedTransfer and must be rewritten to Explicit VR Little Endian.
VIEWER = "1.2.840.10008.1.2,1.2.840.10008.1.2.1"
TARGET = "1.2.840.10008.1.2.1"
COMPRESSED = (
    "JPEG2000.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "SC_jpeg_no_color_transform.dcm",
    "JPEG-LL.dcm",
)
TENANT = "1234567"


def _md5(*parts: str) -> str:
    return hashlib.md5("_".join(parts).encode()).hexdigest()


def _stored(root: Path, ds: pydicom.Dataset) -> dict:
    """Store ``ds`` where the receiver would and return its store message."""
    path = receiver_layout(root, TENANT, ds)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return store_message(path, ds, TENANT, viewer_syntaxes=frozenset(VIEWER.split(",")))


ACCESSION_CASES = (None, "", "A" * 20, "ACC-0001")  # absent, empty, over 16, plain
# what the state rows hold for each case: null, "", cut to its 16-byte column, as is
ACCESSION_STORED = (None, "", "A" * 16, "ACC-0001")


def upstream_traffic(root: Path) -> list[dict]:
    """Messages as the receiver sends them: series k of the first study carries
    accession case k; then one NeedTransfer file per compressed syntax."""
    out = []
    study, series = generate_uid(), [generate_uid() for _ in ACCESSION_CASES]
    for i in range(12):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series[i % 4]
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = i + 1
        ds.StudyDate = "20261127"
        ds.PatientID = "PAT-UP-1"
        case = ACCESSION_CASES[i % 4]
        if case is None:
            if "AccessionNumber" in ds:
                del ds.AccessionNumber
        else:
            ds.AccessionNumber = case
        out.append(_stored(root, ds))
    for name in COMPRESSED:
        ds = pydicom.dcmread(get_testdata_file(name))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.SOPInstanceUID = generate_uid()
        ds.PatientID = ds.get("PatientID") or "PAT-UP-2"
        ds.StudyDate = ds.get("StudyDate") or "20261128"
        out.append(_stored(root, ds))
    return out


def _run_all(settings, counts: dict[int, int]):
    """One run per partition, then a verification of them all: (runs, verification)."""
    results = []
    with instance_for_test() as instance:
        for partition, n in counts.items():
            if n:
                results.append(run_range(settings, instance, partition, 0, n))
        return results, verify(settings, instance)


@pytest.fixture
def select_only_doris(settings):
    """A MariaDB user that can only read the namespace's database."""
    user, password = f"ro_{uuid.uuid4().hex[:8]}", "pw"
    database = make_url(settings.doris_url).database
    done = mariadb_as_root(
        f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'; "
        f"GRANT SELECT ON `{database}`.* TO '{user}'@'%';"
    )
    assert done.returncode == 0, done.stderr
    yield make_url(settings.doris_url).set(username=user, password=password).render_as_string(False)
    mariadb_as_root(f"DROP USER IF EXISTS '{user}'@'%';")


@pytest.mark.parametrize("load", ["insert", "routine_load"])
def test_upstream_traffic_into_site_tables(load, settings, storage_root, produce, request):
    site = dataclasses.replace(
        settings,
        viewer_transfer_syntaxes=VIEWER,
        log_topic=f"{settings.storage_topic}_log",
        doris_load=load,
        routine_load_wait_seconds=120.0,
    )
    site_postgres_tables(site)
    messages = upstream_traffic(storage_root)
    originals = {m["trace_id"]: m for m in messages}
    assert sum(m["transfer_status"] == "NeedTransfer" for m in messages) == len(COMPRESSED)
    assert [m["accession_number"] for m in messages[:4]] == [None, "", None, "ACC-0001"]
    assert all(len(m["created_time"].rsplit(".", 1)[1]) == 9 for m in messages)

    counts = {0: 0, 1: 0, 2: 0}
    for i, m in enumerate(messages):
        produce([m], partition=i % 3)
        counts[i % 3] += 1

    standin = None
    if load == "routine_load":
        admin = KafkaAdminClient(bootstrap_servers=site.kafka_bootstrap)
        admin.create_topics([NewTopic(site.log_topic, 1, 1)])
        admin.close()
        owner_url = site.doris_url
        site = dataclasses.replace(site, doris_url=request.getfixturevalue("select_only_doris"))
        producer = KafkaProducer(bootstrap_servers=site.kafka_bootstrap)
        for m in messages:  # the receiver's copy of each message
            producer.send(site.log_topic, json.dumps(m).encode())
        producer.flush()
        producer.close()
        topics = {"log": site.log_topic, "state": site.state_topic, "image": site.image_topic}
        standin = RoutineLoadStandIn(
            site.kafka_bootstrap, owner_url, topics, f"{site.consumer_group}_standin"
        ).start()
    try:
        results, verification = _run_all(site, counts)
    finally:
        if standin is not None:
            standin.stop()

    assert all(r.success for r in results)
    n = len(messages)
    series = {(m["study_uid"], m["series_uid"]) for m in messages}
    tables = dump_tables(dataclasses.replace(site, doris_url=settings.doris_url))
    # every message accepted, none dead-lettered, exact counts everywhere
    assert tables["postgres.dicom_ingest_error"] == []
    assert consume_all(site.kafka_bootstrap, site.dlq_topic, timeout_s=2) == []
    for backend in ("postgres", "doris"):
        assert len(tables[f"{backend}.dicom_object_meta"]) == n, backend
        assert len(tables[f"{backend}.dicom_image_meta"]) == n, backend
        assert len(tables[f"{backend}.dicom_state_meta"]) == len(series), backend

    # transcoded files carry the target syntax and parse, pixels included
    for m in messages:
        if m["transfer_status"] == "NeedTransfer":
            ds = pydicom.dcmread(m["file_path"])
            assert ds.file_meta.TransferSyntaxUID == TARGET
            assert ds.pixel_array.size > 0

    # topics: keys are upstream's MD5s, computed here from the messages
    state = consume_all(site.kafka_bootstrap, site.state_topic)
    image = consume_all(site.kafka_bootstrap, site.image_topic)
    want_image_keys = {
        _md5(m["tenant_id"], m["patient_id"], m["study_uid"], m["series_uid"], m["sop_uid"])
        for m in messages
    }
    assert {r.key.decode() for r in image} == want_image_keys
    want_state_keys = {
        _md5(m["tenant_id"], m["patient_id"], m["study_uid"], m["series_uid"]) for m in messages
    }
    assert {r.key.decode() for r in state} == want_state_keys
    # the rows describe the files as they now are on disk
    path_of = {m["sop_uid"]: Path(m["file_path"]) for m in messages}
    for r in image:
        row = json.loads(r.value)
        assert row["pixel_data_location"] is None and row["image_status"] == "ACTIVE"
        on_disk = path_of[row["sop_uid"]]
        assert row["space_size"] == on_disk.stat().st_size
        assert row["transfer_syntax_uid"] == str(
            pydicom.dcmread(on_disk, stop_before_pixels=True).file_meta.TransferSyntaxUID
        )
    # the object rows keep each message as received (its size and syntax, not the file's)
    for row in tables["postgres.dicom_object_meta"]:
        sent = originals[row[0]]
        assert (row[7], row[9]) == (sent["file_size"], sent["transfer_syntax_uid"])
    # accession numbers: absent -> null, present but empty -> "", over 16 -> cut to 16,
    # in the table and on the state topic alike
    columns = S.STATE_META.for_backend("postgres").column_names
    pg_states = [
        dict(zip(columns, row, strict=True)) for row in tables["postgres.dicom_state_meta"]
    ]
    topic_states = [json.loads(r.value) for r in state]
    for k, stored in enumerate(ACCESSION_STORED):
        series_uid = messages[k]["series_uid"]
        (row,) = [r for r in pg_states if r["series_uid"] == series_uid]
        assert row["accession_number"] == stored, k
        published = {r["accession_number"] for r in topic_states if r["series_uid"] == series_uid}
        assert published == {stored}, k

    if load == "routine_load":
        assert standin.loaded["dicom_object_meta"] == n
        doris_keys = [
            e
            for e in verification.get_asset_check_evaluations()
            if e.asset_key.path[0] == "doris" and e.check_name == "batch_keys"
        ]
        assert len(doris_keys) == 3 and all(e.passed for e in doris_keys)


def test_a_missing_column_fails_the_run_once_naming_it(settings, produce, storage_root):
    """A site table without a column the pipeline writes: the run fails before any row,
    with the table and column named, and is not retried row by row."""
    site_postgres_tables(settings)
    engine = create_engine(settings.postgres_url)
    with engine.begin() as conn:
        conn.execute(
            text(f'ALTER TABLE "{settings.postgres_schema}".dicom_image_meta DROP COLUMN width')
        )
        conn.execute(
            text(
                f'ALTER TABLE "{settings.postgres_schema}".dicom_state_meta '
                "ALTER COLUMN modality TYPE integer USING NULL"
            )
        )
    engine.dispose()
    messages = upstream_traffic(storage_root)[:3]
    produce([json.dumps(m).encode() for m in messages], partition=0)
    with instance_for_test() as instance:
        result = run_range(settings, instance, 0, 0, 3, raise_on_error=False)
        failures = [
            e.event_specific_data.error.message
            for e in result.all_events
            if e.event_type_value == "STEP_FAILURE"
        ]
    assert not result.success
    text_ = " ".join(failures)
    assert "dicom_image_meta.width is missing" in text_
    assert "dicom_state_meta.modality is integer" in text_
    assert "PAT-UP" not in text_  # no patient data in the message
    shutil.rmtree(storage_root / TENANT, ignore_errors=True)
