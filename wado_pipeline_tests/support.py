"""The test-support module: helpers shared by tests (archives, runs, sensor ticks, table
dumps, topic reads, stack services). Fixtures stay in ``conftest``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path

import pydicom
from dagster import DagsterInstance, build_sensor_context, reconstructable
from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import create_engine, text

from wado_pipeline.bench.sandbox import PROJECT
from wado_pipeline.bench.synthetic import synthetic_archive
from wado_pipeline.bench.upstream import SITE_PG_DDL
from wado_pipeline.core import schema as S
from wado_pipeline.core.dicom.receiver import store_message
from wado_pipeline.core.planning import OffsetRange
from wado_pipeline.core.run_contract import (
    JOB_NAME,
    SENSOR_NAME,
    VERIFY_JOB,
    range_from_run_config,
    run_config_for,
)
from wado_pipeline.dagster_internals import ReconstructableJob
from wado_pipeline.definitions import build_definitions
from wado_pipeline.resources.configured import build_resources
from wado_pipeline.settings import Settings
from wado_pipeline_tests.corpus import corpus_files

CORPUS_SAMPLE = (
    "CT_small.dcm",
    "MR_small.dcm",
    "JPEG2000.dcm",
    "US1_J2KR.dcm",
    "rtplan.dcm",
    "SC_rgb.dcm",
)


def corpus_messages(root: Path, tenant: str = "T1") -> list[dict]:
    """Store messages for a few real corpus files copied under ``root``."""
    out = []
    by_name = {p.name: p for p in corpus_files()}
    for name in CORPUS_SAMPLE:
        src = by_name[name]
        dest = root / tenant / "corpus" / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        ds = pydicom.dcmread(dest, stop_before_pixels=True)
        out.append(store_message(dest, ds, tenant))
    return out


def synthetic_messages(root: Path, n: int, tenant: str = "T1", seed: str = "t") -> list[dict]:
    return [m for _, _, m in synthetic_archive(root, tenant, n, seed=seed, rows=64)]


def run_range(
    settings: Settings,
    instance: DagsterInstance,
    partition: int,
    start: int,
    end: int,
    raise_on_error: bool = True,
    asset_selection: list | None = None,
):
    """One batch run in process; ``asset_selection`` (asset keys) for a subset run."""
    defs = build_definitions(settings)
    job = defs.resolve_job_def(JOB_NAME)
    rng = OffsetRange(settings.storage_topic, partition, start, end)
    return job.execute_in_process(
        run_config=run_config_for(rng),
        instance=instance,
        raise_on_error=raise_on_error,
        asset_selection=asset_selection,
    )


def verify(settings: Settings, instance: DagsterInstance, resources: dict | None = None):
    """The verify_batches job in process: the batch checks over every range that
    succeeded in ``instance`` since its last verification."""
    job = build_definitions(settings).resolve_job_def(VERIFY_JOB)
    return job.execute_in_process(instance=instance, resources=resources)


def job_from_env():
    """The ingest job built from the environment (target of ``reconstructable``)."""
    return build_definitions(Settings.from_env()).resolve_job_def(JOB_NAME)


def reconstructable_job():
    """``reconstructable(job_from_env)`` for this test's environment.

    Dagster keeps the last loaded job in a process-wide cache keyed by the code
    pointer, which is the same in every test; clear it so each test's settings
    are read again."""
    ReconstructableJob.get_repository_definition.cache_clear()
    ReconstructableJob.get_definition.cache_clear()
    return reconstructable(job_from_env)


def _as_time(value):
    """PyMySQL returns TIME columns as timedelta; compare them as times of day."""
    if isinstance(value, timedelta):
        return (datetime.min + value).time()
    return value


def dump_tables(settings: Settings) -> dict[str, list[tuple]]:
    """Every row of the six tables (and the error table), ordered by key."""
    out = {}
    pg = create_engine(settings.postgres_url)
    with pg.connect() as conn:
        for t in (*S.PIPELINE_TABLES, S.INGEST_ERROR):
            t = t.for_backend("postgres")
            order = ", ".join(f'"{k}"' for k in t.key)
            cols = ", ".join(f'"{c}"' for c in t.column_names)
            try:
                rows = conn.execute(
                    text(
                        f'SELECT {cols} FROM "{settings.postgres_schema}".{t.name} ORDER BY {order}'
                    )
                ).all()
            except Exception:
                rows = None
                conn.rollback()
            out[f"postgres.{t.name}"] = [tuple(r) for r in rows] if rows is not None else None
    pg.dispose()
    maria = create_engine(settings.doris_url)
    with maria.connect() as conn:
        for t in S.PIPELINE_TABLES:
            t = t.for_backend("mariadb")
            order = ", ".join(f"`{k}`" for k in t.key)
            cols = ", ".join(f"`{c}`" for c in t.column_names)
            rows = conn.execute(text(f"SELECT {cols} FROM {t.name} ORDER BY {order}")).all()
            out[f"doris.{t.name}"] = [tuple(_as_time(v) for v in r) for r in rows]
    maria.dispose()
    return out


def expected_from_files(messages: list[dict]) -> dict[str, set]:
    """Keys the tables must hold, computed from the files by a plain pydicom read."""
    objects, states, images = set(), set(), set()
    for m in messages:
        ds = pydicom.dcmread(m["file_path"], stop_before_pixels=True)
        objects.add(m["trace_id"])
        states.add((m["tenant_id"], str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)))
        images.add(
            (
                m["tenant_id"],
                str(ds.StudyInstanceUID),
                str(ds.SeriesInstanceUID),
                str(ds.SOPInstanceUID),
                int(ds.Rows) if "Rows" in ds else None,
            )
        )
    return {"objects": objects, "states": states, "images": images}


def encode(messages: list[dict]) -> list[bytes]:
    return [json.dumps(m).encode() for m in messages]


def wait_until(condition, timeout: float, what: str, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line, or whose parent's, mentions ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
            state = (entry / "stat").read_text().split()[2]
        except OSError:
            continue
        if text in cmd and state != "Z":
            found.append(int(entry.name))
    return found


def await_exit_of_processes_mentioning(text: str, timeout: float, what: str) -> None:
    """Wait until no process mentions ``text``; past ``timeout``, kill those left and fail
    naming each (pid and command), so a shutdown that hangs says what kept it alive."""
    try:
        wait_until(lambda: not processes_mentioning(text), timeout, what, interval=2)
    except AssertionError:
        left = []
        for pid in processes_mentioning(text):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                os.kill(pid, signal.SIGKILL)
            except OSError:
                continue
            left.append(f"pid {pid}: {cmd.decode(errors='replace')[:200]}")
        if left:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}; still running (now "
                "killed):\n" + "\n".join(left)
            ) from None


def free_port() -> int:
    """A TCP port nothing listens on now (for a server a test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service(name: str, action: str) -> None:
    """Stop or start one service of the local stack (stack/service.sh)."""
    subprocess.run(
        ["bash", str(PROJECT / "stack/service.sh"), name, action], check=True, capture_output=True
    )


def assert_tables_match(settings: Settings, messages: list[dict]) -> dict[str, list[tuple]]:
    """Every table holds exactly the rows the messages call for, once."""
    tables = dump_tables(settings)
    expected = expected_from_files(messages)
    for backend in ("postgres", "doris"):
        objects = [r[0] for r in tables[f"{backend}.dicom_object_meta"]]
        assert sorted(objects) == sorted(expected["objects"]), backend
        images = [r[:1] + r[2:5] for r in tables[f"{backend}.dicom_image_meta"]]
        assert len(images) == len(set(images)) == len({e[:4] for e in expected["images"]})
        states = [r[:1] + r[2:4] for r in tables[f"{backend}.dicom_state_meta"]]
        assert sorted(states) == sorted(expected["states"]), backend
    return tables


def consume_all(bootstrap: str, topic: str, expected: int | None = None, timeout_s: float = 10):
    """Every record of a one-partition topic (waits until ``expected`` arrived)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    end = consumer.end_offsets([tp])[tp]
    out = []
    deadline = time.monotonic() + timeout_s
    while consumer.position(tp) < end and time.monotonic() < deadline:
        for recs in consumer.poll(timeout_ms=500).values():
            out.extend(recs)
    consumer.close()
    if expected is not None:
        assert len(out) == expected, f"{topic}: {len(out)} records, expected {expected}"
    return out


def tick(settings: Settings, instance: DagsterInstance, cursor: str | None = None):
    """One evaluation of the storage topic sensor for ``settings``."""
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    with build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs, resources=build_resources(settings)
    ) as ctx:
        return sensor.evaluate_tick(ctx)


def ranges(result) -> list[tuple[int, int, int]]:
    """(partition, start, end) of each run a tick requested."""
    out = []
    for r in result.run_requests:
        rng = range_from_run_config(r.run_config)
        out.append((rng.partition, rng.start, rng.end))
    return out


def drain_through_sensor(settings: Settings, instance: DagsterInstance, timeout: float = 120):
    """Tick the storage topic sensor until it has handed every offset of the topic to a
    run, running each requested range in process as it comes; returns the runs' results.
    Ticks come about once a second: a small batch waits for its age trigger."""
    ends = {
        p: n for p, n in end_offsets(settings.kafka_bootstrap, settings.storage_topic).items() if n
    }
    handed: dict[int, int] = {}
    results = []
    state = {"cursor": None}

    def step() -> bool:
        result = tick(settings, instance, state["cursor"])
        state["cursor"] = result.cursor or state["cursor"]
        for partition, start, end in ranges(result):
            results.append(run_range(settings, instance, partition, start, end))
            handed[partition] = max(handed.get(partition, 0), end)
        return all(handed.get(p, 0) >= n for p, n in ends.items())

    wait_until(step, timeout, "the sensor to hand every offset to a run")
    return results


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        return {tp.partition: n for tp, n in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def site_postgres_tables(settings: Settings) -> None:
    """Replace the namespace's tables with the site's own (fixture DDL); the error
    table, which a site lacks, is what `init-db` adds."""
    engine = create_engine(settings.postgres_url)
    schema = settings.postgres_schema
    with engine.begin() as conn:
        conn.execute(text(f'SET search_path TO "{schema}"'))
        for t in ("dicom_state_meta", "dicom_image_meta", "dicom_object_meta"):
            conn.execute(text(f'DROP TABLE "{schema}".{t}'))
        conn.exec_driver_sql(SITE_PG_DDL.read_text())
    engine.dispose()


def _string(buf: bytes, at: int) -> tuple[str, int]:
    (n,) = struct.unpack_from(">h", buf, at)
    return buf[at + 2 : at + 2 + max(n, 0)].decode(), at + 2 + max(n, 0)


def _uvarint(buf: bytes, at: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = buf[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def offset_commits(bootstrap: str, group: str, topic: str, partition: int) -> list[tuple]:
    """``(offset, commit_timestamp_ms)`` of every commit the broker recorded for the
    group's partition, oldest first, read from ``__consumer_offsets`` itself (key v1,
    value v1, v3 or v4 as Kafka's OffsetCommitValue schema lays them out)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=2000
    )
    try:
        parts = consumer.partitions_for_topic("__consumer_offsets") or set()
        tps = [TopicPartition("__consumer_offsets", p) for p in parts]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        consumer.seek_to_beginning(*tps)
        found = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for records in consumer.poll(timeout_ms=1000).values():
                for m in records:
                    if not m.key or struct.unpack_from(">h", m.key)[0] > 1 or not m.value:
                        continue
                    g, at = _string(m.key, 2)
                    t, at = _string(m.key, at)
                    (p,) = struct.unpack_from(">i", m.key, at)
                    if (g, t, p) != (group, topic, partition):
                        continue
                    version, (offset,) = (
                        struct.unpack_from(">h", m.value)[0],
                        struct.unpack_from(">q", m.value, 2),
                    )
                    at = 10 + (4 if version >= 3 else 0)  # leader epoch from v3
                    if version >= 4:  # flexible: compact string
                        n, at = _uvarint(m.value, at)
                        at += max(n - 1, 0)
                    else:
                        _, at = _string(m.value, at)
                    (committed_ms,) = struct.unpack_from(">q", m.value, at)
                    found.append((m.timestamp, offset, committed_ms))
        return [(o, ts) for _, o, ts in sorted(found)]
    finally:
        consumer.close()


def postgres_rows(settings: Settings, table: str) -> int:
    """Rows of one of the pipeline's PostgreSQL tables in the test's schema."""
    engine = create_engine(settings.postgres_url)
    try:
        with engine.connect() as conn:
            sql = f'SELECT count(*) FROM "{settings.postgres_schema}".{table}'
            return conn.execute(text(sql)).scalar_one()
    finally:
        engine.dispose()


def await_group_offsets(settings: Settings, ends: dict[int, int], timeout: float, what: str):
    """Until the consumer group's committed offsets on the storage topic are ``ends``."""
    from wado_pipeline.resources.kafka import KafkaResource

    kafka = KafkaResource(bootstrap=settings.kafka_bootstrap)
    group, topic = settings.consumer_group, settings.storage_topic
    wait_until(lambda: kafka.committed_offsets(group, topic, list(ends)) == ends, timeout, what)
