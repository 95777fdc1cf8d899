"""Apache Doris Stream Load: one HTTP PUT per table per batch, idempotent by label.

Protocol (Doris docs, "Stream Load"): ``PUT {fe}/api/{db}/{table}/_stream_load``
with Basic auth; the FE answers ``307 Temporary Redirect`` to a BE, which loads the
body atomically and answers JSON with ``Status``:

- ``Success`` / ``Publish Timeout``: committed (the latter becomes visible shortly);
- ``Label Already Exists``: a load with this label was seen before; its
  ``ExistingJobStatus`` ``FINISHED`` means already loaded, ``RUNNING`` means wait
  and ask again;
- ``Fail``: nothing loaded; ``ErrorURL`` explains which rows and why.

The label is derived from (table, topic, partition, offset range, content digest),
so a retried request or a re-executed batch is loaded once. ``requests`` drops the
Authorization header on a cross-host redirect, so the redirect is followed here,
with the credentials kept.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as dtime
from typing import Any

import requests

from wado_pipeline.core.schema import Table

LABEL_CHARS = re.compile(r"[^A-Za-z0-9_\-:]")
DONE = "done"
ALREADY = "already_loaded"


# Doris' error page quotes the rejected source rows ("src line [...]") and their values
# ("first 32 bytes of input str: [...]"): patient names, IDs, birth dates. Only the
# reasons, with every quoted value masked, may reach a run's failure text.
_SOURCE_LINE = re.compile(r"\.?\s*src line.*$", re.IGNORECASE)
_QUOTED = re.compile(r"\[[^\]]*\]|'[^']*'|\"[^\"]*\"")
_COLUMN_NAME = re.compile(r"(column(?:_name)?)\s*[\[(]\s*`?(\w+)`?\s*[\])]", re.IGNORECASE)
MAX_REASONS = 3


def error_reasons(page: str) -> str:
    """The reasons of a Doris error page without any source value: column names kept,
    every bracketed or quoted value replaced by ``[…]``, at most ``MAX_REASONS`` distinct
    reasons and the count of error lines."""
    reasons: list[str] = []
    lines = [line for line in page.splitlines() if line.strip()]
    for line in lines:
        text = _SOURCE_LINE.sub("", line)
        names = _COLUMN_NAME.findall(text)
        text = _QUOTED.sub("[…]", _COLUMN_NAME.sub(r"\1 <\2>", text)).strip()
        for word, name in names:
            text = text.replace(f"{word} <{name}>", f"{word} `{name}`", 1)
        if text and text not in reasons:
            reasons.append(text[:200])
    shown = "; ".join(reasons[:MAX_REASONS])
    return f"{len(lines)} error line(s): {shown}" if shown else f"{len(lines)} error line(s)"


class StreamLoadError(Exception):
    """Doris refused the load (``Fail``) or never gave a final answer."""


@dataclass(frozen=True)
class LoadResult:
    label: str
    outcome: str  # DONE or ALREADY
    status: str  # Doris' Status of the last answer
    rows: int


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")  # Doris DATETIME(6)
    if isinstance(value, date | dtime):
        return value.isoformat()
    return value


def encode_rows(table: Table, rows: Sequence[dict[str, Any]]) -> bytes:
    """The JSON array body, columns in table order."""
    names = table.column_names
    return json.dumps(
        [{n: _json_value(r.get(n)) for n in names} for r in rows],
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()


def make_label(table: str, topic: str, partition: int, start: int, end: int, body: bytes) -> str:
    """Deterministic label: the same batch content gets the same label (≤128 chars)."""
    digest = hashlib.sha256(body).hexdigest()[:16]
    raw = f"wado_{table}_{topic}_{partition}_{start}_{end}_{digest}"
    label = LABEL_CHARS.sub("_", raw)
    if len(label) > 128:
        label = f"wado_{hashlib.sha256(raw.encode()).hexdigest()[:40]}_{digest}"
    return label


class StreamLoader:
    """A small Stream Load client (bounded timeouts and retries, same label each try)."""

    def __init__(
        self,
        fe_url: str,
        database: str,
        user: str,
        password: str,
        timeout_seconds: float = 60.0,
        attempts: int = 4,
        backoff_seconds: float = 0.5,
        running_wait_seconds: float = 60.0,
        session: requests.Session | None = None,
    ) -> None:
        self.fe_url = fe_url.rstrip("/")
        self.database = database
        self.auth = (user, password)
        self.timeout = timeout_seconds
        self.attempts = attempts
        self.backoff = backoff_seconds
        self.running_wait = running_wait_seconds
        self.session = session or requests.Session()

    def _put(self, url: str, headers: dict[str, str], body: bytes) -> requests.Response:
        """PUT, following up to 3 redirects by hand with the same auth and body."""
        for _ in range(4):
            resp = self.session.put(
                url,
                data=body,
                headers=headers,
                auth=self.auth,
                allow_redirects=False,
                timeout=self.timeout,
            )
            if resp.status_code in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                url = resp.headers["Location"]
                continue
            return resp
        raise StreamLoadError("too many redirects from the Doris FE")

    def load(self, table: Table, rows: Sequence[dict[str, Any]], label: str) -> LoadResult:
        """Load ``rows`` into ``table`` under ``label``; returns once Doris committed it
        (or had already), raises ``StreamLoadError`` when it will not."""
        body = encode_rows(table, rows)
        headers = {
            "label": label,
            "format": "json",
            "strip_outer_array": "true",
            "columns": ", ".join(f"`{c}`" for c in table.column_names),
            "Expect": "100-continue",
            "Content-Type": "application/json; charset=utf-8",
        }
        url = f"{self.fe_url}/api/{self.database}/{table.name}/_stream_load"
        deadline = time.monotonic() + self.running_wait
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = self._put(url, headers, body)
                resp.raise_for_status()
                answer = resp.json()
            except (requests.RequestException, ValueError) as exc:
                # Same label on every try: if a try did load, Doris says so next time.
                if attempt >= self.attempts:
                    raise StreamLoadError(
                        f"{table.name}: no answer after {attempt} tries ({type(exc).__name__})"
                    ) from None
                time.sleep(self.backoff * 2 ** (attempt - 1))
                continue
            status = answer.get("Status", "")
            if status in ("Success", "Publish Timeout"):
                return LoadResult(label, DONE, status, int(answer.get("NumberLoadedRows", 0)))
            if status == "Label Already Exists":
                existing = answer.get("ExistingJobStatus", "")
                if existing == "FINISHED":
                    return LoadResult(label, ALREADY, status, 0)
                if existing == "RUNNING" and time.monotonic() < deadline:
                    time.sleep(min(self.backoff * 2, 2.0))
                    continue
                raise StreamLoadError(
                    f"{table.name}: label {label} exists with status {existing or 'unknown'}"
                )
            detail = answer.get("Message", "")
            error_url = answer.get("ErrorURL")
            if error_url:
                try:
                    page = self.session.get(error_url, timeout=self.timeout).text
                    detail += " | " + error_reasons(page)
                except requests.RequestException as exc:
                    detail += f" | ErrorURL unreadable ({type(exc).__name__})"
            raise StreamLoadError(f"{table.name}: Stream Load {status or 'failed'}: {detail}")
