"""Header extraction: from a stored DICOM file to the state and image records.

Only the header is read (``stop_before_pixels``). Values are taken raw from the
dataset and converted by ``values``: six attributes are required and reject the
file when missing or invalid; every other attribute becomes ``None`` with a
warning when it cannot be used. Warnings name the column and the problem, never
the value, so they are safe to log.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.tag import Tag

from wado_pipeline.core import values as V
from wado_pipeline.core.message import StoreMessage
from wado_pipeline.core.rejection import Reason, Rejected
from wado_pipeline.core.schema import IMAGE_META, STATE_META, Table
from wado_pipeline.core.seahash import uid_hash

UID_MAX = 64

# Tags, written once here. Functional-group macros: (macro sequence, attribute).
T_PATIENT_ID = Tag(0x0010, 0x0020)
T_STUDY_UID = Tag(0x0020, 0x000D)
T_SERIES_UID = Tag(0x0020, 0x000E)
T_SOP_UID = Tag(0x0008, 0x0018)
T_SOP_CLASS = Tag(0x0008, 0x0016)
T_STUDY_DATE = Tag(0x0008, 0x0020)
T_ROWS = Tag(0x0028, 0x0010)
T_SHARED_FG = Tag(0x5200, 0x9229)
T_PER_FRAME_FG = Tag(0x5200, 0x9230)
PLANE_POSITION = Tag(0x0020, 0x9113)
PLANE_ORIENTATION = Tag(0x0020, 0x9116)
PIXEL_MEASURES = Tag(0x0028, 0x9110)
VOI_LUT = Tag(0x0028, 0x9132)
VALUE_TRANSFORM = Tag(0x0028, 0x9145)


@dataclass
class Extracted:
    """One file's records and the warnings raised while building them."""

    state: dict[str, Any]
    image: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ raw access


def _element_text(ds: Dataset, tag: int) -> str | None:
    """The element's value as text, decoded by pydicom (charset-aware), or None."""
    elem = ds.get_item(tag)
    if elem is None or elem.value is None:
        return None
    value = elem.value
    if isinstance(value, bytes):  # ASCII-only VRs left raw (DA, TM, IS, DS, UI, AS)
        return value.decode("latin-1")
    if not isinstance(value, str | MultiValue | list):
        value = ds[tag].value  # a raw element whose VR needs charset decoding
    if isinstance(value, MultiValue | list):
        return "\\".join("" if v is None else str(v) for v in value)
    return str(value)


def _decoded_text(ds: Dataset, tag: int) -> str | None:
    """Text VRs (PN, LO, SH, CS, LT): decoded with SpecificCharacterSet."""
    if ds.get_item(tag) is None:
        return None
    value = ds[tag].value
    if value is None:
        return None
    if isinstance(value, MultiValue | list):
        return "\\".join("" if v is None else str(v) for v in value)
    return str(value)


def _binary_int(ds: Dataset, tag: int) -> int | None:
    """US/SS/UL values (binary): the first value as int."""
    if ds.get_item(tag) is None:
        return None
    value = ds[tag].value
    if isinstance(value, MultiValue | list):
        value = value[0] if value else None
    if value is None or value == b"" or value == "":
        return None
    return int(value)


def _functional_group_source(ds: Dataset, macro: int, tag: int) -> Dataset | None:
    """The dataset that holds ``tag`` for enhanced objects: Shared, then first Per-frame."""
    for fg in (T_SHARED_FG, T_PER_FRAME_FG):
        elem = ds.get_item(fg)
        if elem is None:
            continue
        items = ds[fg].value
        if not items:
            continue
        macro_elem = items[0].get_item(macro)
        if macro_elem is None:
            continue
        macro_items = items[0][macro].value
        if macro_items and macro_items[0].get_item(tag) is not None:
            return macro_items[0]
    return None


# ------------------------------------------------------------------ building


class _Builder:
    """Collects converted values for one table row, recording a warning per problem."""

    def __init__(self, ds: Dataset, table: Table, warnings: list[str]) -> None:
        self.ds = ds
        self.table = table
        self.warnings = warnings
        self.row: dict[str, Any] = dict.fromkeys(table.column_names)

    def _source(self, tag: int, macro: int | None) -> Dataset | None:
        if self.ds.get_item(tag) is not None:
            return self.ds
        if macro is not None:
            return _functional_group_source(self.ds, macro, tag)
        return None

    def _put(self, column: str, read: Callable[[Dataset], Any], tag: int, macro: int | None):
        src = self._source(tag, macro)
        if src is None:
            return
        try:
            value = read(src)
        except (ValueError, TypeError, LookupError, UnicodeError) as exc:
            self.warnings.append(f"{column}: {exc}")
            return
        if isinstance(value, str):
            value = self._fit(column, value)
        self.row[column] = value

    def _fit(self, column: str, value: str) -> str | None:
        value = V.clean_text(value)
        if value == "":
            return None
        limit = self.table.column(column).length
        if limit is not None:
            value, cut = V.fit_bytes(value, limit)
            if cut:
                self.warnings.append(f"{column}: cut to {limit} bytes")
        return value

    def text(self, column: str, tag: int) -> None:
        self._put(column, lambda d: _decoded_text(d, tag), tag, None)

    def ascii(self, column: str, tag: int, convert: Callable[[str], Any], macro=None) -> None:
        def read(d: Dataset) -> Any:
            raw = _element_text(d, tag)
            if raw is None or V.clean_text(raw) == "":
                return None
            return convert(raw)

        self._put(column, read, tag, macro)

    def binary(self, column: str, tag: int) -> None:
        self._put(column, lambda d: _binary_int(d, tag), tag, None)


def _required_uid(ds: Dataset, tag: int, name: str) -> str:
    raw = _element_text(ds, tag)
    if raw is None or V.clean_text(raw) == "":
        raise Rejected(Reason.MISSING_REQUIRED, f"{name} is missing or empty")
    value = V.clean_text(raw)
    if len(value.encode("utf-8")) > UID_MAX:
        raise Rejected(Reason.BAD_REQUIRED, f"{name} is longer than {UID_MAX}")
    return value


def _required_patient_id(ds: Dataset) -> str:
    try:
        raw = _decoded_text(ds, T_PATIENT_ID)
    except (ValueError, UnicodeError):
        raise Rejected(Reason.BAD_REQUIRED, "PatientID cannot be decoded") from None
    value = V.clean_text(raw or "")
    if value == "":
        raise Rejected(Reason.MISSING_REQUIRED, "PatientID is missing or empty")
    if len(value.encode("utf-8")) > UID_MAX:
        raise Rejected(Reason.BAD_REQUIRED, f"PatientID is longer than {UID_MAX} bytes")
    return value


def build_records(
    ds: Dataset, tenant_id: str, created_time: datetime, file_path: str, file_size: int | None
) -> Extracted:
    """Build the state and image rows from a header dataset (raises ``Rejected``)."""
    patient_id = _required_patient_id(ds)
    study_uid = _required_uid(ds, T_STUDY_UID, "StudyInstanceUID")
    series_uid = _required_uid(ds, T_SERIES_UID, "SeriesInstanceUID")
    sop_uid = _required_uid(ds, T_SOP_UID, "SOPInstanceUID")
    sop_class = _required_uid(ds, T_SOP_CLASS, "SOPClassUID")
    raw_date = _element_text(ds, T_STUDY_DATE)
    if raw_date is None or V.clean_text(raw_date) == "":
        raise Rejected(Reason.MISSING_REQUIRED, "StudyDate is missing or empty")
    try:
        study_date = V.to_date(raw_date)
    except ValueError as exc:
        raise Rejected(Reason.BAD_REQUIRED, f"StudyDate: {exc}") from None
    study_date_origin = study_date.strftime("%Y%m%d")

    common = {
        "tenant_id": tenant_id,
        "patient_id": patient_id,
        "study_uid": study_uid,
        "series_uid": series_uid,
        "study_uid_hash": uid_hash(study_uid),
        "series_uid_hash": uid_hash(series_uid),
        "study_date_origin": study_date_origin,
        "created_time": created_time,
        "updated_time": created_time,
    }
    warnings: list[str] = []

    s = _Builder(ds, STATE_META, warnings)
    s.row.update(common)
    s.row["study_date"] = study_date
    s.text("patient_name", Tag(0x0010, 0x0010))
    s.text("patient_sex", Tag(0x0010, 0x0040))
    s.ascii("patient_birth_date", Tag(0x0010, 0x0030), V.to_date)
    s.ascii("patient_birth_time", Tag(0x0010, 0x0032), V.to_time)
    s.text("patient_age", Tag(0x0010, 0x1010))
    s.ascii("patient_size", Tag(0x0010, 0x1020), V.to_float)
    s.ascii("patient_weight", Tag(0x0010, 0x1030), V.to_float)
    s.binary("pregnancy_status", Tag(0x0010, 0x21C0))
    s.ascii("study_time", Tag(0x0008, 0x0030), V.to_time)
    s.text("accession_number", Tag(0x0008, 0x0050))
    s.text("study_id", Tag(0x0020, 0x0010))
    s.text("study_description", Tag(0x0008, 0x1030))
    s.text("modality", Tag(0x0008, 0x0060))
    s.ascii("series_number", Tag(0x0020, 0x0011), V.to_int)
    s.ascii("series_date", Tag(0x0008, 0x0021), V.to_date)
    s.ascii("series_time", Tag(0x0008, 0x0031), V.to_time)
    s.text("series_description", Tag(0x0008, 0x103E))
    s.text("body_part_examined", Tag(0x0018, 0x0015))
    s.text("protocol_name", Tag(0x0018, 0x1030))
    s.ascii("series_related_instances", Tag(0x0020, 0x1209), V.to_int)

    i = _Builder(ds, IMAGE_META, warnings)
    i.row.update(common)
    i.row["sop_uid"] = sop_uid
    i.row["sop_class_uid"] = sop_class
    i.ascii("content_date", Tag(0x0008, 0x0023), V.to_date)
    i.ascii("content_time", Tag(0x0008, 0x0033), V.to_time)
    i.ascii("instance_number", Tag(0x0020, 0x0013), V.to_int)
    i.text("image_type", Tag(0x0008, 0x0008))
    i.ascii("image_orientation_patient", Tag(0x0020, 0x0037), V.to_multi_number, PLANE_ORIENTATION)
    i.ascii("image_position_patient", Tag(0x0020, 0x0032), V.to_multi_number, PLANE_POSITION)
    i.ascii("slice_thickness", Tag(0x0018, 0x0050), V.to_float, PIXEL_MEASURES)
    i.ascii("spacing_between_slices", Tag(0x0018, 0x0088), V.to_float, PIXEL_MEASURES)
    i.ascii("slice_location", Tag(0x0020, 0x1041), V.to_float)
    i.binary("samples_per_pixel", Tag(0x0028, 0x0002))
    i.text("photometric_interpretation", Tag(0x0028, 0x0004))
    i.binary("width", T_ROWS)  # upstream quirk: `width` holds Rows
    i.binary("columns", Tag(0x0028, 0x0011))
    i.binary("bits_allocated", Tag(0x0028, 0x0100))
    i.binary("bits_stored", Tag(0x0028, 0x0101))
    i.binary("high_bit", Tag(0x0028, 0x0102))
    i.binary("pixel_representation", Tag(0x0028, 0x0103))
    i.ascii("rescale_intercept", Tag(0x0028, 0x1052), V.to_float, VALUE_TRANSFORM)
    i.ascii("rescale_slope", Tag(0x0028, 0x1053), V.to_float, VALUE_TRANSFORM)
    i.text("rescale_type", Tag(0x0028, 0x1054))
    i.ascii("window_center", Tag(0x0028, 0x1050), V.to_multi_number, VOI_LUT)
    i.ascii("window_width", Tag(0x0028, 0x1051), V.to_multi_number, VOI_LUT)
    tsuid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    i.row["transfer_syntax_uid"] = V.clean_text(str(tsuid)) if tsuid else None
    i.row["pixel_data_location"] = i._fit("pixel_data_location", file_path)
    i.row["space_size"] = file_size
    return Extracted(state=s.row, image=i.row, warnings=warnings)


# ------------------------------------------------------------------ files


def resolve_under_roots(path: str, roots: Sequence[Path]) -> Path:
    """The real path of ``path`` if it lies under one of ``roots`` (symlinks, ``..``
    resolved), else ``Rejected(path_outside_root)``. Checked before existence so
    that messages cannot probe for files elsewhere."""
    if not os.path.isabs(path):
        raise Rejected(Reason.PATH_OUTSIDE_ROOT, "file_path is not absolute")
    real = os.path.realpath(path)
    for root in roots:
        real_root = os.path.realpath(root)
        if real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep):
            return Path(real)
    raise Rejected(Reason.PATH_OUTSIDE_ROOT, "file_path resolves outside every storage root")


def read_header(path: Path) -> tuple[Dataset, int]:
    """Read a Part-10 file's header (no pixel data); return it with the file size."""
    try:
        size = path.stat().st_size
        fp = open(path, "rb")  # noqa: SIM115 - closed below, position needed
    except FileNotFoundError:
        raise Rejected(Reason.FILE_MISSING, "file does not exist") from None
    except OSError as exc:
        raise Rejected(Reason.FILE_UNREADABLE, f"cannot open file: {exc.strerror}") from None
    with fp:
        try:
            ds = pydicom.dcmread(fp, stop_before_pixels=True)
        except InvalidDicomError:
            raise Rejected(Reason.NOT_DICOM, "no DICOM Part-10 preamble") from None
        except Exception as exc:  # pydicom raises many types on broken input
            raise Rejected(
                Reason.HEADER_UNREADABLE, f"header cannot be parsed: {type(exc).__name__}"
            ) from None
        # pydicom stops silently at end of file. An image whose header runs to EOF
        # without reaching the pixel data was cut short.
        if fp.tell() >= size and ds.get_item(T_ROWS) is not None:
            raise Rejected(Reason.TRUNCATED, "file ends before the pixel data")
    return ds, size


def extract(msg: StoreMessage, roots: Sequence[Path]) -> Extracted:
    """Check the message's file against the message and build its records."""
    real = resolve_under_roots(msg.file_path, roots)
    try:
        size = real.stat().st_size
    except FileNotFoundError:
        raise Rejected(Reason.FILE_MISSING, "file does not exist") from None
    if size != msg.file_size:
        raise Rejected(Reason.SIZE_MISMATCH, f"file has {size} bytes, message says {msg.file_size}")
    ds, _ = read_header(real)
    out = build_records(ds, msg.tenant_id, msg.created_time, msg.file_path, msg.file_size)
    for column, expected in (
        ("study_uid", msg.study_uid),
        ("series_uid", msg.series_uid),
        ("sop_uid", msg.sop_uid),
    ):
        if out.image[column] != expected:
            raise Rejected(Reason.UID_MISMATCH, f"{column} in the file differs from the message")
    out.image["image_status"] = msg.transfer_status
    return out
