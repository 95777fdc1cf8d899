"""Dead letters: headers, cutting to fit, and a lossless payload for the error table."""

import base64

from wado_pipeline.core.batch_rows import RejectedRecord
from wado_pipeline.core.dead_letter import (
    HEADER_OFFSET,
    HEADER_REASON,
    HEADER_TRUNCATED_FROM,
    dead_letter,
    payload_for_table,
)
from wado_pipeline.core.rejection import Reason


def _rejected(payload: bytes | None, detail: str = "field x is bad") -> RejectedRecord:
    return RejectedRecord(2, 447, Reason.BAD_TYPE, detail, None, payload)


def test_headers_name_reason_and_source():
    dl = dead_letter(_rejected(b"{}"), "storage_queue", "run-1")
    headers = dict(dl.headers)
    assert dl.key == b"storage_queue:2:447"
    assert headers[HEADER_REASON] == b"bad_type" and headers[HEADER_OFFSET] == b"447"
    assert HEADER_TRUNCATED_FROM not in headers and dl.value == b"{}"


def test_cut_to_records_the_original_length():
    dl = dead_letter(_rejected(b"x" * 1000), "s", "r").cut_to(100)
    assert dl.value == b"x" * 100
    assert dict(dl.headers)[HEADER_TRUNCATED_FROM] == b"1000"
    small = dead_letter(_rejected(b"x" * 10), "s", "r")
    assert small.cut_to(100) is small


def test_detail_header_is_bounded():
    dl = dead_letter(_rejected(b"{}", detail="d" * 5000), "s", "r")
    assert len(dict(dl.headers)["wado.detail"]) == 1024


def test_payload_for_table_is_lossless():
    assert payload_for_table(None) == (None, None)
    assert payload_for_table('{"name": "Müller"}'.encode()) == ('{"name": "Müller"}', "utf-8")
    for raw in (b"\xff\xfe\x00bad", b"a\x00b"):
        text, enc = payload_for_table(raw)
        assert enc == "base64" and base64.b64decode(text) == raw


def test_masked_dead_letter_hides_identifying_fields_only():
    import json

    from wado_pipeline.core.dead_letter import IDENTIFYING_FIELDS, MASK, masked

    message = {name: f"value-of-{name}" for name in IDENTIFYING_FIELDS}
    message.update(trace_id="t-9", tenant_id="T1", transfer_status="Success")
    dl = masked(dead_letter(_rejected(json.dumps(message).encode()), "s", "r"))
    out = json.loads(dl.value)
    assert {k for k, v in out.items() if v == MASK} == set(IDENTIFYING_FIELDS)
    assert (out["trace_id"], out["tenant_id"]) == ("t-9", "T1")
    assert dict(dl.headers)["wado.masked"] == b"fields"
    for raw in (b"\xff not json", b"[1, 2]", None):
        omitted = masked(dead_letter(_rejected(raw), "s", "r"))
        assert omitted.value is None and dict(omitted.headers)["wado.masked"] == b"value-omitted"
