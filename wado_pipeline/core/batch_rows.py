"""From a micro-batch of Kafka records to rows and rejections.

A batch is a list of ``SourceRecord`` in offset order. Each record is processed on
its own (message parse, file checks, header extraction) into ``Accepted`` or
``RejectedRecord``; ``group`` then folds the outcomes into one row per key:
object rows per ``trace_id``, state rows per series, image rows per SOP instance.
Latest wins by (message ``created_time``, offset); a row's ``created_time`` is the
earliest seen and its ``updated_time`` the latest, so re-running a batch yields
identical rows.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wado_pipeline.core.dicom.extract import Extracted, extract
from wado_pipeline.core.dicom.seahash import uid_hash
from wado_pipeline.core.dicom.transcode import Transcoding
from wado_pipeline.core.dicom.values import fit_bytes
from wado_pipeline.core.message import StoreMessage, parse_store_message
from wado_pipeline.core.rejection import Reason, Rejected
from wado_pipeline.core.schema import KEY_COLUMNS, OBJECT_META, Table


@dataclass(frozen=True, slots=True)
class SourceRecord:
    partition: int
    offset: int
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Accepted:
    partition: int
    offset: int
    message: StoreMessage
    extracted: Extracted
    object_row: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    partition: int
    offset: int
    reason: Reason
    detail: str
    trace_id: str | None
    payload: bytes | None
    # The ``dicom_object_meta`` row of a valid store message whose file was rejected:
    # the table is the log of what was received, whatever happened to the file.
    receipt: dict[str, Any] | None = None


Outcome = Accepted | RejectedRecord


def _guess_trace_id(value: bytes | None) -> str | None:
    """Best effort, for the error table: the trace_id of a message we rejected."""
    try:
        obj = json.loads(value or b"")
    except (ValueError, RecursionError):
        return None
    if isinstance(obj, dict) and isinstance(obj.get("trace_id"), str):
        return obj["trace_id"][:64]
    return None


def process_record(
    record: SourceRecord, roots: Sequence[Path], transcoding: Transcoding | None = None
) -> Outcome:
    """Parse one record and extract its file's header; never raises for bad input.

    A message that parses gets its receipt (object row) even when its file is then
    rejected; one that does not parse is rejected without one."""
    receipt = None
    try:
        msg = parse_store_message(record.value)
        row = object_row(msg)
        row_warnings = fit_to_columns(OBJECT_META, row)
        receipt = row
        extracted = extract(msg, roots, transcoding)
        extracted.warnings.extend(row_warnings)
    except Rejected as exc:
        r = exc.rejection
        # ``receipt`` is still None when the message itself was refused, or when a
        # key of its object row does not fit the column.
        return RejectedRecord(
            record.partition,
            record.offset,
            r.reason,
            r.detail,
            _guess_trace_id(record.value),
            record.value,
            receipt,
        )
    return Accepted(record.partition, record.offset, msg, extracted, row)


def fit_to_columns(table: Table, row: dict[str, Any]) -> list[str]:
    """Make every text value fit its column in UTF-8 bytes (Doris counts bytes).

    Any column but a key is cut at a character boundary, with a warning; a key
    column that does not fit rejects the message (``too_long``): a cut key would
    name another row."""
    warnings = []
    keys = KEY_COLUMNS
    for col in table.columns:
        value = row.get(col.name)
        if col.kind != "varchar" or not isinstance(value, str) or col.length is None:
            continue
        fitted, cut = fit_bytes(value, col.length)
        if not cut:
            continue
        if col.name in keys:
            raise Rejected(
                Reason.TOO_LONG, f"{col.name} is over {col.length} bytes in UTF-8 (a key column)"
            )
        row[col.name] = fitted
        warnings.append(f"{col.name}: cut to {col.length} bytes")
    return warnings


def object_row(msg: StoreMessage) -> dict[str, Any]:
    """The ``dicom_object_meta`` row of a message; UID hashes recomputed, not trusted."""
    row = {name: getattr(msg, name) for name in OBJECT_META.column_names}
    row["study_uid_hash"] = uid_hash(msg.study_uid)
    row["series_uid_hash"] = uid_hash(msg.series_uid)
    return row


@dataclass
class GroupedBatch:
    objects: list[dict[str, Any]] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[RejectedRecord] = field(default_factory=list)
    warnings: Counter[str] = field(default_factory=Counter)
    consumed: int = 0
    accepted: int = 0

    @property
    def reconciles(self) -> bool:
        """Every consumed message is either accepted or rejected."""
        return self.consumed == self.accepted + len(self.rejections)

    def rejects_by_reason(self) -> dict[str, int]:
        return dict(Counter(str(r.reason) for r in self.rejections))


def _merge(
    rows: dict[tuple, dict[str, Any]], seq: dict[tuple, tuple], key: tuple, row, order
) -> None:
    current = rows.get(key)
    if current is None:
        rows[key] = dict(row)
        seq[key] = order
        return
    first = min(current["created_time"], row["created_time"])
    last = max(current["updated_time"], row["updated_time"])
    if order >= seq[key]:
        rows[key] = dict(row)
        seq[key] = order
    rows[key]["created_time"] = first
    rows[key]["updated_time"] = last


def group(outcomes: Iterable[Outcome]) -> GroupedBatch:
    """Fold per-record outcomes into one row per key (latest wins)."""
    out = GroupedBatch()
    objects: dict[str, dict[str, Any]] = {}
    object_seq: dict[str, tuple] = {}
    states: dict[tuple, dict[str, Any]] = {}
    state_seq: dict[tuple, tuple] = {}
    images: dict[tuple, dict[str, Any]] = {}
    image_seq: dict[tuple, tuple] = {}
    for o in outcomes:
        out.consumed += 1
        if isinstance(o, RejectedRecord):
            out.rejections.append(o)
            if o.receipt is not None:
                order = (o.receipt["created_time"], o.partition, o.offset)
                trace = o.receipt["trace_id"]
                if trace not in objects or order >= object_seq[trace]:
                    objects[trace] = o.receipt
                    object_seq[trace] = order
            continue
        out.accepted += 1
        msg, ex = o.message, o.extracted
        order = (msg.created_time, o.partition, o.offset)
        if msg.trace_id not in objects or order >= object_seq[msg.trace_id]:
            objects[msg.trace_id] = o.object_row
            object_seq[msg.trace_id] = order
        s, i = ex.state, ex.image
        _merge(states, state_seq, (s["tenant_id"], s["study_uid"], s["series_uid"]), s, order)
        ikey = (i["tenant_id"], i["study_uid"], i["series_uid"], i["sop_uid"])
        _merge(images, image_seq, ikey, i, order)
        for w in ex.warnings:
            out.warnings[w.split(":", 1)[0]] += 1
    out.objects = list(objects.values())
    out.states = list(states.values())
    out.images = list(images.values())
    return out
