"""The store message the DICOM receiver publishes for each stored file.

``parse_store_message`` turns one Kafka message value into a ``StoreMessage`` or
raises ``Rejected`` with a reason code. Field names and limits are the upstream
receiver's (data-model doc); unknown extra fields are ignored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from wado_pipeline.core.rejection import Reason, Rejected

# The receiver's four statuses; NeedTransfer: the file's transfer syntax is not one the
# site's viewer displays, so the consumer transcodes it (``core.dicom.transcode``).
TRANSFER_STATUSES = ("NoNeedTransfer", "Success", "Failed", "NeedTransfer")
NEED_TRANSFER = "NeedTransfer"
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

# name -> max length in characters (None: not a string field)
_STRING_FIELDS: dict[str, int] = {
    "trace_id": 36,
    "worker_node_id": 64,
    "tenant_id": 64,
    "patient_id": 64,
    "study_uid": 64,
    "series_uid": 64,
    "sop_uid": 64,
    "file_path": 512,
    "transfer_syntax_uid": 64,
    "series_uid_hash": 20,
    "study_uid_hash": 20,
    "accession_number": 64,
    "target_ts": 64,
    "source_ip": 24,
    "source_ae": 64,
}
# Non-empty: the pipeline cannot key or locate anything without them.
_NON_EMPTY = ("trace_id", "tenant_id", "study_uid", "series_uid", "sop_uid", "file_path")
# The fields that key a row or locate the file: only these may reject a message for
# their length. Any other value that does not fit its column is cut, with a warning
# (``batch.fit_to_columns``), because the receiver never checks lengths.
KEY_FIELDS = frozenset({*_NON_EMPTY, "patient_id"})
# May be null or absent: the receiver sends null when the file has no AccessionNumber
# or its value is longer than 16 characters.
_OPTIONAL = frozenset({"accession_number"})

_KNOWN_FIELDS = frozenset(
    [
        *_STRING_FIELDS,
        "file_size",
        "number_of_frames",
        "created_time",
        "study_date",
        "transfer_status",
    ]
)

_DATETIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?$")
_DATE_DASHED = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_DATE_PLAIN = re.compile(r"^(\d{4})(\d{2})(\d{2})$")


@dataclass(frozen=True, slots=True)
class StoreMessage:
    trace_id: str
    worker_node_id: str
    tenant_id: str
    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    file_size: int
    file_path: str
    transfer_syntax_uid: str
    number_of_frames: int
    created_time: datetime
    series_uid_hash: str
    study_uid_hash: str
    accession_number: str | None
    target_ts: str
    study_date: date
    transfer_status: str
    source_ip: str
    source_ae: str


def parse_created_time(text: str) -> datetime:
    """ISO 8601 without zone, 0–9 fractional digits (beyond microseconds is cut)."""
    m = _DATETIME.match(text)
    if not m:
        raise ValueError("not YYYY-MM-DDTHH:MM:SS[.f]")
    frac = (m.group(7) or "").ljust(6, "0")[:6]
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    return datetime(y, mo, d, h, mi, s, int(frac))


def parse_message_date(text: str) -> date:
    """``YYYY-MM-DD`` or ``YYYYMMDD``: producers emit both."""
    m = _DATE_DASHED.match(text) or _DATE_PLAIN.match(text)
    if not m:
        raise ValueError("not YYYY-MM-DD or YYYYMMDD")
    return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))


def _require(obj: dict[str, Any], name: str) -> Any:
    if name not in obj:
        raise Rejected(Reason.MISSING_FIELD, f"field {name} is missing")
    return obj[name]


def _string(obj: dict[str, Any], name: str) -> str | None:
    if name in _OPTIONAL and obj.get(name) is None:
        return None
    value = _require(obj, name)
    if not isinstance(value, str):
        raise Rejected(Reason.BAD_TYPE, f"field {name} must be a string")
    if "\x00" in value:
        raise Rejected(Reason.BAD_VALUE, f"field {name} contains a NUL character")
    if name in KEY_FIELDS and len(value) > _STRING_FIELDS[name]:
        raise Rejected(
            Reason.TOO_LONG,
            f"field {name} is {len(value)} characters, limit {_STRING_FIELDS[name]}",
        )
    if name in _NON_EMPTY and not value.strip():
        raise Rejected(Reason.BAD_VALUE, f"field {name} is empty")
    return value


def _integer(obj: dict[str, Any], name: str, maximum: int) -> int:
    value = _require(obj, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise Rejected(Reason.BAD_TYPE, f"field {name} must be an integer")
    if value < 0 or value > maximum:
        raise Rejected(Reason.BAD_VALUE, f"field {name} is out of range")
    return value


class _DuplicateField(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _unique_fields(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON objects with a field given twice are ambiguous (parsers keep the first or
    the last): reject rather than guess which one the receiver meant."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _DuplicateField(k)
            seen.add(k)
    return obj


def _dated(obj: dict[str, Any], name: str, parse: Any) -> Any:
    """A date or time field: a string that ``parse`` accepts."""
    raw = _require(obj, name)
    if not isinstance(raw, str):
        raise Rejected(Reason.BAD_TYPE, f"field {name} must be a string")
    try:
        return parse(raw)
    except ValueError as exc:
        raise Rejected(Reason.BAD_DATE, f"field {name}: {exc}") from None


def parse_store_message(value: bytes | None) -> StoreMessage:
    """Parse one Kafka message value; raise ``Rejected`` when it is unusable."""
    if value is None:
        raise Rejected(Reason.BAD_JSON, "message has no value (tombstone)")
    try:
        obj = json.loads(value, object_pairs_hook=_unique_fields)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise Rejected(Reason.BAD_JSON, f"not valid JSON: {type(exc).__name__}") from None
    except _DuplicateField as exc:
        # Field names of a well-formed message are known; a foreign one is not echoed.
        name = exc.name if exc.name in _KNOWN_FIELDS else "(unknown field)"
        raise Rejected(Reason.DUPLICATE_FIELD, f"field {name} appears twice") from None
    if not isinstance(obj, dict):
        raise Rejected(Reason.NOT_OBJECT, f"JSON {type(obj).__name__}, expected an object")

    strings = {name: _string(obj, name) for name in _STRING_FIELDS}
    file_size = _integer(obj, "file_size", INT64_MAX)
    frames = _integer(obj, "number_of_frames", INT32_MAX)

    created = _dated(obj, "created_time", parse_created_time)
    study_date = _dated(obj, "study_date", parse_message_date)

    status = _require(obj, "transfer_status")
    if not isinstance(status, str):
        raise Rejected(Reason.BAD_TYPE, "field transfer_status must be a string")
    if status not in TRANSFER_STATUSES:
        raise Rejected(Reason.BAD_ENUM, "field transfer_status is not a known status")

    return StoreMessage(
        file_size=file_size,
        number_of_frames=frames,
        created_time=created,
        study_date=study_date,
        transfer_status=status,
        **strings,
    )
