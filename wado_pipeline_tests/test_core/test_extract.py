"""Header extraction against real files and against every pitfall, synthesised.

Expected values come from an independent plain pydicom read of the same file with
straightforward conversions written here, not from the code under test.
"""

import json
import math
import os
import subprocess
import sys
from datetime import date, datetime, time
from pathlib import Path

import pydicom
import pytest

from wado_pipeline.bench.synthetic import (
    InstanceSpec,
    build_dataset,
    storage_path,
    store_message,
    write_dataset,
)
from wado_pipeline.cli.main import inspect_file
from wado_pipeline.core.batch_rows import SourceRecord, process_record
from wado_pipeline.core.dicom.extract import extract, parse_header, rest_is_complete
from wado_pipeline.core.message import parse_store_message
from wado_pipeline.core.rejection import Reason, Rejected
from wado_pipeline_tests.corpus import corpus_files

FILES = corpus_files()


# ------------------------------------------------------------- independent reading


def _raw_str(ds, keyword):
    """Absent: None; present but empty: "" (upstream's convention)."""
    if keyword not in ds:
        return None
    v = ds[keyword].value
    if v is None or v == "":
        return ""
    if isinstance(v, list | pydicom.multival.MultiValue):
        return "\\".join(str(x).strip() for x in v)
    return str(v).strip().replace("\x00", "")


def _exp_date(ds, keyword):
    s = _raw_str(ds, keyword)
    if not s:
        return None
    s = s.replace(".", "") if len(s) == 10 and s[4] == "." else s
    try:
        return datetime.strptime(s, "%Y%m%d").date() if len(s) == 8 else None
    except ValueError:
        return None


def _exp_time(ds, keyword):
    s = _raw_str(ds, keyword)
    if not s:
        return None
    s = s.replace(":", "") if ":" in s and len(s) >= 5 else s
    main, _, frac = s.partition(".")
    if not main.isdigit() or len(main) not in (2, 4, 6) or len(frac) > 6:
        return None
    if frac and not frac.isdigit():
        return None
    parts = [int(main[i : i + 2]) for i in range(0, len(main), 2)] + [0, 0]
    try:
        return time(parts[0], parts[1], parts[2], int(frac.ljust(6, "0")) if frac else 0)
    except ValueError:
        return None


def _exp_float(ds, keyword):
    s = _raw_str(ds, keyword)
    if not s or "\\" in s:
        return None
    try:
        x = float(s)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def _exp_int(ds, keyword):
    s = _raw_str(ds, keyword)
    try:
        n = int(s)
    except (TypeError, ValueError):
        return None
    return n if -(2**31) <= n < 2**31 else None


def _exp_us(ds, keyword):
    if keyword not in ds or ds[keyword].value in (None, b"", ""):
        return None
    v = ds[keyword].value
    return int(v[0] if isinstance(v, list | pydicom.multival.MultiValue) else v)


def _fg(ds, macro, keyword):
    """Value from Shared, then first Per-frame functional group, if not at top level."""
    if keyword in ds:
        return ds
    for seq in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        if seq in ds and len(ds[seq].value) and macro in ds[seq][0]:
            item = ds[seq][0][macro][0]
            if keyword in item:
                return item
    return ds


def _readable(path: Path):
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:
        return None
    return ds


CORPUS_RESULTS = [(f, inspect_file(f, "tenant")) for f in FILES]
ACCEPTED = [(f, r) for f, r in CORPUS_RESULTS if "state" in r]


def test_corpus_is_large_and_mostly_accepted():
    assert len(FILES) >= 150
    assert len(ACCEPTED) >= 90


@pytest.mark.parametrize("path,result", ACCEPTED, ids=[f.name for f, _ in ACCEPTED])
def test_corpus_values_equal_independent_read(path, result):
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    state, image = result["state"], result["image"]
    # required
    assert state["patient_id"] == _raw_str(ds, "PatientID")
    assert image["study_uid"] == _raw_str(ds, "StudyInstanceUID")
    assert image["series_uid"] == _raw_str(ds, "SeriesInstanceUID")
    assert image["sop_uid"] == _raw_str(ds, "SOPInstanceUID")
    assert image["sop_class_uid"] == _raw_str(ds, "SOPClassUID")
    assert state["study_date"] == _exp_date(ds, "StudyDate")
    # optional: text
    for column, keyword in [
        ("patient_sex", "PatientSex"),
        ("modality", "Modality"),
        ("study_description", "StudyDescription"),
        ("body_part_examined", "BodyPartExamined"),
        ("protocol_name", "ProtocolName"),
    ]:
        expected = _raw_str(ds, keyword)
        if expected is not None and len(expected.encode()) > 64:
            continue  # cut to fit: covered by the synthetic tests
        assert state[column] == expected, column
    name = _raw_str(ds, "PatientName")
    if name is not None and len(name.encode()) <= 64:
        assert state["patient_name"] == name
    assert image["image_type"] == _raw_str(ds, "ImageType")
    assert image["photometric_interpretation"] == _raw_str(ds, "PhotometricInterpretation")
    # dates and times
    for column, keyword in [
        ("patient_birth_date", "PatientBirthDate"),
        ("series_date", "SeriesDate"),
    ]:
        assert state[column] == _exp_date(ds, keyword), column
    assert image["content_date"] == _exp_date(ds, "ContentDate")
    for column, keyword in [("study_time", "StudyTime"), ("series_time", "SeriesTime")]:
        assert state[column] == _exp_time(ds, keyword), column
    assert image["content_time"] == _exp_time(ds, "ContentTime")
    # numbers
    assert state["series_number"] == _exp_int(ds, "SeriesNumber")
    assert image["instance_number"] == _exp_int(ds, "InstanceNumber")
    assert state["patient_weight"] == _exp_float(ds, "PatientWeight")
    assert image["slice_location"] == _exp_float(ds, "SliceLocation")
    assert image["width"] == _exp_us(ds, "Rows")  # upstream quirk: width = Rows
    assert image["columns"] == _exp_us(ds, "Columns")
    assert image["bits_allocated"] == _exp_us(ds, "BitsAllocated")
    assert image["samples_per_pixel"] == _exp_us(ds, "SamplesPerPixel")
    # functional-group aware
    src = _fg(ds, "PixelMeasuresSequence", "SliceThickness")
    assert image["slice_thickness"] == _exp_float(src, "SliceThickness")
    src = _fg(ds, "PlanePositionSequence", "ImagePositionPatient")
    pos = _raw_str(src, "ImagePositionPatient")
    if pos is not None and all(_is_number(p) for p in pos.split("\\")):
        assert image["image_position_patient"] == pos
    src = _fg(ds, "PixelValueTransformationSequence", "RescaleSlope")
    assert image["rescale_slope"] == _exp_float(src, "RescaleSlope")
    src = _fg(ds, "FrameVOILUTSequence", "WindowCenter")
    wc = _raw_str(src, "WindowCenter")
    if wc is not None and all(_is_number(p) for p in wc.split("\\")):
        assert image["window_center"] == wc
    assert image["transfer_syntax_uid"] == str(ds.file_meta.TransferSyntaxUID)
    assert state["study_uid_hash"] == image["study_uid_hash"] and len(image["study_uid_hash"]) == 20


def _is_number(s):
    try:
        return math.isfinite(float(s))
    except ValueError:
        return False


def test_rejected_corpus_files_are_really_unusable():
    """Each corpus rejection is confirmed by an independent reason."""
    required = [
        "PatientID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "SOPClassUID",
        "StudyDate",
    ]
    for path, result in CORPUS_RESULTS:
        if "rejected" not in result:
            continue
        reason = result["rejected"]["reason"]
        ds = _readable(path)
        if reason in ("not_dicom", "header_unreadable"):
            with open(path, "rb") as fh:
                head = fh.read(132)
            assert ds is None or head[128:132] != b"DICM", path.name
        elif reason == "missing_required":
            assert any(not _raw_str(ds, k) for k in required), path.name
        elif reason == "bad_required":
            assert _exp_date(ds, "StudyDate") is None or any(
                len(_raw_str(ds, k) or "") > 64 for k in required
            ), path.name
        elif reason == "truncated":  # a header value runs past the end of the file
            assert path.stat().st_size < 4096, path.name
        else:
            assert reason == "file_unreadable", (path.name, reason)


def test_charset_files_decode_like_pydicom(tmp_path):
    """Japanese, Korean, Chinese, Latin-1, Greek, Arabic… names decode as pydicom does.

    pydicom's charset samples carry only a name, so the required attributes are
    added before the file goes through the pipeline's code path."""
    names = {}
    for path in FILES:
        if "charset_files" not in str(path):
            continue
        ds = pydicom.dcmread(path)
        if "PatientName" not in ds:
            continue
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            if keyword not in ds:
                setattr(ds, keyword, "1.2.3.4")
        ds.SOPClassUID = ds.get("SOPClassUID") or "1.2.840.10008.5.1.4.1.1.7"
        ds.StudyDate = "20240101"
        ds.PatientID = ds.get("PatientID") or "P1"
        for keyword in ("Rows", "Columns"):  # samples without pixel data
            if keyword in ds and "PixelData" not in ds:
                delattr(ds, keyword)
        out_path = tmp_path / path.name
        ds.save_as(out_path, enforce_file_format=True)
        result = inspect_file(out_path, "t")
        assert "state" in result, (path.name, result)
        expected = str(ds.PatientName)
        if len(expected.encode()) <= 64:
            assert result["state"]["patient_name"] == expected, path.name
        names[path.name] = result["state"]["patient_name"]
    assert len(names) >= 15
    joined = " ".join(n or "" for n in names.values())
    for fragment in ("山田", "김희중", "Buc^Jérôme", "Διονυσιος", "Люкceмбypг", "王^小东"):
        assert fragment in joined, fragment


def test_enhanced_multiframe_takes_functional_groups():
    hits = 0
    for path, result in ACCEPTED:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if "SharedFunctionalGroupsSequence" in ds and "PixelSpacing" not in ds:
            src = _fg(ds, "PixelMeasuresSequence", "SliceThickness")
            if src is not ds:
                hits += 1
                assert result["image"]["slice_thickness"] == float(src.SliceThickness)
    assert hits >= 1


def test_inspect_cli_jsonl_and_exit_codes(tmp_path):
    good = [str(p) for p, _ in ACCEPTED[:3]]
    env = {**os.environ}
    run = subprocess.run(
        [sys.executable, "-m", "wado_pipeline.cli", "inspect", *good, "--tenant", "T"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [x["file"] for x in lines] == good
    assert all(x["state"]["tenant_id"] == "T" for x in lines)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"hello")
    run = subprocess.run(
        [sys.executable, "-m", "wado_pipeline.cli", "inspect", good[0], str(junk)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1
    assert json.loads(run.stdout.splitlines()[1])["rejected"]["reason"] == "not_dicom"
    run = subprocess.run(
        [sys.executable, "-m", "wado_pipeline.cli", "inspect"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2


def test_inspect_is_stable_across_runs():
    path = ACCEPTED[0][0]
    assert inspect_file(path, "x") == inspect_file(path, "x")


# ------------------------------------------------------------- synthetic pitfalls


def make_file(root: Path, spec: InstanceSpec, tenant="T1", **msg_changes):
    ds = build_dataset(spec)
    path = storage_path(root, tenant, spec)
    write_dataset(ds, path)
    msg = store_message(path, ds, tenant, created_time=datetime(2025, 1, 2, 3, 4, 5))
    msg.update(msg_changes)
    return path, msg


def run_one(root: Path, msg: dict):
    return extract(parse_store_message(json.dumps(msg).encode()), [root])


def rejection(root: Path, msg: dict) -> Reason:
    with pytest.raises(Rejected) as info:
        run_one(root, msg)
    return info.value.rejection.reason


def test_realistic_synthetic_instance(tmp_path):
    spec = InstanceSpec(patient_name="Yamada^Tarou=山田^太郎", instance_number=7)
    path, msg = make_file(tmp_path, spec)
    out = run_one(tmp_path, msg)
    assert out.warnings == []
    assert out.state["patient_name"] == "Yamada^Tarou=山田^太郎"
    assert out.state["study_time"] == time(8, 30, 15, 250000)
    assert out.state["patient_birth_date"] == date(1970, 1, 1)
    assert out.image["instance_number"] == 7
    assert out.image["window_center"] == "40\\400"
    assert out.image["image_position_patient"] == "-125.000000\\-125.000000\\-91.250000"
    assert out.image["space_size"] == path.stat().st_size
    assert out.image["image_status"] == "ACTIVE"  # upstream's value in every image row
    assert out.image["pixel_data_location"] is None  # as upstream: never set


def test_latin1_charset(tmp_path):
    spec = InstanceSpec(patient_name="Müller^Jürgen", charset="ISO_IR 100")
    _, msg = make_file(tmp_path, spec)
    assert run_one(tmp_path, msg).state["patient_name"] == "Müller^Jürgen"


@pytest.mark.parametrize(
    "tag,vr,raw,column,table",
    [
        ((0x0010, 0x0030), "DA", b"20241301", "patient_birth_date", "state"),
        ((0x0008, 0x0030), "TM", b"240000", "study_time", "state"),
        ((0x0008, 0x0030), "TM", b"083015.1234567 ", "study_time", "state"),
        ((0x0020, 0x0013), "IS", b"9999999999", "instance_number", "image"),
        ((0x0010, 0x1030), "DS", b"72kg", "patient_weight", "state"),
        ((0x0010, 0x1030), "DS", b"1,5 ", "patient_weight", "state"),
        ((0x0018, 0x0050), "DS", b"nan ", "slice_thickness", "image"),
        ((0x0018, 0x0050), "DS", b"inf ", "slice_thickness", "image"),
        ((0x0028, 0x1050), "DS", b"40\\NaN", "window_center", "image"),
    ],
)
def test_bad_optional_values_become_null_with_warning(tmp_path, tag, vr, raw, column, table):
    _, msg = make_file(tmp_path, InstanceSpec(raw={tag: (vr, raw)}))
    out = run_one(tmp_path, msg)
    assert getattr(out, table)[column] is None
    assert any(w.startswith(column + ":") for w in out.warnings)
    # no value in warnings: they are safe to log
    assert not any(raw.decode().strip() in w for w in out.warnings if raw.strip())


def test_nul_characters_removed(tmp_path):
    spec = InstanceSpec(raw={(0x0008, 0x103E): ("LO", b"HEAD\x00 CT\x00\x00")})
    _, msg = make_file(tmp_path, spec)
    assert run_one(tmp_path, msg).state["series_description"] == "HEAD CT"


def test_overlong_text_cut_at_character_boundary(tmp_path):
    spec = InstanceSpec(
        patient_name="山" * 64,
        raw={(0x0008, 0x103E): ("LO", ("é" * 300).encode())},
    )
    _, msg = make_file(tmp_path, spec)
    out = run_one(tmp_path, msg)
    assert out.state["patient_name"] == "山" * 21  # 63 bytes <= 64
    assert out.state["series_description"] == "é" * 128  # 256 bytes
    assert {"patient_name: cut to 64 bytes", "series_description: cut to 256 bytes"} <= set(
        out.warnings
    )


@pytest.mark.parametrize(
    "keyword",
    [
        "PatientID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "SOPClassUID",
        "StudyDate",
    ],
)
def test_missing_required_rejects(tmp_path, keyword):
    spec = InstanceSpec(remove=(keyword,))
    _, msg = make_file(
        tmp_path,
        spec,
        study_uid=spec.study_uid,
        series_uid=spec.series_uid,
        sop_uid=spec.sop_uid,
        study_date="2024-01-15",
    )
    assert rejection(tmp_path, msg) == Reason.MISSING_REQUIRED


def test_bad_required_values_reject(tmp_path):
    spec = InstanceSpec(raw={(0x0008, 0x0020): ("DA", b"20240230")})
    _, msg = make_file(tmp_path, spec, study_date="2024-02-28")
    assert rejection(tmp_path, msg) == Reason.BAD_REQUIRED
    spec = InstanceSpec(raw={(0x0010, 0x0020): ("LO", b"P" * 70)})
    _, msg = make_file(tmp_path, spec, patient_id="P1")
    assert rejection(tmp_path, msg) == Reason.BAD_REQUIRED


def test_uid_mismatch(tmp_path):
    _, msg = make_file(tmp_path, InstanceSpec(), sop_uid="1.2.3.999")
    assert rejection(tmp_path, msg) == Reason.UID_MISMATCH


def test_size_mismatch_of_a_file_cut_in_its_pixel_data(tmp_path):
    path, msg = make_file(tmp_path, InstanceSpec())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])  # the message still names the whole file
    assert rejection(tmp_path, msg) == Reason.SIZE_MISMATCH


def test_an_instance_received_again_replaces_the_file_and_is_no_error(tmp_path):
    """The receiver overwrites the file when the same SOP instance is sent again, maybe
    in another syntax: the earlier message names a file of another size."""
    path, first = make_file(tmp_path, InstanceSpec(rows=64))
    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData + ds.PixelData  # a later, larger receipt of one instance
    ds.Rows = ds.Rows * 2
    ds.save_as(path, enforce_file_format=True)
    out = run_one(tmp_path, first)
    assert out.image["space_size"] == path.stat().st_size != first["file_size"]
    assert out.image["width"] == 128  # the file as it is now (width holds Rows)
    assert [w.split(":")[0] for w in out.warnings] == ["file_replaced"]
    # ... but a file of another instance at that path is still refused
    other, _ = make_file(tmp_path / "other", InstanceSpec(sop_uid="1.2.3.999"))
    path.write_bytes(other.read_bytes())
    assert rejection(tmp_path, first) == Reason.UID_MISMATCH


def _complete(path: Path) -> bool:
    """What ``extract`` concludes of a file: its header parses whole, and the rest too."""
    size = path.stat().st_size
    with open(path, "rb") as fp:
        try:
            ds = parse_header(fp, size)
        except Rejected:
            return False
        return rest_is_complete(fp, size, ds)


def _pixel_files() -> list[Path]:
    out = []
    for p in FILES:
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
        except Exception:
            continue
        with open(p, "rb") as fp:
            pydicom.dcmread(fp, stop_before_pixels=True)
            at = fp.tell()
        if at < p.stat().st_size and ds.file_meta.get("TransferSyntaxUID") != (
            "1.2.840.10008.1.2.1.99"
        ):
            out.append(p)
    return out


PIXEL_FILES = _pixel_files()


@pytest.mark.parametrize("path", PIXEL_FILES, ids=lambda p: p.name)
def test_completeness_over_the_corpus(path, tmp_path):
    """Every shipped file with pixel data is whole; cut anywhere in what follows its
    header (the truth: the cut itself), it is not."""
    with open(path, "rb") as fp:
        pydicom.dcmread(fp, stop_before_pixels=True)
        header_end = fp.tell()
    size = path.stat().st_size
    if path.name in ("MR_truncated.dcm", "emri_small_jpeg_2k_lossless_too_short.dcm"):
        # shipped cut short, as their names say
        assert not _complete(path)
        return
    assert _complete(path)
    cut = tmp_path / path.name
    data = path.read_bytes()
    # A cut inside the first element's own header is the header parser's to see (or
    # invisible: pydicom ends silently there); cuts from 12 bytes past it are this one's.
    for at in sorted({header_end + 12, (header_end + size) // 2, size - 1}):
        if header_end + 12 <= at < size:
            cut.write_bytes(data[:at])
            assert not _complete(cut), at


def test_truncated_header(tmp_path):
    path, msg = make_file(tmp_path, InstanceSpec())
    independent = pydicom.dcmread(path, stop_before_pixels=True)
    cut = independent.get_item(0x00100010).value_tell + 3  # inside PatientName's value
    path.write_bytes(path.read_bytes()[:cut])
    msg["file_size"] = cut
    assert rejection(tmp_path, msg) == Reason.TRUNCATED
    # cut between the header and the pixel data: the message names the whole file
    path2, msg2 = make_file(tmp_path, InstanceSpec())
    pixel_tag_at = path2.read_bytes().index(b"\xe0\x7f\x10\x00")
    path2.write_bytes(path2.read_bytes()[:pixel_tag_at])
    assert rejection(tmp_path, msg2) == Reason.SIZE_MISMATCH
    # ... while a file the receiver stored that way, whole, is taken as upstream takes
    # it (pydicom's charset samples are image headers without pixel data)
    msg2["file_size"] = pixel_tag_at
    assert run_one(tmp_path, msg2).image["width"] == 128


def test_not_dicom(tmp_path):
    path = tmp_path / "T1" / "x.dcm"
    path.parent.mkdir()
    path.write_bytes(b"%PDF-1.4 not an image" * 10)
    _, msg = make_file(tmp_path, InstanceSpec())
    msg.update(file_path=str(path), file_size=path.stat().st_size)
    assert rejection(tmp_path, msg) == Reason.NOT_DICOM


def test_file_missing(tmp_path):
    path, msg = make_file(tmp_path, InstanceSpec())
    path.unlink()
    assert rejection(tmp_path, msg) == Reason.FILE_MISSING


def test_path_outside_roots(tmp_path):
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    path, msg = make_file(outside, InstanceSpec())
    # plainly outside
    assert rejection(root, msg) == Reason.PATH_OUTSIDE_ROOT
    # via ..
    root.mkdir()
    msg_dots = {**msg, "file_path": str(root / ".." / path.relative_to(tmp_path))}
    assert rejection(root, msg_dots) == Reason.PATH_OUTSIDE_ROOT
    # via a symlink inside the root pointing out
    link = root / "link.dcm"
    link.symlink_to(path)
    assert rejection(root, {**msg, "file_path": str(link)}) == Reason.PATH_OUTSIDE_ROOT
    # relative path
    assert rejection(root, {**msg, "file_path": "x.dcm"}) == Reason.PATH_OUTSIDE_ROOT


def test_process_record_never_raises_on_bad_input(tmp_path):
    for value in (b"", b"{}", b"\x00\x01", b"[]", b"null", b'{"trace_id": 5}'):
        out = process_record(SourceRecord(0, 1, value), [tmp_path])
        assert out.reason in set(Reason)


def test_core_imports_no_infrastructure():
    code = (
        "import sys, wado_pipeline.core.batch_rows, wado_pipeline.core.dicom.parallel, "
        "wado_pipeline.core.planning, wado_pipeline.core.topic_json, "
        "wado_pipeline.bench.synthetic\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('dagster', 'kafka', 'sqlalchemy', 'psycopg2', 'pymysql')]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
