"""The real upstream programs (``../shared/upstream/bin``) as test peers.

``wado-storescp`` is the DICOM receiver a site runs: it stores each instance it is sent
and publishes its store message, with its own librdkafka producer settings (snappy). The
``wado-consumer`` is the Rust consumer the pipeline replaces. Both read
``application.<APP_ENV>.json`` from their working directory; ``UpstreamSite`` writes one
per test, with the test's own topics, database and storage path.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from wado_pipeline.bench.sandbox import PROJECT
from wado_pipeline.bench.upstream import site_database as bench_site_database
from wado_pipeline.bench.upstream import upstream_config, upstream_program
from wado_pipeline.settings import Settings
from wado_pipeline_tests.support import SITE_PG_DDL, end_offsets, wait_until

# Where this workplace keeps its shared folder, for a clone made somewhere else (CI's).
WORKPLACE = Path("/work")


def _upstream_dir() -> Path:
    """``WADO_UPSTREAM_DIR``, else the first ``shared/upstream`` beside the project or
    beside one of its parents (a clone may sit deeper than ``../``)."""
    if os.environ.get("WADO_UPSTREAM_DIR"):
        return Path(os.environ["WADO_UPSTREAM_DIR"])
    for parent in [*PROJECT.parents, WORKPLACE]:
        if (parent / "shared" / "upstream" / "bin").is_dir():
            return parent / "shared" / "upstream"
    return PROJECT.parent / "shared" / "upstream"


UPSTREAM_DIR = _upstream_dir()
AE_TITLE = "STORE-SCP"
# The receiver refuses a storage path of 64 characters or more.
MAX_STORE_PATH = 63


def upstream_missing() -> str | None:
    """Why the upstream programs cannot run here, or None when they can."""
    for name in ("wado-storescp", "wado-consumer"):
        binary = UPSTREAM_DIR / "bin" / name
        if not os.access(binary, os.X_OK):
            return (
                f"the upstream programs are not here ({binary} missing; set "
                "WADO_UPSTREAM_DIR to a directory with bin/wado-storescp and bin/wado-consumer)"
            )
    if shutil.which("storescu") is None:
        return "dcmtk's storescu is not installed (make up installs it with the upstream programs)"
    return None


@dataclass
class UpstreamSite:
    """One site's configuration for the upstream programs, on the test's own names."""

    workdir: Path
    store: Path
    settings: Settings  # the pipeline's: the storage topic both read, the broker
    log_topic: str
    state_topic: str
    image_topic: str
    group: str
    database_url: str
    port: int

    def write_config(self) -> None:
        """This site's ``application.dev.json`` (also written by each program's start)."""
        (self.workdir / "application.dev.json").write_text(json.dumps(self.config(), indent=2))

    def config(self) -> dict:
        own = dataclasses.replace(
            self.settings, state_topic=self.state_topic, image_topic=self.image_topic
        )
        return upstream_config(
            UPSTREAM_DIR,
            own,
            self.database_url,
            self.store,
            self.log_topic,
            self.group,
            receiver_port=self.port,
            ae_title=AE_TITLE,
        )

    @contextmanager
    def program(self, name: str) -> Iterator[Path]:
        """Run ``bin/<name>`` in the site's directory (``bench.upstream``); yields its
        log file."""
        with upstream_program(UPSTREAM_DIR, name, self.workdir, self.config()) as (_, log):
            yield log

    def receive(self, directories: list[Path]) -> int:
        """Start the receiver, send it every file of ``directories`` with dcmtk's
        storescu, and return how many store messages it published (all of them on the
        storage topic before this returns)."""
        with self.program("wado-storescp") as log:
            wait_until(lambda: _port_open(self.port), 60, "the receiver to listen")
            subprocess.run(
                ["storescu", "-aec", AE_TITLE, "+sd", "+r", "-nh", "127.0.0.1", str(self.port)]
                + [str(d) for d in directories],
                capture_output=True,
                timeout=600,
            )  # storescu exits non-zero when some file was refused; the rest were stored

            def published() -> int | None:
                stored = log.read_text(errors="replace").count("INFO file path:")
                on_topic = sum(
                    end_offsets(self.settings.kafka_bootstrap, self.settings.storage_topic).values()
                )
                return stored if stored and on_topic == stored else None

            return wait_until(published, 120, "the receiver to publish every stored file")

    def consume(self, messages: int) -> None:
        """Run upstream's consumer until it has processed ``messages`` messages (its own
        log line per batch), then stop it."""
        with self.program("wado-consumer") as log:

            def processed() -> bool:
                done = re.findall(
                    r"processed\s+(\d+) messages over", log.read_text(errors="replace")
                )
                return sum(int(n) for n in done) >= messages

            wait_until(processed, 300, f"upstream's consumer to process {messages} messages")


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@contextmanager
def site_database(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL database of its own with the site's tables (the site-DDL fixture)."""
    with bench_site_database(postgres_url, SITE_PG_DDL) as url:
        yield url


@contextmanager
def short_directory() -> Iterator[Path]:
    """A directory whose path leaves room under the receiver's 64-character limit."""
    path = Path(tempfile.mkdtemp(prefix="wado-up-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def read_topic(bootstrap: str, topic: str) -> list[tuple[bytes | None, dict]]:
    """Every (key, JSON value) of a topic, partition by partition in offset order."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    try:
        ends = {TopicPartition(topic, p): n for p, n in end_offsets(bootstrap, topic).items() if n}
        out = []
        for tp, end in ends.items():
            consumer.assign([tp])
            consumer.seek(tp, 0)
            deadline = time.monotonic() + 60
            while consumer.position(tp) < end and time.monotonic() < deadline:
                for recs in consumer.poll(timeout_ms=1000).values():
                    out.extend((r.key, json.loads(r.value)) for r in recs if r.offset < end)
        return out
    finally:
        consumer.close()
