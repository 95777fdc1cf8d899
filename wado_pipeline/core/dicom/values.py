"""Converters from DICOM value representations to column values.

pydicom's own conversion lets bad values through silently (a 13th month, ``72kg``,
``nan``, ``24:00``, an IS that overflows INT4, embedded NULs), so every value we
store goes through one of these small functions instead. Each returns the
converted value or raises ``ValueError`` with a message that names no data.
"""

from __future__ import annotations

import math
import re
from datetime import date, time

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

_DA = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_DA_OLD = re.compile(r"^(\d{4})\.(\d{2})\.(\d{2})$")  # ACR-NEMA style, still seen
_TM = re.compile(r"^(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,6}))?)?)?$")
_TM_COLON = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?$")
_IS = re.compile(r"^[+-]?\d{1,12}$")
_DS = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def clean_text(raw: str) -> str:
    """Strip DICOM padding (spaces, NULs) and remove embedded NUL characters."""
    return raw.replace("\x00", "").strip(" ")


def to_date(raw: str) -> date:
    """DA: ``YYYYMMDD`` (or old ``YYYY.MM.DD``) that is a real calendar date."""
    text = clean_text(raw)
    m = _DA.match(text) or _DA_OLD.match(text)
    if not m:
        raise ValueError("DA is not YYYYMMDD")
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        raise ValueError("DA is not a real date") from None


def to_time(raw: str) -> time:
    """TM: ``HH[MM[SS[.F{1,6}]]]`` or ``HH:MM[:SS[.F]]``; 24:00 and seconds 60 rejected."""
    text = clean_text(raw)
    m = _TM.match(text) or _TM_COLON.match(text)
    if not m:
        raise ValueError("TM is not HHMMSS.FFFFFF")
    hh, mm, ss, frac = m.groups()
    try:
        return time(int(hh), int(mm or 0), int(ss or 0), int((frac or "").ljust(6, "0")))
    except ValueError:
        raise ValueError("TM is out of range") from None


def to_int(raw: str) -> int:
    """IS: an integer string within the signed 32-bit range."""
    text = clean_text(raw)
    if not _IS.match(text):
        raise ValueError("IS is not an integer")
    value = int(text)
    if not INT32_MIN <= value <= INT32_MAX:
        raise ValueError("IS is outside the 32-bit range")
    return value


def to_float(raw: str) -> float:
    """DS: a finite decimal number (no units, no comma decimals, no NaN/inf)."""
    text = clean_text(raw)
    if not _DS.match(text):
        raise ValueError("DS is not a decimal number")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("DS is not finite")
    return value


def to_multi_number(raw: str, convert=to_float) -> str:
    """A backslash-separated list of DS/IS values, checked, re-joined with ``\\``."""
    parts = [clean_text(p) for p in clean_text(raw).split("\\")]
    for p in parts:
        convert(p)
    return "\\".join(parts)


def fit_bytes(text: str, max_bytes: int) -> tuple[str, bool]:
    """Cut ``text`` at a character boundary so its UTF-8 form fits ``max_bytes``.

    Returns the text and whether it was cut. Doris sizes VARCHAR in bytes, so a
    64-character CJK name (192 bytes) must be cut to fit a VARCHAR(64).
    """
    if len(text) * 4 <= max_bytes:  # no UTF-8 character takes more than 4 bytes
        return text, False
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text, False
    return encoded[:max_bytes].decode("utf-8", errors="ignore"), True
