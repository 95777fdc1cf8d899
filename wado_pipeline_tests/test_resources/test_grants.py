"""Least-privilege grants: pinned text, and they execute on the local PostgreSQL and
MariaDB (run as the stack's superusers, the way a DBA would)."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from wado_pipeline.bench.sandbox import PROJECT

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def print_grants(*args: str, settings=None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WADO_")}
    if settings is not None:
        env.update(settings.to_env())
    return subprocess.run(
        [sys.executable, "-m", "wado_pipeline.cli", "init-db", "--print-grants", *args],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout


def test_grants_equal_golden_file():
    assert print_grants("wado_pipeline") == (GOLDEN / "grants.sql").read_text()


def test_grants_name_no_ddl_and_no_delete():
    text = print_grants("wado_pipeline").upper()
    statements = [line for line in text.splitlines() if line.startswith("GRANT")]
    assert statements
    for word in ("CREATE", "ALTER", "DROP", "DELETE", "ALL PRIVILEGES", "ALTER_PRIV"):
        assert not any(word in s for s in statements), word


def psql_as_superuser(sql: str) -> subprocess.CompletedProcess:
    """``sql`` as the superuser of the stack's own PostgreSQL, database ``wado``."""
    return subprocess.run(
        ["bash", str(PROJECT / "stack/superuser.sh"), "postgres", "wado"],
        input=sql,
        capture_output=True,
        text=True,
    )


def mariadb_as_root(sql: str) -> subprocess.CompletedProcess:
    """``sql`` as root of the stack's own MariaDB."""
    return subprocess.run(
        ["bash", str(PROJECT / "stack/superuser.sh"), "mariadb"],
        input=sql,
        capture_output=True,
        text=True,
    )


@pytest.mark.stack
def test_printed_grants_execute_cleanly(settings):
    """On this test's tables (made by the sandbox as init-db would)."""
    role, reader = f"g_{uuid.uuid4().hex[:8]}", f"r_{uuid.uuid4().hex[:8]}"
    pg = print_grants(role, "--reader", reader, "--backend", "postgres", settings=settings)
    created = psql_as_superuser(f'CREATE ROLE "{role}" LOGIN; CREATE ROLE "{reader}" LOGIN;')
    assert created.returncode == 0, created.stderr
    try:
        done = psql_as_superuser(pg)
        assert done.returncode == 0 and "ERROR" not in done.stderr, done.stderr
    finally:
        psql_as_superuser(
            f'DROP OWNED BY "{role}", "{reader}"; DROP ROLE "{role}"; DROP ROLE "{reader}";'
        )
    maria = print_grants(role, "--reader", reader, "--backend", "mariadb", settings=settings)
    users = f"CREATE USER '{role}'@'%'; CREATE USER '{reader}'@'%';"
    try:
        done = mariadb_as_root(users + "\n" + maria)
        assert done.returncode == 0, done.stderr
    finally:
        mariadb_as_root(f"DROP USER IF EXISTS '{role}'@'%', '{reader}'@'%';")
