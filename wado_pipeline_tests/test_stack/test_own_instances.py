"""The stack runs servers of its own and owns what it stops: it never adopts a server
already answering on a port, and a stop that leaves the port answering is an error."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from wado_pipeline.bench.sandbox import PROJECT
from wado_pipeline.settings import Settings
from wado_pipeline_tests.test_resources.test_grants import mariadb_as_root, psql_as_superuser

STATE = PROJECT / ".stack"
# What the machine's own servers listen on: the stack must not use these ports.
USUAL_PORTS = {"postgres": 5432, "mariadb": 3306, "kafka": 9092}


@contextmanager
def something_listening() -> Iterator[int]:
    """A TCP server that is no part of the stack: it accepts and closes; yields its port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        server.close()


def stack_script(tmp_path: Path, *args: str, **ports: int) -> subprocess.CompletedProcess:
    """``stack/service.sh`` on a state directory of its own (nothing started there)."""
    env = {**os.environ, "WADO_STACK_STATE": str(tmp_path / "state")}
    env.update({f"WADO_STACK_{name.upper()}_PORT": str(p) for name, p in ports.items()})
    return subprocess.run(
        ["bash", str(PROJECT / "stack/service.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("service", ["postgres", "mariadb", "kafka"])
def test_the_stack_neither_adopts_nor_claims_to_stop_a_server_it_did_not_start(service, tmp_path):
    """Something else answers on the service's port: a stop fails (the port still
    answers), and a start refuses to take that server for its own."""
    expected = {
        "stop": "still answers on 127.0.0.1:{port} after the stop",
        "start": "port {port} answers, but not " + service + " of this stack",
    }
    with something_listening() as port:
        for action, message in expected.items():
            done = stack_script(tmp_path, service, action, **{service: port})
            assert done.returncode != 0, action
            assert message.format(port=port) in done.stderr, done.stderr


@pytest.mark.stack
def test_the_stacks_servers_are_its_own():
    """The pipeline's defaults name the stack's own ports, none of the usual ones, and
    the servers answering there keep their data under .stack/."""
    s = Settings()
    ports = {
        "postgres": make_url(s.postgres_url).port,
        "mariadb": make_url(s.doris_url).port,
        "kafka": int(s.kafka_bootstrap.rsplit(":", 1)[1]),
    }
    assert all(ports[k] != USUAL_PORTS[k] for k in ports), ports
    pg = psql_as_superuser("SELECT current_setting('data_directory');\n")
    assert pg.returncode == 0, pg.stderr
    maria = mariadb_as_root("SELECT @@datadir;\n")
    assert maria.returncode == 0, maria.stderr
    assert str(STATE / "postgres") in pg.stdout, pg.stdout
    assert str(STATE / "mariadb") in maria.stdout, maria.stdout
    # ... and the pipeline's own connection to MariaDB reaches exactly that server
    engine = create_engine(s.doris_url)
    with engine.connect() as conn:
        assert str(STATE / "mariadb") in conn.execute(text("SELECT @@datadir")).scalar_one()
    engine.dispose()
