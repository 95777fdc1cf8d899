"""Why a message was not turned into rows: a reason code and a detail for humans.

Details never contain patient data (names, birth dates, IDs): they name the field
and what is wrong with it, so they are safe for logs, the dead-letter headers and
the error table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    # the store message itself
    BAD_JSON = "bad_json"
    DUPLICATE_FIELD = "duplicate_field"
    NOT_OBJECT = "not_object"
    MISSING_FIELD = "missing_field"
    BAD_TYPE = "bad_type"
    TOO_LONG = "too_long"
    BAD_DATE = "bad_date"
    BAD_ENUM = "bad_enum"
    BAD_VALUE = "bad_value"
    # the stored file
    PATH_OUTSIDE_ROOT = "path_outside_root"
    FILE_MISSING = "file_missing"
    FILE_UNREADABLE = "file_unreadable"
    SIZE_MISMATCH = "size_mismatch"
    NOT_DICOM = "not_dicom"
    HEADER_UNREADABLE = "header_unreadable"
    TRUNCATED = "truncated"
    MISSING_REQUIRED = "missing_required"
    BAD_REQUIRED = "bad_required"
    UID_MISMATCH = "uid_mismatch"


@dataclass(frozen=True)
class Rejection:
    reason: Reason
    detail: str


class Rejected(Exception):
    """Raised inside the core to abandon one message; carries its rejection."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.rejection = Rejection(reason, detail)
