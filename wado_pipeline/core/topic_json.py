"""JSON wire form of the state and image records published to the output topics.

Field names equal the table column names; dates ``YYYY-MM-DD``, times
``HH:MM:SS[.fff|.ffffff]`` and datetimes ISO 8601 without zone, with the fraction as
upstream writes it; absent values ``null`` and present-but-empty ones ``""``: what the
Doris Routine Load jobs of existing deployments map by name.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, time
from typing import Any


def _fraction(microsecond: int) -> str:
    """Fractional seconds as upstream's serializer (chrono) writes them: none for a
    whole second, 3 digits for whole milliseconds, else 6."""
    if microsecond == 0:
        return ""
    if microsecond % 1000 == 0:
        return f".{microsecond // 1000:03d}"
    return f".{microsecond:06d}"


def _default(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds") + _fraction(value.microsecond)
    if isinstance(value, time):
        return value.isoformat(timespec="seconds") + _fraction(value.microsecond)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode_row(row: dict[str, Any]) -> bytes:
    """One record as compact UTF-8 JSON (non-ASCII kept as is)."""
    return json.dumps(row, default=_default, ensure_ascii=False, separators=(",", ":")).encode()


def _md5_key(*parts: str) -> bytes:
    return hashlib.md5("_".join(parts).encode(), usedforsecurity=False).hexdigest().encode()


def state_key(row: dict[str, Any]) -> bytes:
    """Upstream's key: lowercase hex MD5 of ``tenant_patient_study_series``. One series
    keeps one key, so it stays in one partition."""
    return _md5_key(row["tenant_id"], row["patient_id"], row["study_uid"], row["series_uid"])


def image_key(row: dict[str, Any]) -> bytes:
    """Upstream's key: lowercase hex MD5 of ``tenant_patient_study_series_sop``."""
    return _md5_key(
        row["tenant_id"], row["patient_id"], row["study_uid"], row["series_uid"], row["sop_uid"]
    )
