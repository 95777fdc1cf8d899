"""Isolated namespaces on a running stack, for the benchmark and the tests.

A namespace is a set of settings with their own topics, PostgreSQL schema and MariaDB
database (dropped afterwards); a Dagster home has its own dagster-postgres storage
database. Dagster processes started here run in their own session and are stopped
with it.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from kafka import KafkaAdminClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from wado_pipeline.resources.configured import build_resources
from wado_pipeline.resources.dagster_instance.dagster_storage import create_dagster_storage
from wado_pipeline.resources.kafka import KafkaResource
from wado_pipeline.settings import Settings, topic_specs

PROJECT = Path(__file__).resolve().parents[2]


@contextmanager
def namespace(base: Settings, root: Path, prefix: str, **overrides) -> Iterator[Settings]:
    """Settings with their own topics, PostgreSQL schema and MariaDB database."""
    tag = f"{prefix}_{uuid.uuid4().hex[:10]}"
    s = dataclasses.replace(
        base,
        storage_topic=f"{tag}_storage",
        state_topic=f"{tag}_state",
        image_topic=f"{tag}_image",
        dlq_topic=f"{tag}_dlq",
        consumer_group=f"{tag}_group",
        postgres_schema=tag,
        doris_url=make_url(base.doris_url).set(database=tag).render_as_string(False),
        doris_flavor="mariadb",
        storage_roots=(root,),
        **overrides,
    )
    # The production topic definition, under this namespace's names.
    KafkaResource(bootstrap=base.kafka_bootstrap).ensure_topics(topic_specs(s))
    admin = KafkaAdminClient(bootstrap_servers=base.kafka_bootstrap, request_timeout_ms=10000)
    maria = create_engine(base.doris_url, pool_pre_ping=True)
    with maria.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{tag}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
    # The tables, as a site's DBA makes them (`wado-pipeline init-db`): runs only check them.
    owner = build_resources(s, env_secrets=False)
    for backend in (owner["postgres"], owner["doris"]):
        backend.create_tables()
        backend.dispose()
    try:
        yield s
    finally:
        admin.delete_topics([s.storage_topic, s.state_topic, s.image_topic, s.dlq_topic])
        admin.close()
        with maria.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{tag}`"))
        maria.dispose()
        pg = create_engine(base.postgres_url, pool_pre_ping=True)
        with pg.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{tag}" CASCADE'))
        pg.dispose()


@contextmanager
def dagster_home(
    directory: Path, postgres_url: str, create_storage: bool = True
) -> Iterator[tuple[Path, str]]:
    """A DAGSTER_HOME with the project's dagster.yaml and its own storage database, whose
    tables are made as `wado-pipeline init-db` makes them unless ``create_storage`` is
    false; yields (home, storage URL)."""
    home = directory / "dagster_home"
    home.mkdir(parents=True)
    shutil.copy(PROJECT / "dagster.yaml", home / "dagster.yaml")
    db = "dagster_" + uuid.uuid4().hex[:8]
    base = make_url(postgres_url)
    # pre-ping: a test may have restarted PostgreSQL since this engine last connected
    admin = create_engine(base, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db}"'))
    url = base.set(drivername="postgresql+psycopg2", database=db).render_as_string(False)
    if create_storage:
        create_dagster_storage(url)
    try:
        yield home, url
    finally:
        drop_database(admin, db)
        admin.dispose()


def drop_database(admin, db: str, timeout: float = 120.0) -> None:
    """Drop ``db``, ending its sessions. An autovacuum worker (a superuser's session,
    which the pipeline's role may not end) can be cleaning it after a mass deletion:
    then wait for it to finish and try again."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
            return
        except ProgrammingError as exc:
            if "pg_signal_backend" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@contextmanager
def dagster_process(
    command: Sequence[str],
    settings: Settings,
    home: Path,
    storage_url: str,
    stop_signal: int = signal.SIGTERM,
) -> Iterator[subprocess.Popen]:
    """Run a Dagster command (``dagster-daemon run``, ``dagster dev``) on the project's
    workspace for ``settings``; its output goes to ``<home>/<command>.log``.

    The working directory is the home, not the project: Dagster would load a ``.env``
    found in the working directory over this environment."""
    env = {
        **os.environ,
        **settings.to_env(),
        "DAGSTER_HOME": str(home),
        "DAGSTER_POSTGRES_URL": storage_url,
    }
    binary = str(Path(sys.executable).parent / command[0])
    log = open(home / f"{command[0]}.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [binary, *command[1:], "-w", str(PROJECT / "workspace.yaml")],
        cwd=home,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        os.killpg(proc.pid, stop_signal)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
