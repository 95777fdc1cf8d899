"""Stream Load contract test.

Runs the writer against ``doris_protocol.DorisProtocolServer``, a test double that
follows the documented Doris Stream Load protocol (FE→BE redirect, label registry,
statuses). It proves our side of the protocol; it is not a Doris server.
"""

from datetime import datetime

import pytest

from wado_pipeline.core import schema as S
from wado_pipeline.core.planning import OffsetRange
from wado_pipeline.resources.doris import DorisStreamLoadResource
from wado_pipeline.resources.stream_load import (
    ALREADY,
    DONE,
    StreamLoader,
    StreamLoadError,
    encode_rows,
    make_label,
)
from wado_pipeline_tests.doris_protocol import PATIENT_VALUES, DorisProtocolServer


def rows(n=3):
    out = []
    for i in range(n):
        r = dict.fromkeys(S.OBJECT_META.column_names)
        r.update(
            trace_id=f"t{i}",
            tenant_id="T",
            patient_id="P",
            study_uid="1",
            series_uid="1.1",
            sop_uid=f"1.1.{i}",
            created_time=datetime(2025, 1, 2, 3, 4, 5, 6),
        )
        out.append(r)
    return out


@pytest.fixture
def doris_http():
    with DorisProtocolServer() as server:
        yield server


def loader(server, **kw):
    return StreamLoader(server.fe_url, "wado", "wado", "wado", backoff_seconds=0.01, **kw)


def test_redirect_keeps_credentials_and_loads(doris_http):
    result = loader(doris_http).load(S.OBJECT_META, rows(), "L1")
    assert (result.outcome, result.status, result.rows) == (DONE, "Success", 3)
    fe, be = doris_http.state.requests
    assert fe["role"] == "fe" and be["role"] == "be" and be["auth_ok"]
    assert be["path"] == "/api/wado/dicom_object_meta/_stream_load"
    assert be["columns"].startswith("`trace_id`, `worker_node_id`")
    loaded = doris_http.state.rows["dicom_object_meta"]
    assert [r["trace_id"] for r in loaded] == ["t0", "t1", "t2"]
    assert loaded[0]["created_time"] == "2025-01-02 03:04:05.000006"


def test_wrong_credentials_fail(doris_http):
    bad = StreamLoader(doris_http.fe_url, "wado", "wado", "nope", attempts=1)
    with pytest.raises(StreamLoadError):
        bad.load(S.OBJECT_META, rows(), "L1")
    assert doris_http.state.rows == {}


def test_publish_timeout_counts_as_done(doris_http):
    doris_http.state.scenario = ["publish_timeout"]
    assert loader(doris_http).load(S.OBJECT_META, rows(), "L2").outcome == DONE


def test_label_already_finished_is_already_loaded(doris_http):
    first = loader(doris_http).load(S.OBJECT_META, rows(), "L3")
    again = loader(doris_http).load(S.OBJECT_META, rows(), "L3")
    assert (first.outcome, again.outcome) == (DONE, ALREADY)
    assert len(doris_http.state.rows["dicom_object_meta"]) == 3


def test_label_running_waits_then_finished(doris_http):
    doris_http.state.scenario = ["running"]
    result = loader(doris_http).load(S.OBJECT_META, rows(), "L4")
    assert result.outcome == ALREADY
    assert doris_http.state.running_polls == 2
    assert len(doris_http.state.rows["dicom_object_meta"]) == 3


def test_fail_raises_with_the_error_pages_reasons_and_no_source_values(doris_http):
    """The reasons reach the run's failure text; the rows Doris quotes (patient data)
    do not."""
    doris_http.state.scenario = ["fail"]
    with pytest.raises(StreamLoadError, match="study_date` is not a date") as failed:
        loader(doris_http).load(S.OBJECT_META, rows(), "L5")
    text = str(failed.value)
    assert "patient_name" in text and "2 error line(s)" in text
    assert not [v for v in PATIENT_VALUES if v in text], text
    assert doris_http.state.rows == {}


def test_lost_response_retry_uses_same_label_and_loads_once(doris_http):
    doris_http.state.scenario = ["drop_response"]
    result = loader(doris_http).load(S.OBJECT_META, rows(), "L6")
    assert result.outcome == ALREADY
    labels = [r["label"] for r in doris_http.state.requests if r["role"] == "be"]
    assert labels == ["L6", "L6"]
    assert len(doris_http.state.rows["dicom_object_meta"]) == 3


def test_label_is_deterministic_and_valid():
    body = encode_rows(S.OBJECT_META, rows())
    a = make_label("dicom_object_meta", "storage.queue", 2, 100, 150, body)
    assert a == make_label("dicom_object_meta", "storage.queue", 2, 100, 150, body)
    assert a != make_label("dicom_object_meta", "storage.queue", 2, 100, 151, body)
    assert a != make_label("dicom_object_meta", "storage.queue", 2, 100, 150, body + b" ")
    assert len(a) <= 128 and set(a) <= set(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-:"
    )


def test_rerun_of_a_batch_loads_nothing_twice(doris_http):
    res = DorisStreamLoadResource(
        url="mysql+pymysql://wado:wado@127.0.0.1:3306/wado", http_url=doris_http.fe_url
    )
    batch = {"dicom_object_meta": rows(5), "dicom_state_meta": [], "dicom_image_meta": []}
    rng = OffsetRange("storage_queue", 0, 0, 5)
    first = res.stream_load_batch(batch, rng)
    second = res.stream_load_batch(batch, rng)
    assert res.write_batch(batch, rng) == {  # the ops' interface: loads once, counts rows
        "dicom_object_meta": 5,
        "dicom_state_meta": 0,
        "dicom_image_meta": 0,
    }
    assert first["dicom_object_meta"].outcome == DONE
    assert second["dicom_object_meta"].outcome == ALREADY
    assert first["dicom_object_meta"].label == second["dicom_object_meta"].label
    assert len(doris_http.state.rows["dicom_object_meta"]) == 5
