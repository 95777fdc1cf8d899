"""A rejected store message as a dead letter: its original value plus headers that say
where it came from and why it was rejected.

Pure: the Kafka resource sends what this builds. Header names are in ``core.run_contract``
(read by ``wado-pipeline dlq`` and a site's tools).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from wado_pipeline.core.batch_rows import RejectedRecord
from wado_pipeline.core.run_contract import (
    HEADER_DETAIL,
    HEADER_MASKED,
    HEADER_OFFSET,
    HEADER_PARTITION,
    HEADER_REASON,
    HEADER_RUN_ID,
    HEADER_TOPIC,
    HEADER_TRUNCATED_FROM,
)

# A detail names a field and what is wrong with it; bounded so headers stay small.
MAX_DETAIL_BYTES = 1024


@dataclass(frozen=True)
class DeadLetter:
    key: bytes
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    @property
    def header_bytes(self) -> int:
        return sum(len(k) + len(v) for k, v in self.headers)

    def cut_to(self, max_value_bytes: int) -> DeadLetter:
        """The same dead letter with its value cut to ``max_value_bytes`` and a header
        recording the original length (for topics too small for the original)."""
        if self.value is None or len(self.value) <= max_value_bytes:
            return self
        return DeadLetter(
            self.key,
            self.value[: max(0, max_value_bytes)],
            (*self.headers, (HEADER_TRUNCATED_FROM, str(len(self.value)).encode())),
        )


def dead_letter(rejection: RejectedRecord, topic: str, run_id: str) -> DeadLetter:
    """The dead letter of one rejected record of ``topic``."""
    detail = rejection.detail.encode("utf-8", errors="replace")[:MAX_DETAIL_BYTES]
    return DeadLetter(
        key=f"{topic}:{rejection.partition}:{rejection.offset}".encode(),
        value=rejection.payload,
        headers=(
            (HEADER_REASON, str(rejection.reason).encode()),
            (HEADER_DETAIL, detail),
            (HEADER_TOPIC, topic.encode()),
            (HEADER_PARTITION, str(rejection.partition).encode()),
            (HEADER_OFFSET, str(rejection.offset).encode()),
            (HEADER_RUN_ID, run_id.encode()),
        ),
    )


# Fields of a store message that identify a patient or lead back to one (the UIDs and
# the file path name the study). Masked in dead letters when a site asks for it.
IDENTIFYING_FIELDS = (
    "patient_id",
    "accession_number",
    "study_uid",
    "series_uid",
    "sop_uid",
    "study_uid_hash",
    "series_uid_hash",
    "file_path",
    "source_ip",
)
MASK = "***"


def masked(letter: DeadLetter) -> DeadLetter:
    """The dead letter with identifying fields masked (the full value stays in
    ``dicom_ingest_error``). A value that is not a JSON object cannot be masked field
    by field and is left out; a header says which was done."""
    try:
        obj = json.loads(letter.value) if letter.value is not None else None
    except (ValueError, RecursionError):
        obj = None
    if isinstance(obj, dict):
        for name in IDENTIFYING_FIELDS:
            if name in obj and obj[name] is not None:
                obj[name] = MASK
        value: bytes | None = json.dumps(obj).encode()
        how = b"fields"
    else:
        value, how = None, b"value-omitted"
    return DeadLetter(letter.key, value, (*letter.headers, (HEADER_MASKED, how)))


def payload_for_table(value: bytes | None) -> tuple[str | None, str | None]:
    """The original value for ``dicom_ingest_error``, losslessly: ``(payload, encoding)``.

    Valid UTF-8 without NUL (PostgreSQL text cannot hold NUL) is kept as text;
    anything else as base64, so the row always holds every byte the broker accepted."""
    if value is None:
        return None, None
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\x00" not in text:
        return text, "utf-8"
    return base64.b64encode(value).decode("ascii"), "base64"
