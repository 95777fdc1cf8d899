"""The upstream Rust consumer (``wado-consumer``, the program this pipeline replaces) run
on the local stack, for side-by-side measurements (``bench … --against-upstream PATH``)
and for the compatibility tests.

``PATH`` is a directory with ``bin/wado-consumer`` and ``application.sample.json`` (the
upstream configuration format). The consumer reads ``application.<APP_ENV>.json`` from
its working directory: ``upstream_config`` writes one with this run's topics, database
and storage path. Its database is a PostgreSQL database of its own made by the site's
DDL (upstream's ``Script/Pg.sql``; the project keeps a copy as a test fixture).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from wado_pipeline.bench.sandbox import PROJECT, drop_database
from wado_pipeline.settings import Settings

SITE_PG_DDL = PROJECT / "wado_pipeline_tests" / "fixtures" / "site_pg.sql"


def upstream_config(
    upstream_dir: Path,
    settings: Settings,
    database_url: str,
    store: Path,
    log_topic: str,
    group: str,
    receiver_port: int = 11111,
    ae_title: str = "STORE-SCP",
) -> dict:
    """Upstream's sample configuration with this run's broker, topics (the storage
    topic of ``settings`` as its main topic, its state and image topics), database,
    storage path and consumer group."""
    base = json.loads((upstream_dir / "application.sample.json").read_text())
    db = make_url(database_url)
    base["main_database"] = {
        "dbtype": "postgresql",
        "host": db.host,
        "port": db.port or 5432,
        "username": db.username,
        "password": db.password,
        "database": db.database,
    }
    base["kafka"]["brokers"] = settings.kafka_bootstrap
    base["local_storage"]["dicm_store_path"] = str(store)
    base["dicom_store_scp"]["port"] = receiver_port
    base["dicom_store_scp"]["ae_title"] = ae_title
    base["message_queue"].update(
        topic_main=settings.storage_topic,
        topic_dicom_receive=log_topic,
        topic_dicom_state=settings.state_topic,
        topic_dicom_image=settings.image_topic,
        consumer_group_id=group,
    )
    return base


@contextmanager
def upstream_program(upstream_dir: Path, name: str, workdir: Path, config: dict) -> Iterator:
    """Run ``bin/<name>`` in ``workdir`` (with ``config`` as its ``application.dev.json``)
    in its own process group; yields ``(process, log path)``. Stopped with SIGTERM to the
    group, as upstream's README says; an exit other than by that signal raises, with the
    end of its log."""
    (workdir / "application.dev.json").write_text(json.dumps(config, indent=2))
    log_path = workdir / f"{name}.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(upstream_dir / "bin" / name)],
        cwd=workdir,
        env={**os.environ, "APP_ENV": "dev"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield proc, log_path
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
        log.close()
        if proc.returncode not in (0, -signal.SIGTERM, -signal.SIGKILL):
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")


@contextmanager
def site_database(postgres_url: str, ddl: Path = SITE_PG_DDL) -> Iterator[str]:
    """A PostgreSQL database of its own with the site's tables, for upstream's consumer
    (which writes the ``public`` schema); yields its URL."""
    name = "upstream_" + uuid.uuid4().hex[:8]
    base = make_url(postgres_url)
    admin = create_engine(base, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(False)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(ddl.read_text())
    engine.dispose()
    try:
        yield url
    finally:
        drop_database(admin, name)
        admin.dispose()


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and of its children it has waited for (user + system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _role(pid: int) -> str:
    """Which part of the deployment a process is, from its name and command line."""
    comm = Path(f"/proc/{pid}/comm").read_text().strip()
    if comm == "wado-run-worker":
        return "runs"
    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    if "wado_pipeline.instance.warm_process" in cmd:
        return "warm_process"
    if "dagster-daemon" in cmd or "dagster_daemon" in cmd:
        return "daemon"
    if "api grpc" in cmd or "code-server" in cmd:
        return "code_server"
    return "other"


def session_cpu_by_role(session: int) -> dict[str, float]:
    """CPU seconds of a session's live processes by part of the deployment: ``daemon``,
    ``code_server``, ``warm_process`` (its own work), ``runs`` (the run workers: those
    running, and those the warm process has reaped, counted in its children's time),
    ``other``. Sums to ``session_cpu_seconds``."""
    tck = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            pid = int(entry)
            fields = _stat_fields(pid)
            if int(fields[3]) != session:
                continue
            own = (int(fields[11]) + int(fields[12])) / tck
            reaped = (int(fields[13]) + int(fields[14])) / tck
            role = _role(pid)
        except (OSError, IndexError, ValueError):
            continue
        out[role] = out.get(role, 0.0) + own
        # A warm process reaps the run workers; anything else reaps its own helpers.
        helpers = "runs" if role == "warm_process" else role
        out[helpers] = out.get(helpers, 0.0) + reaped
    return out


def session_cpu_seconds(session: int) -> float:
    """CPU time of every live process of a session (a process group leader's tree):
    the daemon, its code server, the warm process and the run workers it reaped."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == session:  # field 6 of stat: the session id
                total += cpu_seconds(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return total
