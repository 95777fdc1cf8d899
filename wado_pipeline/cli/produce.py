"""``wado-pipeline produce``: publish a store message per DICOM file, as the receiver does."""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pydicom
from kafka import KafkaProducer

from wado_pipeline.core.dicom.receiver import receiver_layout, store_message
from wado_pipeline.settings import Settings


def messages_for_directory(directory: Path, root: Path, tenant: str) -> Iterator[dict]:
    """Copy every readable Part-10 file under ``directory`` into the storage root as
    the receiver does, and yield its store message. Unreadable files are skipped
    with a note on stderr (the receiver would not have stored them)."""
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            dest = receiver_layout(root, tenant, ds)
            ds.file_meta.TransferSyntaxUID  # noqa: B018 - a stored file has one
        except Exception as exc:
            print(f"skipped {path.name}: {type(exc).__name__}", file=sys.stderr)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.resolve() != path.resolve():
            shutil.copyfile(path, dest)
        yield store_message(dest, ds, tenant)


def publish(
    settings: Settings,
    messages: Iterable[dict],
    total: int | None = None,
    rate: float | None = None,
    progress: bool = True,
) -> int:
    """Publish store messages (keyed by series, like the receiver keeps a series together)
    at most ``rate`` per second; returns how many were acknowledged."""
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5, client_id="wado-cli"
    )
    futures = []
    start = time.monotonic()
    try:
        for i, m in enumerate(messages, 1):
            if rate:
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            futures.append(
                producer.send(
                    settings.storage_topic,
                    key=m["series_uid"].encode(),
                    value=json.dumps(m).encode(),
                )
            )
            if progress and sys.stderr.isatty() and (i % 100 == 0 or i == total):
                of = f"/{total}" if total else ""
                print(f"\rproduced {i}{of}", end="", file=sys.stderr, flush=True)
        producer.flush()
        for f in futures:
            f.get(timeout=30)
    finally:
        producer.close()
    if progress and sys.stderr.isatty():
        print(file=sys.stderr)
    return len(futures)
