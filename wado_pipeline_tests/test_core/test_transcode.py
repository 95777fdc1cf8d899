"""Transcoding NeedTransfer files: real compressed files from pydicom's test data."""

import hashlib
import shutil

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from wado_pipeline.core.dicom.transcode import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    Transcoding,
    file_syntax,
    transcode_in_place,
)

# One real file per compressed syntax the receiver may mark NeedTransfer.
COMPRESSED = {
    "1.2.840.10008.1.2.4.50": "SC_jpeg_no_color_transform.dcm",  # JPEG baseline
    "1.2.840.10008.1.2.4.70": "JPEG-LL.dcm",  # JPEG lossless
    "1.2.840.10008.1.2.4.80": "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS
    "1.2.840.10008.1.2.4.90": "MR_small_jp2klossless.dcm",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": "JPEG2000.dcm",  # JPEG 2000
    "1.2.840.10008.1.2.5": "MR_small_RLE.dcm",  # RLE lossless
}
UNDECODABLE = "JPEG-lossy.dcm"  # a 12-bit JPEG extended file no maintained decoder reads


def _copy(name, tmp_path):
    src = get_testdata_file(name)
    dst = tmp_path / name
    shutil.copyfile(src, dst)
    return dst


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("syntax,name", sorted(COMPRESSED.items()))
def test_compressed_files_become_explicit_little_endian_with_the_same_pixels(
    syntax, name, tmp_path
):
    path = _copy(name, tmp_path)
    original = pydicom.dcmread(path)
    assert original.file_meta.TransferSyntaxUID == syntax
    expected_pixels = original.pixel_array  # decoded independently of the rewrite
    result = transcode_in_place(str(path), Transcoding())
    assert (result.outcome, result.source_syntax) == ("done", syntax)
    rewritten = pydicom.dcmread(path)
    assert rewritten.file_meta.TransferSyntaxUID == EXPLICIT_VR_LITTLE_ENDIAN
    assert rewritten.SOPInstanceUID == original.SOPInstanceUID
    assert np.array_equal(rewritten.pixel_array, expected_pixels)
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_implicit_target_and_rerun_keeps_the_file(tmp_path):
    path = _copy("MR_small_RLE.dcm", tmp_path)
    policy = Transcoding(target=IMPLICIT_VR_LITTLE_ENDIAN)
    assert transcode_in_place(str(path), policy).outcome == "done"
    assert file_syntax(str(path)) == IMPLICIT_VR_LITTLE_ENDIAN
    before = _digest(path)
    again = transcode_in_place(str(path), policy)
    assert again.outcome == "kept" and _digest(path) == before


def test_a_syntax_the_viewer_displays_is_left_alone(tmp_path):
    path = _copy("MR_small_RLE.dcm", tmp_path)
    before = _digest(path)
    policy = Transcoding(viewer_syntaxes=frozenset({"1.2.840.10008.1.2.5"}))
    assert transcode_in_place(str(path), policy).outcome == "kept"
    assert _digest(path) == before


def test_an_undecodable_file_stays_untouched(tmp_path):
    path = _copy(UNDECODABLE, tmp_path)
    before = _digest(path)
    result = transcode_in_place(str(path), Transcoding())
    assert result.outcome == "failed" and "cannot decode" in result.detail
    assert _digest(path) == before and list(tmp_path.iterdir()) == [path]


def test_a_file_over_the_time_bound_stays_untouched(tmp_path):
    path = _copy("JPEG2000.dcm", tmp_path)
    before = _digest(path)
    result = transcode_in_place(str(path), Transcoding(timeout_s=0.0))
    assert result.outcome == "failed" and "not done within" in result.detail
    assert _digest(path) == before and list(tmp_path.iterdir()) == [path]


def test_the_file_mode_is_kept(tmp_path):
    path = _copy("MR_small_RLE.dcm", tmp_path)
    path.chmod(0o640)
    assert transcode_in_place(str(path), Transcoding()).outcome == "done"
    assert path.stat().st_mode & 0o7777 == 0o640
