"""Every setting of the pipeline, read once from the environment.

This module is the one place that names a topic, a URL or a default. Each field has
an environment variable (the public interface, documented in the README) and a
default that matches the local stack started by ``make up``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import quote

from wado_pipeline.core.dicom.receiver import VIEWER_TRANSFER_SYNTAXES
from wado_pipeline.core.dicom.transcode import Transcoding

DEFAULT_STORAGE_ROOT = "/var/lib/wado/storage"
SITE_CONFIG_ENV = "WADO_SITE_CONFIG"

# Topic configuration: the one definition used by `make up`, the test sandbox, the
# docker-compose file (checked by a test) and the README.
STORAGE_PARTITIONS = 3
# Kafka's own default for message.max.bytes (1 MiB + 12): what a site's storage topic has.
STORAGE_MAX_MESSAGE_BYTES = 1_048_588
# A dead letter is the original value plus the wado.* headers and a key: the dead-letter
# topic allows the storage limit plus this much, so whatever the storage topic accepted
# fits again as a dead letter.
DLQ_HEADER_ROOM_BYTES = 64 * 1024
DLQ_MAX_MESSAGE_BYTES = STORAGE_MAX_MESSAGE_BYTES + DLQ_HEADER_ROOM_BYTES
DAY_MS = 24 * 3600 * 1000
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"


@dataclass(frozen=True)
class TopicSpec:
    """One topic as the pipeline expects it to exist."""

    name: str
    partitions: int
    configs: dict[str, str]
    purpose: str


def topic_specs(settings: Settings) -> tuple[TopicSpec, ...]:
    """Every topic of the pipeline with its partitions and configuration."""
    return (
        TopicSpec(
            settings.storage_topic,
            STORAGE_PARTITIONS,
            {
                "max.message.bytes": str(STORAGE_MAX_MESSAGE_BYTES),
                # the window in which any batch can be re-executed from Kafka
                "retention.ms": str(7 * DAY_MS),
            },
            "store messages from the receiver (input)",
        ),
        TopicSpec(settings.state_topic, 1, {}, "series-level records (output)"),
        TopicSpec(settings.image_topic, 1, {}, "instance-level records (output)"),
        TopicSpec(
            settings.dlq_topic,
            1,
            {
                "max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES),
                "retention.ms": str(30 * DAY_MS),
            },
            "rejected store messages with their reason (dead letters)",
        ),
    )


def _setting(
    env: str,
    default: Any,
    doc: str,
    *,
    choices: tuple[str, ...] = (),
    shown=None,
    run: bool = False,
):
    """One setting: its environment variable, default and documentation line, declared
    once (the README's table is checked against these). ``run``: the sensor and the runs
    read it from the ``ingest`` resource, whose fields are made from these."""
    meta = {
        "env": env,
        "default": default,
        "doc": doc,
        "choices": choices,
        "shown": shown,
        "run": run,
    }
    return field(default=default, metadata=meta)


def _parse(f, raw: str) -> Any:
    name, kind = f.metadata["env"], type(f.default)
    if f.metadata["choices"] and raw not in f.metadata["choices"]:
        choices = ", ".join(f.metadata["choices"])
        raise ValueError(f"{name} must be one of {choices}, got {raw!r}")
    if kind is tuple:
        return tuple(Path(r) for r in raw.split(":") if r)
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            word = "an integer" if kind is int else "a number"
            raise ValueError(f"{name} must be {word}, got {raw!r}") from None
    return raw


def _render(value: Any) -> str:
    if isinstance(value, tuple):
        return ":".join(str(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class Settings:
    """Every setting of the pipeline. ``from_env()`` reads them; the defaults match the
    local stack that ``make up`` starts."""

    kafka_bootstrap: str = _setting(
        "WADO_KAFKA_BOOTSTRAP", "127.0.0.1:19092", "Kafka bootstrap servers"
    )
    storage_topic: str = _setting(
        "WADO_STORAGE_TOPIC",
        "storage_queue",
        "topic the receiver publishes store messages to",
        run=True,
    )
    state_topic: str = _setting(
        "WADO_STATE_TOPIC",
        "dicom_state_queue",
        "output topic for series-level records",
        run=True,
    )
    image_topic: str = _setting(
        "WADO_IMAGE_TOPIC",
        "dicom_image_queue",
        "output topic for instance-level records",
        run=True,
    )
    dlq_topic: str = _setting(
        "WADO_DLQ_TOPIC",
        "storage_queue_dlq",
        "dead-letter topic for rejected store messages",
        run=True,
    )
    log_topic: str = _setting(
        "WADO_LOG_TOPIC",
        "log_queue",
        "the receiver's copy of every store message; Doris' object table loads from it "
        "when `WADO_DORIS_LOAD=routine_load` (the pipeline only reads it there)",
    )
    consumer_group: str = _setting(
        "WADO_CONSUMER_GROUP",
        "dicom-consumer-group",
        "group whose offsets the runs commit (lag for Kafka tools)",
        run=True,
    )
    postgres_url: str = _setting(
        "WADO_POSTGRES_URL",
        "postgresql+psycopg2://wado:wado@127.0.0.1:15432/wado",
        "SQLAlchemy URL of the index database",
    )
    postgres_schema: str = _setting(
        "WADO_POSTGRES_SCHEMA", "public", "schema of the pipeline tables"
    )
    doris_url: str = _setting(
        "WADO_DORIS_URL",
        "mysql+pymysql://wado:wado@127.0.0.1:13306/wado",
        "SQLAlchemy URL of Doris' MySQL protocol (or MariaDB)",
    )
    doris_flavor: str = _setting(
        "WADO_DORIS_FLAVOR",
        "mariadb",
        "`doris` (UNIQUE KEY merge-on-write tables, plain INSERT upserts) or `mariadb` "
        "(primary keys, guarded `ON DUPLICATE KEY UPDATE`)",
        choices=("doris", "mariadb"),
    )
    doris_load: str = _setting(
        "WADO_DORIS_LOAD",
        "insert",
        "`insert` (MySQL protocol), `stream_load` (HTTP Stream Load with labels; "
        "needs `WADO_DORIS_FLAVOR=doris`) or `routine_load` (the site's own Routine Load "
        "jobs load Doris from the topics; runs write nothing there and await the keys)",
        choices=("insert", "stream_load", "routine_load"),
    )
    routine_load_wait_seconds: float = _setting(
        "WADO_ROUTINE_LOAD_WAIT_SECONDS",
        60.0,
        "`routine_load`: how long a run awaits its keys in Doris before its check fails",
    )
    doris_http_url: str = _setting(
        "WADO_DORIS_HTTP_URL",
        "http://127.0.0.1:8030",
        "Doris FE HTTP address for Stream Load (credentials from `WADO_DORIS_URL`)",
    )
    doris_buckets: int = _setting("WADO_DORIS_BUCKETS", 8, "`BUCKETS` of the Doris tables")
    doris_replication_num: int = _setting(
        "WADO_DORIS_REPLICATION_NUM", 1, "`replication_num` of the Doris tables"
    )
    storage_roots: tuple[Path, ...] = _setting(
        "WADO_STORAGE_ROOTS",
        (Path(DEFAULT_STORAGE_ROOT),),
        "colon-separated roots that stored files must lie under (after resolving symlinks "
        "and `..`)",
        run=True,
    )
    batch_messages: int = _setting(
        "WADO_BATCH_MESSAGES",
        50,
        "a partition with this many pending messages gets a run",
        run=True,
    )
    batch_wait_seconds: float = _setting(
        "WADO_BATCH_WAIT_SECONDS",
        5.0,
        "… or when its oldest pending message has waited this long",
        run=True,
    )
    batch_quiet_seconds: float = _setting(
        "WADO_BATCH_QUIET_SECONDS",
        1.0,
        "… or when no message has arrived on it for this long (0: off)",
        run=True,
    )
    max_batch_messages: int = _setting(
        "WADO_MAX_BATCH_MESSAGES",
        4000,
        "cap of one run's batch: a due partition's pending messages go in one run up to it",
        run=True,
    )
    max_inflight_per_partition: int = _setting(
        "WADO_MAX_INFLIGHT_PER_PARTITION",
        3,
        "runs of one partition queued or running at most; the sensor waits beyond it",
        run=True,
    )
    parse_workers: int = _setting(
        "WADO_PARSE_WORKERS",
        1,
        "processes that parse headers of large batches (1: in the run's own process)",
        run=True,
    )
    freshness_warn_seconds: int = _setting(
        "WADO_FRESHNESS_WARN_SECONDS",
        300,
        "table assets turn WARN (stale) after this long without a batch",
    )
    freshness_fail_seconds: int = _setting(
        "WADO_FRESHNESS_FAIL_SECONDS", 900, "… and FAIL after this long"
    )
    run_retention_days: float = _setting(
        "WADO_RUN_RETENTION_DAYS",
        7.0,
        "Dagster's storage keeps finished runs (their events, check results and ticks) "
        "this long; decimals allowed. Never deleted: a failed run whose range no later "
        "run processed, and the runs holding each asset's latest materialization and "
        "each check's latest result",
        run=True,
    )
    retention_interval_minutes: int = _setting(
        "WADO_RETENTION_INTERVAL_MINUTES",
        10,
        "how often the prune_dagster_storage schedule runs (1-59)",
    )
    dead_letter_payload: str = _setting(
        "WADO_DEAD_LETTER_PAYLOAD",
        "full",
        "`full`: dead letters carry the original value; `masked`: identifying fields "
        "(patient ID, accession number, UIDs, file path, source IP) are masked, for sites "
        "whose Kafka is widely readable (the full value stays in `dicom_ingest_error`)",
        choices=("full", "masked"),
        run=True,
    )
    transcode: str = _setting(
        "WADO_TRANSCODE",
        "on",
        "`on`: a `NeedTransfer` file is rewritten in place to `WADO_TRANSCODE_TARGET` "
        "before its header is read, as upstream does, so the viewer can display it",
        choices=("on", "off"),
        run=True,
    )
    transcode_target: str = _setting(
        "WADO_TRANSCODE_TARGET",
        EXPLICIT_VR_LITTLE_ENDIAN,
        "uncompressed transfer syntax `NeedTransfer` files are rewritten to",
        choices=("1.2.840.10008.1.2", EXPLICIT_VR_LITTLE_ENDIAN),
        run=True,
    )
    viewer_transfer_syntaxes: str = _setting(
        "WADO_VIEWER_TRANSFER_SYNTAXES",
        VIEWER_TRANSFER_SYNTAXES,
        "comma-separated syntaxes the viewer displays: a `NeedTransfer` file already in "
        "one of them is left as it is",
        shown="upstream's list (14 syntaxes)",
        run=True,
    )
    transcode_timeout_seconds: float = _setting(
        "WADO_TRANSCODE_TIMEOUT_SECONDS",
        Transcoding.timeout_s,
        "bound of one file's transcoding; beyond it the file is left untouched (a warning)",
        run=True,
    )
    kafka_compression: str = _setting(
        "WADO_KAFKA_COMPRESSION",
        "snappy",
        "codec of the batches the pipeline writes (state, image and dead-letter topics); "
        "what every upstream configuration file names. Reading accepts every codec",
        choices=("none", "gzip", "snappy", "lz4", "zstd"),
    )
    kafka_timeout_seconds: float = _setting(
        "WADO_KAFKA_TIMEOUT_SECONDS",
        3.0,
        "bound of each Kafka call (sensor ticks stay short when the broker is down)",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from the environment; unset or empty variables take the default.

        ``WADO_SITE_CONFIG`` names an upstream ``application.<env>.json``: its keys
        supply settings (``site_config``), and ``WADO_*`` variables override them."""
        environ = os.environ if environ is None else environ
        site = environ.get(SITE_CONFIG_ENV)
        if site:
            environ = {**site_env(Path(site)), **{k: v for k, v in environ.items() if v}}
        values = {}
        for f in fields(cls):
            raw = environ.get(f.metadata["env"])
            if raw:
                values[f.name] = _parse(f, raw)
        settings = cls(**values)
        if settings.doris_load == "stream_load" and settings.doris_flavor != "doris":
            raise ValueError("WADO_DORIS_LOAD=stream_load needs WADO_DORIS_FLAVOR=doris")
        return settings

    def to_env(self) -> dict[str, str]:
        """The environment that makes ``Settings.from_env()`` return these settings
        (for the processes the benchmark and the tests start: daemon, runs, CLI)."""
        return {f.metadata["env"]: _render(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def markdown_table(cls) -> str:
        """The README's table of settings."""
        lines = ["| variable | default | meaning |", "|---|---|---|"]
        for f in fields(cls):
            m = f.metadata
            default = m["shown"] or f"`{_render(m['default'])}`"
            lines.append(f"| `{m['env']}` | {default} | {m['doc']} |")
        return "\n".join(lines)


# ------------------------------------------------------------------ a site's own file
#
# ``WADO_SITE_CONFIG=/etc/dicom-server/application.prod.json`` lets the pipeline take
# over from the Rust consumer with the file that site already has (upstream's
# ``application.<APP_ENV>.json``). ``WADO_*`` variables override what it says.

# (JSON path in the site file, the setting it supplies, how)
SITE_KEYS: tuple[tuple[str, str, str], ...] = (
    ("kafka.brokers", "WADO_KAFKA_BOOTSTRAP", "as is"),
    ("kafka.compression_codec", "WADO_KAFKA_COMPRESSION", "as is"),
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


def site_config_table() -> str:
    """The table of docs/upstream.md: which site key supplies which setting."""
    lines = ["| site key | setting | how |", "|---|---|---|"]
    lines += [f"| `{key}` | `{env}` | {how} |" for key, env, how in SITE_KEYS]
    return "\n".join(lines)


def run_settings() -> tuple[str, ...]:
    """The settings the sensor and the runs read from the ``ingest`` resource."""
    return tuple(f.name for f in fields(Settings) if f.metadata.get("run"))
