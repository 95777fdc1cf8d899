"""A site's own configuration: upstream's ``application.<APP_ENV>.json`` as settings.

``WADO_SITE_CONFIG=/etc/dicom-server/application.prod.json`` lets the pipeline take
over from the Rust consumer with the file that site already has. Each key used is in
``SITE_KEYS`` (the README's mapping table is checked against it); ``WADO_*``
variables override what the file says.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

# (JSON path in the site file, the setting it supplies, how)
SITE_KEYS: tuple[tuple[str, str, str], ...] = (
    ("kafka.brokers", "WADO_KAFKA_BOOTSTRAP", "as is"),
    ("message_queue.topic_main", "WADO_STORAGE_TOPIC", "as is"),
    ("message_queue.topic_dicom_state", "WADO_STATE_TOPIC", "as is"),
    ("message_queue.topic_dicom_image", "WADO_IMAGE_TOPIC", "as is"),
    ("message_queue.topic_dicom_receive", "WADO_LOG_TOPIC", "as is"),
    ("message_queue.consumer_group_id", "WADO_CONSUMER_GROUP", "as is"),
    (
        "main_database.{dbtype, host, port, username, password, database}",
        "WADO_POSTGRES_URL",
        "a `postgresql+psycopg2://` URL; `dbtype` must be `postgresql`",
    ),
    ("local_storage.dicm_store_path", "WADO_STORAGE_ROOTS", "`~` expanded"),
    (
        "dicom_store_scp.cornerstonejs_supported_transfer_syntax",
        "WADO_VIEWER_TRANSFER_SYNTAXES",
        "joined with commas",
    ),
    ("dicom_store_scp.unsupported_ts_change_to", "WADO_TRANSCODE_TARGET", "as is"),
)


class SiteConfigError(ValueError):
    """The site file cannot be used; the message names the file and the key."""


def _get(doc: dict[str, Any], dotted: str) -> Any:
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _postgres_url(db: dict[str, Any], where: str) -> str:
    dbtype = str(db.get("dbtype", "")).lower()
    if dbtype not in ("postgresql", "postgres"):
        raise SiteConfigError(
            f"{where}: main_database.dbtype is {dbtype or 'missing'}; the pipeline's index "
            "is PostgreSQL (set WADO_POSTGRES_URL to use another one)"
        )
    missing = [k for k in ("host", "port", "username", "database") if not db.get(k)]
    if missing:
        raise SiteConfigError(f"{where}: main_database lacks {', '.join(missing)}")
    user = quote(str(db["username"]), safe="")
    password = quote(str(db.get("password") or ""), safe="")
    auth = f"{user}:{password}" if password else user
    return f"postgresql+psycopg2://{auth}@{db['host']}:{int(db['port'])}/{db['database']}"


def site_env(path: Path) -> dict[str, str]:
    """The ``WADO_*`` values a site file supplies (keys it lacks are left out)."""
    where = f"site config {path}"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SiteConfigError(f"{where}: cannot read it ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise SiteConfigError(f"{where}: not JSON (line {exc.lineno})") from None
    if not isinstance(doc, dict):
        raise SiteConfigError(f"{where}: not a JSON object")
    out: dict[str, str] = {}
    for dotted, env, _ in SITE_KEYS:
        if env == "WADO_POSTGRES_URL":
            db = doc.get("main_database")
            if isinstance(db, dict):
                out[env] = _postgres_url(db, where)
            continue
        value = _get(doc, dotted)
        if value is None or value == "" or value == []:
            continue
        if env == "WADO_STORAGE_ROOTS":
            value = os.path.expanduser(str(value))
        elif env == "WADO_VIEWER_TRANSFER_SYNTAXES":
            if not isinstance(value, list):
                raise SiteConfigError(f"{where}: {dotted} must be a list")
            value = ",".join(str(v) for v in value)
        out[env] = str(value)
    return out


def markdown_table() -> str:
    """The README's table: which site key supplies which setting."""
    lines = ["| site key | setting | how |", "|---|---|---|"]
    lines += [f"| `{key}` | `{env}` | {how} |" for key, env, how in SITE_KEYS]
    return "\n".join(lines)
