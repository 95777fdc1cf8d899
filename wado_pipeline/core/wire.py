"""JSON wire form of the state and image records published to the output topics.

Field names equal the table column names; dates ``YYYY-MM-DD``, times
``HH:MM:SS[.ffffff]``, datetimes ISO 8601 without zone, absent values ``null``:
what the Doris Routine Load jobs of existing deployments map by name.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time
from typing import Any


def _default(value: Any) -> str:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode_row(row: dict[str, Any]) -> bytes:
    """One record as compact UTF-8 JSON (non-ASCII kept as is)."""
    return json.dumps(row, default=_default, ensure_ascii=False, separators=(",", ":")).encode()


def state_key(row: dict[str, Any]) -> bytes:
    """State messages are keyed by series, so one series stays in one partition."""
    return row["series_uid"].encode()


def image_key(row: dict[str, Any]) -> bytes:
    """Image messages are keyed by SOP instance."""
    return row["sop_uid"].encode()
