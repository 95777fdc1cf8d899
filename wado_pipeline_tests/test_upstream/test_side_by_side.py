"""The pipeline against the real upstream programs, on the real receiver's traffic.

dcmtk's ``storescu`` sends every file of pydicom's test data (both wheels) that it can
to upstream's receiver (``wado-storescp``), which stores them and publishes their store
messages with its own producer (snappy). Upstream's consumer (``wado-consumer``) and the
pipeline then each read that storage topic, each from an identical copy of the stored
files (both transcode in place), each into its own PostgreSQL tables made by the site's
DDL. Their three tables and their state and image topics are compared column by column
and field by field; the only differences allowed are those of
``wado_pipeline.core.compatibility``, each with its reason (the README's Compatibility
table is made from the same list).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import data_store
import pytest
from dagster import instance_for_test
from kafka.admin import NewTopic
from pydicom.data import get_testdata_file
from sqlalchemy import create_engine, text

from wado_pipeline.core import compatibility as C
from wado_pipeline.core import schema as S
from wado_pipeline_tests.support import drain_through_sensor, free_port, site_postgres_tables
from wado_pipeline_tests.upstream import (
    MAX_STORE_PATH,
    UpstreamSite,
    read_topic,
    short_directory,
    site_database,
    upstream_missing,
)

MISSING = upstream_missing()
pytestmark = [
    pytest.mark.stack,
    pytest.mark.upstream,
    pytest.mark.skipif(MISSING is not None, reason=MISSING or ""),
]

# pydicom's test data: the files of the pydicom wheel, its charset files, and the
# download-only files of the pydicom-data wheel.
PYDICOM_DATA = (
    Path(get_testdata_file("CT_small.dcm", download=False)).parent,
    Path(get_testdata_file("CT_small.dcm", download=False)).parents[1] / "charset_files",
    Path(os.path.dirname(data_store.__file__)) / "data",
)
TABLES = (S.OBJECT_META, S.STATE_META, S.IMAGE_META)


def _rows(url: str, schema: str, table: S.Table) -> dict[tuple, dict]:
    """Every row of a site table, by key, every column the site's table has."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            result = conn.execute(text(f'SELECT * FROM "{schema}".{table.name}'))
            rows = [dict(r._mapping) for r in result]
    finally:
        engine.dispose()
    return {tuple(r[k] for k in table.key): r for r in rows}


def _latest_by_key(records: list[tuple[bytes | None, dict]]) -> dict[bytes | None, dict]:
    out = {}
    for key, value in records:
        out[key] = value  # offset order: the last record of a key is what upserts keep
    return out


def _differences(where: str, upstream: dict, pipeline: dict) -> list[C.Observed]:
    """Every key present on one side only, and every column or field that differs."""
    out = []
    for key in sorted(set(upstream) | set(pipeline), key=repr):
        if key not in pipeline:
            out.append(C.Observed(where, "<key>", f"{key!r} upstream only"))
            continue
        if key not in upstream:
            out.append(C.Observed(where, "<key>", f"{key!r} pipeline only"))
            continue
        a, b = upstream[key], pipeline[key]
        for column in sorted(set(a) | set(b)):
            if column not in b:
                out.append(C.Observed(where, column, "upstream only"))
            elif column not in a:
                out.append(C.Observed(where, column, "pipeline only"))
            elif a[column] != b[column]:
                out.append(C.Observed(where, column, f"{a[column]!r} != {b[column]!r}"))
    return out


@pytest.fixture
def site(settings, admin):
    with short_directory() as workdir, site_database(settings.postgres_url) as database_url:
        store = workdir / "store"
        assert len(str(store)) <= MAX_STORE_PATH
        prefix = settings.storage_topic.removesuffix("_storage")
        up = UpstreamSite(
            workdir=workdir,
            store=store,
            settings=dataclasses.replace(settings, storage_roots=(store,)),
            log_topic=f"{prefix}_log",
            state_topic=f"{prefix}_upstate",
            image_topic=f"{prefix}_upimage",
            group=f"{prefix}_upgroup",
            database_url=database_url,
            port=free_port(),
        )
        extra = [up.log_topic, up.state_topic, up.image_topic]
        admin.create_topics([NewTopic(t, 1, 1) for t in extra])
        up.write_config()
        try:
            yield up
        finally:
            admin.delete_topics(extra)


def test_same_rows_and_records_as_upstreams_consumer(site):
    settings = site.settings
    published = site.receive(list(PYDICOM_DATA))
    assert published >= 100, published  # most of pydicom's files are sendable

    # Each consumer from an identical copy of the stored files: both rewrite
    # NeedTransfer files in place.
    received = site.workdir / "received"
    shutil.copytree(site.store, received)
    site.consume(published)
    shutil.rmtree(site.store)
    shutil.copytree(received, site.store)

    site_postgres_tables(settings)
    with instance_for_test() as instance:
        results = drain_through_sensor(settings, instance)
    assert results and all(r.success for r in results)

    observed: list[C.Observed] = []
    for table in TABLES:
        up = _rows(site.database_url, "public", table)
        ours = _rows(settings.postgres_url, settings.postgres_schema, table)
        if table is S.OBJECT_META:
            # every message the receiver published has its receipt, in both
            assert len(up) == len(ours) == published
        observed += _differences(f"postgres.{table.name}", up, ours)
    for kind, theirs, mine in (
        ("state", site.state_topic, settings.state_topic),
        ("image", site.image_topic, settings.image_topic),
    ):
        up = _latest_by_key(read_topic(settings.kafka_bootstrap, theirs))
        ours = _latest_by_key(read_topic(settings.kafka_bootstrap, mine))
        assert up and ours
        observed += _differences(f"topic.{kind}", up, ours)

    unexplained = [o for o in observed if not C.explains(o)]
    assert not unexplained, _summary(unexplained)


def _summary(observed: list[C.Observed]) -> str:
    """Per field: how many rows or records differ, and the first two of them."""
    by_field: dict[str, list[C.Observed]] = {}
    for o in observed:
        by_field.setdefault(f"{o.place}.{o.column}", []).append(o)
    return "\n".join(
        f"{name}: {len(seen)} difference(s), e.g. " + "; ".join(o.what for o in seen[:2])
        for name, seen in sorted(by_field.items())
    )
