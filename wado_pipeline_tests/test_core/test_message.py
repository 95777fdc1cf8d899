import json
from datetime import date, datetime

import pytest

from wado_pipeline.core.message import parse_store_message
from wado_pipeline.core.rejection import Reason, Rejected

VALID = {
    "trace_id": "2f1e4b1e-8d5c-4c9a-9c55-0d8f7b9b1a11",
    "worker_node_id": "node-1",
    "tenant_id": "1234566",
    "patient_id": "PAT1",
    "study_uid": "1.2.3",
    "series_uid": "1.2.3.4",
    "sop_uid": "1.2.3.4.5",
    "file_size": 1024,
    "file_path": "/var/lib/wado/storage/x.dcm",
    "transfer_syntax_uid": "1.2.840.10008.1.2.1",
    "number_of_frames": 1,
    "created_time": "2025-11-23T10:11:12.123456",
    "series_uid_hash": "00000000000000000001",
    "study_uid_hash": "00000000000000000002",
    "accession_number": "ACC1",
    "target_ts": "1.2.840.10008.1.2.1",
    "study_date": "2025-11-23",
    "transfer_status": "NoNeedTransfer",
    "source_ip": "10.0.0.1",
    "source_ae": "CT1",
}


def encode(**changes) -> bytes:
    obj = {**VALID, **changes}
    for k, v in list(obj.items()):
        if v is ...:
            del obj[k]
    return json.dumps(obj).encode()


def reason_of(value: bytes) -> Reason:
    with pytest.raises(Rejected) as info:
        parse_store_message(value)
    return info.value.rejection.reason


def test_valid_message():
    msg = parse_store_message(encode(extra_field="ignored"))
    assert msg.tenant_id == "1234566"
    assert msg.created_time == datetime(2025, 11, 23, 10, 11, 12, 123456)
    assert msg.study_date == date(2025, 11, 23)
    assert msg.file_size == 1024


@pytest.mark.parametrize(
    "text,micro",
    [
        ("2025-11-23T10:11:12", 0),
        ("2025-11-23T10:11:12.1", 100000),
        ("2025-11-23T10:11:12.123456789", 123456),
        ("2025-11-23 10:11:12.5", 500000),
    ],
)
def test_created_time_fraction_digits(text, micro):
    assert parse_store_message(encode(created_time=text)).created_time.microsecond == micro


def test_both_study_date_spellings():
    assert parse_store_message(encode(study_date="20251123")).study_date == date(2025, 11, 23)


@pytest.mark.parametrize(
    "value,reason",
    [
        (b"not json", Reason.BAD_JSON),
        (b"\xff\xfe", Reason.BAD_JSON),
        (None, Reason.BAD_JSON),
        (b"[1,2]", Reason.NOT_OBJECT),
        (encode(sop_uid=...), Reason.MISSING_FIELD),
        (encode(file_size="1024"), Reason.BAD_TYPE),
        (encode(file_size=True), Reason.BAD_TYPE),
        (encode(patient_id=None), Reason.BAD_TYPE),
        (encode(number_of_frames=2**31), Reason.BAD_VALUE),
        (encode(patient_id="P" * 65), Reason.TOO_LONG),
        (encode(trace_id="x" * 37), Reason.TOO_LONG),
        (encode(study_date="2025-13-01"), Reason.BAD_DATE),
        (encode(study_date="23/11/2025"), Reason.BAD_DATE),
        (encode(created_time="2025-11-23T25:00:00"), Reason.BAD_DATE),
        (encode(created_time="2025-11-23T10:11:12Z"), Reason.BAD_DATE),
        (encode(transfer_status="Maybe"), Reason.BAD_ENUM),
        (encode(sop_uid=""), Reason.BAD_VALUE),
        (encode(accession_number="A\x00B"), Reason.BAD_VALUE),
    ],
)
def test_rejections(value, reason):
    assert reason_of(value) == reason


@pytest.mark.parametrize("value,expected", [(None, None), (..., None), ("", ""), ("A1", "A1")])
def test_accession_number_may_be_null_absent_or_empty(value, expected):
    """The receiver sends null when the tag is absent or longer than 16 (upstream.md)."""
    assert parse_store_message(encode(accession_number=value)).accession_number == expected


def test_all_four_receiver_statuses_are_accepted():
    statuses = ["NoNeedTransfer", "Success", "Failed", "NeedTransfer"]
    got = [parse_store_message(encode(transfer_status=s)).transfer_status for s in statuses]
    assert got == statuses


@pytest.mark.parametrize(
    "field,limit", [("worker_node_id", 64), ("source_ae", 64), ("target_ts", 64), ("source_ip", 24)]
)
def test_non_key_fields_over_their_limit_are_accepted_for_cutting(field, limit):
    """Only key fields reject for length; the object row cuts the rest (test_batch)."""
    msg = parse_store_message(encode(**{field: "v" * (limit + 10)}))
    assert getattr(msg, field) == "v" * (limit + 10)
