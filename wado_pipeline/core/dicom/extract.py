"""Header extraction: from a stored DICOM file to the state and image records.

Only the header is read (``stop_before_pixels``). Values are taken raw from the
dataset and converted by ``values``: six attributes are required and reject the
file when missing or invalid; every other attribute becomes ``None`` with a
warning when it cannot be used. Warnings name the column and the problem, never
the value, so they are safe to log.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.tag import Tag

from wado_pipeline.core.dicom import values as V
from wado_pipeline.core.dicom.seahash import uid_hash
from wado_pipeline.core.dicom.transcode import Transcoding, transcode_in_place
from wado_pipeline.core.message import NEED_TRANSFER, StoreMessage
from wado_pipeline.core.rejection import Reason, Rejected
from wado_pipeline.core.schema import IMAGE_META, STATE_META, Table

UID_MAX = 64
# What upstream writes in every image row's ``image_status``.
IMAGE_STATUS = "ACTIVE"
UNDEFINED_LENGTH = 0xFFFFFFFF

# Tags, written once here. Functional-group macros: (macro sequence, attribute).
T_PATIENT_ID = Tag(0x0010, 0x0020)
T_STUDY_UID = 0x0020000D
T_SERIES_UID = 0x0020000E
T_SOP_UID = 0x00080018
T_SOP_CLASS = 0x00080016
T_STUDY_DATE = 0x00080020
T_ROWS = Tag(0x0028, 0x0010)
T_SHARED_FG = 0x52009229
T_PER_FRAME_FG = 0x52009230
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

# Character sets decoded here directly from the raw bytes; everything else (ISO 2022
# code extensions, GB18030, …) goes through pydicom's charset handling. Decoding
# ourselves halves the extraction cost of the common case.
_FAST_CODECS = {
    "": "latin-1",
    "ISO_IR 6": "latin-1",
    "ISO_IR 100": "latin-1",
    "ISO_IR 192": "utf-8",
}
T_CHARSET = Tag(0x0008, 0x0005)


def _fast_codec(ds: Dataset) -> str | None:
    elem = ds.get_item(T_CHARSET)
    if elem is None:
        return _FAST_CODECS[""]
    value = elem.value
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, MultiValue | list):
        if len(value) != 1:
            return None
        value = value[0]
    return _FAST_CODECS.get(V.clean_text(value or ""))


def _join_multi(text: str) -> str:
    if "\\" not in text:
        return text
    return "\\".join(V.clean_text(p) for p in text.split("\\"))


def _element_text(ds: Dataset, tag: int) -> str | None:
    """An ASCII-only VR's value (DA, TM, IS, DS, UI, AS) as text, or None."""
    elem = ds.get_item(tag)
    if elem is None or elem.value is None:
        return None
    value = elem.value
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, MultiValue | list):
        return "\\".join("" if v is None else str(v) for v in value)
    return str(value)


def _decoded_text(ds: Dataset, tag: int, codec: str | None) -> str | None:
    """Text VRs (PN, LO, SH, CS, LT) decoded with SpecificCharacterSet."""
    elem = ds.get_item(tag)
    if elem is None:
        return None
    if codec is not None and isinstance(elem, RawDataElement):
        if elem.value is None:
            return None
        return _join_multi(elem.value.decode(codec, errors="replace"))
    value = ds[tag].value
    if value is None:
        return None
    if isinstance(value, MultiValue | list):
        return "\\".join("" if v is None else V.clean_text(str(v)) for v in value)
    return str(value)


def _binary_int(ds: Dataset, tag: int) -> int | None:
    """A US value (binary): the first value as int."""
    elem = ds.get_item(tag)
    if elem is None:
        return None
    if isinstance(elem, RawDataElement) and elem.VR in (None, "US"):
        raw = elem.value
        if not raw or len(raw) < 2:
            return None
        return int.from_bytes(raw[:2], "little" if elem.is_little_endian else "big")
    value = ds[tag].value
    if isinstance(value, MultiValue | list):
        value = value[0] if value else None
    if value is None or value == b"" or value == "":
        return None
    return int(value)


def _functional_group_source(ds: Dataset, macro: int, tag: int) -> Dataset | None:
    """The dataset that holds ``tag`` for enhanced objects: Shared, then first Per-frame."""
    for fg in (T_SHARED_FG, T_PER_FRAME_FG):
        if ds.get_item(fg) is None:
            continue
        items = ds[fg].value
        if not items or items[0].get_item(macro) is None:
            continue
        macro_items = items[0][macro].value
        if macro_items and macro_items[0].get_item(tag) is not None:
            return macro_items[0]
    return None


# ------------------------------------------------------------------ the mapping

# (column, how to read, tag, converter, functional-group macro). "text": charset-
# decoded text; "pn": a person name; "ascii": ASCII VR through a converter; "us":
# binary unsigned short.
STATE_ATTRIBUTES: tuple[tuple[str, str, int, Callable[[str], Any] | None, int | None], ...] = (
    ("patient_name", "pn", 0x00100010, None, None),
    ("patient_sex", "text", 0x00100040, None, None),
    ("patient_birth_date", "ascii", 0x00100030, V.to_date, None),
    ("patient_birth_time", "ascii", 0x00100032, V.to_time, None),
    ("patient_age", "text", 0x00101010, None, None),
    ("patient_size", "ascii", 0x00101020, V.to_float, None),
    ("patient_weight", "ascii", 0x00101030, V.to_float, None),
    ("pregnancy_status", "us", 0x001021C0, None, None),
    ("study_time", "ascii", 0x00080030, V.to_time, None),
    ("accession_number", "text", 0x00080050, None, None),
    ("study_id", "text", 0x00200010, None, None),
    ("study_description", "text", 0x00081030, None, None),
    ("modality", "text", 0x00080060, None, None),
    ("series_number", "ascii", 0x00200011, V.to_int, None),
    ("series_date", "ascii", 0x00080021, V.to_date, None),
    ("series_time", "ascii", 0x00080031, V.to_time, None),
    ("series_description", "text", 0x0008103E, None, None),
    ("body_part_examined", "text", 0x00180015, None, None),
    ("protocol_name", "text", 0x00181030, None, None),
    ("series_related_instances", "ascii", 0x00201209, V.to_int, None),
)

IMAGE_ATTRIBUTES: tuple[tuple[str, str, int, Callable[[str], Any] | None, int | None], ...] = (
    ("content_date", "ascii", 0x00080023, V.to_date, None),
    ("content_time", "ascii", 0x00080033, V.to_time, None),
    ("instance_number", "ascii", 0x00200013, V.to_int, None),
    ("image_type", "text", 0x00080008, None, None),
    ("image_orientation_patient", "ascii", 0x00200037, V.to_multi_number, PLANE_ORIENTATION),
    ("image_position_patient", "ascii", 0x00200032, V.to_multi_number, PLANE_POSITION),
    ("slice_thickness", "ascii", 0x00180050, V.to_float, PIXEL_MEASURES),
    ("spacing_between_slices", "ascii", 0x00180088, V.to_float, PIXEL_MEASURES),
    ("slice_location", "ascii", 0x00201041, V.to_float, None),
    ("samples_per_pixel", "us", 0x00280002, None, None),
    ("photometric_interpretation", "text", 0x00280004, None, None),
    ("width", "us", 0x00280010, None, None),  # upstream quirk: `width` holds Rows
    ("columns", "us", 0x00280011, None, None),
    ("bits_allocated", "us", 0x00280100, None, None),
    ("bits_stored", "us", 0x00280101, None, None),
    ("high_bit", "us", 0x00280102, None, None),
    ("pixel_representation", "us", 0x00280103, None, None),
    ("rescale_intercept", "ascii", 0x00281052, V.to_float, VALUE_TRANSFORM),
    ("rescale_slope", "ascii", 0x00281053, V.to_float, VALUE_TRANSFORM),
    ("rescale_type", "text", 0x00281054, None, None),
    ("window_center", "ascii", 0x00281050, V.to_multi_number, VOI_LUT),
    ("window_width", "ascii", 0x00281051, V.to_multi_number, VOI_LUT),
)


# ------------------------------------------------------------------ building


class _Builder:
    """Collects converted values for one table row, recording a warning per problem."""

    def __init__(
        self, ds: Dataset, index: dict[int, Any], codec: str | None, table: Table, warnings
    ) -> None:
        self.ds = ds
        self.index = index
        self.codec = codec
        self.limits = _LIMITS[table.name]
        self.warnings = warnings
        self.row: dict[str, Any] = dict.fromkeys(_COLUMNS[table.name])

    def fill(self, attributes) -> None:
        ds, codec = self.ds, self.codec
        index = self.index
        enhanced = T_SHARED_FG in index or T_PER_FRAME_FG in index
        for column, how, tag, convert, macro in attributes:
            elem = index.get(tag)
            src = ds
            if elem is None:
                if not enhanced or macro is None:
                    continue
                src = _functional_group_source(ds, macro, tag)
                if src is None:
                    continue
                elem = src.get_item(tag)
            raw_bytes = elem.value if isinstance(elem, RawDataElement) else None
            try:
                if how == "ascii":
                    raw = raw_bytes.decode("latin-1") if raw_bytes else _element_text(src, tag)
                    raw = None if raw is None else V.clean_text(raw)
                    if raw:
                        value = convert(raw)
                    else:  # present but empty: "" where the column is text, as upstream
                        value = "" if raw == "" and column in self.limits else None
                elif how == "us":
                    if raw_bytes is not None and elem.VR in (None, "US"):
                        little = elem.is_little_endian
                        value = (
                            int.from_bytes(raw_bytes[:2], "little" if little else "big")
                            if len(raw_bytes) >= 2
                            else None
                        )
                    else:
                        value = _binary_int(src, tag)
                elif codec is not None and raw_bytes is not None:
                    value = _join_multi(raw_bytes.decode(codec, errors="replace"))
                else:
                    value = _decoded_text(src, tag, codec)
                if how == "pn" and value:
                    # trailing empty component groups carry nothing (PS3.5 6.2.1)
                    value = value.rstrip("= \x00")
            except (ValueError, TypeError, LookupError, UnicodeError) as exc:
                self.warnings.append(f"{column}: {exc}")
                continue
            if isinstance(value, str):
                value = self.fit(column, value)
            self.row[column] = value

    def fit(self, column: str, value: str) -> str:
        """Present text, cleaned and cut to its column; present but empty stays ``""``
        (upstream writes "" for an empty attribute and null only for an absent one)."""
        value = V.clean_text(value)
        if value == "":
            return value
        limit = self.limits.get(column)
        if limit is not None:
            value, cut = V.fit_bytes(value, limit)
            if cut:
                self.warnings.append(f"{column}: cut to {limit} bytes")
        return value


_COLUMNS = {t.name: t.column_names for t in (STATE_META, IMAGE_META)}
_LIMITS = {
    t.name: {c.name: c.length for c in t.columns if c.length} for t in (STATE_META, IMAGE_META)
}


def _raw_text(ds: Dataset, index: dict[int, Any], tag: int) -> str | None:
    elem = index.get(tag)
    if isinstance(elem, RawDataElement) and isinstance(elem.value, bytes):
        return elem.value.decode("latin-1")
    return _element_text(ds, tag)


def _required_uid(ds: Dataset, index: dict[int, Any], tag: int, name: str) -> str:
    raw = _raw_text(ds, index, tag)
    if raw is None or V.clean_text(raw) == "":
        raise Rejected(Reason.MISSING_REQUIRED, f"{name} is missing or empty")
    value = V.clean_text(raw)
    if len(value.encode("utf-8")) > UID_MAX:
        raise Rejected(Reason.BAD_REQUIRED, f"{name} is longer than {UID_MAX}")
    return value


def _required_patient_id(ds: Dataset, codec: str | None) -> str:
    try:
        raw = _decoded_text(ds, T_PATIENT_ID, codec)
    except (ValueError, UnicodeError):
        raise Rejected(Reason.BAD_REQUIRED, "PatientID cannot be decoded") from None
    value = V.clean_text(raw or "")
    if value == "":
        raise Rejected(Reason.MISSING_REQUIRED, "PatientID is missing or empty")
    if len(value.encode("utf-8")) > UID_MAX:
        raise Rejected(Reason.BAD_REQUIRED, f"PatientID is longer than {UID_MAX} bytes")
    return value


def build_records(
    ds: Dataset, tenant_id: str, created_time: datetime, file_size: int | None
) -> Extracted:
    """Build the state and image rows from a header dataset (raises ``Rejected``)."""
    codec = _fast_codec(ds)
    # A plain-int index of the elements: pydicom's tag type compares in Python, which
    # costs more than the conversions themselves.
    index = {int(t): e for t, e in ds._dict.items()}
    patient_id = _required_patient_id(ds, codec)
    study_uid = _required_uid(ds, index, T_STUDY_UID, "StudyInstanceUID")
    series_uid = _required_uid(ds, index, T_SERIES_UID, "SeriesInstanceUID")
    sop_uid = _required_uid(ds, index, T_SOP_UID, "SOPInstanceUID")
    sop_class = _required_uid(ds, index, T_SOP_CLASS, "SOPClassUID")
    raw_date = _raw_text(ds, index, T_STUDY_DATE)
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
    s = _Builder(ds, index, codec, STATE_META, warnings)
    s.row.update(common)
    s.row["study_date"] = study_date
    s.fill(STATE_ATTRIBUTES)

    i = _Builder(ds, index, codec, IMAGE_META, warnings)
    i.row.update(common)
    i.row["sop_uid"] = sop_uid
    i.row["sop_class_uid"] = sop_class
    i.fill(IMAGE_ATTRIBUTES)
    tsuid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if not tsuid or not V.clean_text(str(tsuid)):
        raise Rejected(Reason.MISSING_REQUIRED, "TransferSyntaxUID is missing or empty")
    i.row["transfer_syntax_uid"] = V.clean_text(str(tsuid))
    i.row["pixel_data_location"] = None  # as upstream: the file's place is the receipt's
    i.row["image_status"] = IMAGE_STATUS
    i.row["space_size"] = file_size
    return Extracted(state=s.row, image=i.row, warnings=warnings)


# ------------------------------------------------------------------ files


@lru_cache(maxsize=64)
def _real_root(root: str) -> str:
    return os.path.realpath(root)


def _under(path: str, roots: Sequence[Path]) -> bool:
    for root in roots:
        real_root = _real_root(str(root))
        if path == real_root or path.startswith(real_root.rstrip(os.sep) + os.sep):
            return True
    return False


_PROC_FD = os.path.isdir("/proc/self/fd")


def _opened_path(fp) -> str:
    """The real path of an open file: one readlink on Linux instead of an lstat per
    path component, and it names the file actually opened (no check-then-open race)."""
    if _PROC_FD:
        return os.readlink(f"/proc/self/fd/{fp.fileno()}")
    return os.path.realpath(fp.name)


def open_under_roots(path: str, roots: Sequence[Path]):
    """Open ``path`` for reading if it lies under one of ``roots`` once symlinks and
    ``..`` are resolved; else ``Rejected(path_outside_root)``.

    The lexical check comes before the open, so a message cannot probe whether a
    file exists elsewhere; the check of the opened file's real path catches
    symlinks that lead out of the roots."""
    if not os.path.isabs(path):
        raise Rejected(Reason.PATH_OUTSIDE_ROOT, "file_path is not absolute")
    if not _under(os.path.normpath(path), roots) and not _under(os.path.realpath(path), roots):
        raise Rejected(Reason.PATH_OUTSIDE_ROOT, "file_path lies outside every storage root")
    try:
        fp = open(path, "rb")  # noqa: SIM115 - the caller closes it
    except FileNotFoundError:
        raise Rejected(Reason.FILE_MISSING, "file does not exist") from None
    except OSError as exc:
        raise Rejected(Reason.FILE_UNREADABLE, f"cannot open file: {exc.strerror}") from None
    if not _under(_opened_path(fp), roots):
        fp.close()
        raise Rejected(Reason.PATH_OUTSIDE_ROOT, "file_path resolves outside every storage root")
    return fp


def parse_header(fp, size: int) -> Dataset:
    """Read a Part-10 header (no pixel data) from an open file of ``size`` bytes."""
    try:
        ds = pydicom.dcmread(fp, stop_before_pixels=True)
    except InvalidDicomError:
        raise Rejected(Reason.NOT_DICOM, "no DICOM Part-10 preamble") from None
    except Exception as exc:  # pydicom raises many types on broken input
        raise Rejected(
            Reason.HEADER_UNREADABLE, f"header cannot be parsed: {type(exc).__name__}"
        ) from None
    # pydicom stops silently at end of file. A value that runs past the end (only
    # the last element read can) means the file was cut short. (An image header that
    # ends the file is no proof: pydicom's charset samples are such files, whole. It
    # counts only against a message that names a larger file, ``rest_is_complete``.)
    if fp.tell() >= size and ds._dict:
        last = next(reversed(ds._dict.values()))
        if (
            isinstance(last, RawDataElement)
            and last.length != UNDEFINED_LENGTH
            and last.value_tell + last.length > size
        ):
            raise Rejected(Reason.TRUNCATED, "a header value runs past the end of the file")
    return ds


# Explicit VRs whose length field is 4 bytes (after 2 reserved ones).
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_ITEM, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE0DD
DEFLATED = "1.2.840.10008.1.2.1.99"
_MAX_TRAILING_ELEMENTS = 10_000


def rest_is_complete(fp, size: int, ds: Dataset) -> bool:
    """Whether the elements after the header (pixel data and what follows) all end within
    the file: a file cut short in its pixel data fails this, a complete one passes.

    ``fp`` stands where ``parse_header`` stopped, before the pixel data. Only element
    headers and item headers are read; values are skipped. A deflated dataset cannot be
    walked this way (pydicom read it from an inflated copy) and counts as complete once
    its header parsed. An image (it has Rows) whose header ends the file lacks its pixel
    data."""
    syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    if syntax.strip() == DEFLATED:
        return True
    implicit, little = getattr(ds, "original_encoding", (False, True))
    end = "<" if little is not False else ">"
    pos = fp.tell()
    if pos >= size:
        return T_ROWS not in ds._dict  # an image's header that ends the file lacks its pixels
    encapsulated = False  # inside an undefined-length value: its delimiter must follow
    for _ in range(_MAX_TRAILING_ELEMENTS):
        if pos == size:
            return not encapsulated
        fp.seek(pos)
        head = fp.read(8)
        if len(head) < 8:
            return False
        group, elem = struct.unpack(end + "HH", head[:4])
        tag = (group << 16) | elem
        vr = head[4:6]
        # An explicit dataset's element written implicitly (seen in pydicom's corpus):
        # its VR bytes are no VR, as pydicom itself concludes.
        if implicit or group == 0xFFFE or not (vr.isalpha() and vr.isupper()):
            (length,) = struct.unpack(end + "L", head[4:8])
            pos += 8
        elif vr in _LONG_VRS:
            extra = fp.read(4)
            if len(extra) < 4:
                return False
            (length,) = struct.unpack(end + "L", extra)
            pos += 12
        else:
            (length,) = struct.unpack(end + "H", head[6:8])
            pos += 8
        if tag in (_ITEM, _SEQUENCE_END) and length == UNDEFINED_LENGTH:
            return True  # nested undefined-length items: beyond what this walk follows
        if tag == _SEQUENCE_END:
            encapsulated = False
            continue
        if length == UNDEFINED_LENGTH:
            encapsulated = True  # its items and delimiter follow, walked as elements
            continue
        pos += length
        if pos > size:
            return False
    return True


def read_header(path: Path) -> tuple[Dataset, int]:
    """Read a file's header without a message (``inspect``); returns it and the size."""
    try:
        fp = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise Rejected(Reason.FILE_MISSING, "file does not exist") from None
    except OSError as exc:
        raise Rejected(Reason.FILE_UNREADABLE, f"cannot open file: {exc.strerror}") from None
    with fp:
        size = os.fstat(fp.fileno()).st_size
        return parse_header(fp, size), size


def extract(
    msg: StoreMessage, roots: Sequence[Path], transcoding: Transcoding | None = None
) -> Extracted:
    """Check the message's file against the message and build its records.

    With ``transcoding``, a ``NeedTransfer`` file is first rewritten in place to the
    target syntax (``core.dicom.transcode``). The rows then describe the file as it is on
    disk (its syntax and size); the size check compares the message with the file only
    while the file still has the syntax the message names, since a rewrite changes it."""
    notes: list[str] = []
    if transcoding is not None and msg.transfer_status == NEED_TRANSFER:
        with open_under_roots(msg.file_path, roots) as fp:
            real = _opened_path(fp)
        result = transcode_in_place(real, transcoding)
        if result.outcome == "failed":
            notes.append(f"transcode: file left as it is, {result.detail}")
    with open_under_roots(msg.file_path, roots) as fp:
        size = os.fstat(fp.fileno()).st_size
        ds = parse_header(fp, size)
        on_disk = str(getattr(ds.file_meta, "TransferSyntaxUID", "") or "").strip()
        rewritten = msg.transfer_status == NEED_TRANSFER and on_disk != msg.transfer_syntax_uid
        if size != msg.file_size and not rewritten:
            # The receiver replaces the file when an instance is sent again (perhaps in
            # another syntax): an earlier message then names a file of another size. That
            # is everyday traffic, not damage, as long as the file is whole and holds the
            # message's instance (the UID check below).
            if not rest_is_complete(fp, size, ds):
                raise Rejected(
                    Reason.SIZE_MISMATCH,
                    f"file has {size} bytes, message says {msg.file_size}, and its data "
                    "runs past the end of the file",
                )
            notes.append(
                f"file_replaced: file has {size} bytes, message says {msg.file_size} "
                "(the instance was received again)"
            )
    out = build_records(ds, msg.tenant_id, msg.created_time, size)
    out.warnings.extend(notes)
    for column, expected in (
        ("study_uid", msg.study_uid),
        ("series_uid", msg.series_uid),
        ("sop_uid", msg.sop_uid),
    ):
        if out.image[column] != expected:
            raise Rejected(Reason.UID_MISMATCH, f"{column} in the file differs from the message")
    return out
