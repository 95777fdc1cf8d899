"""Apache Doris, one resource class per way of loading it, and its MariaDB stand-in.

``definitions.py`` picks one from the settings (``WADO_DORIS_FLAVOR``,
``WADO_DORIS_LOAD``); the ops call ``write_batch`` and never branch on the backend.

- ``MariaDBResource``: the local stand-in speaking Doris' MySQL protocol; primary keys
  and a guarded ``INSERT … ON DUPLICATE KEY UPDATE`` (latest ``updated_time`` wins).
- ``DorisInsertResource``: Doris over the MySQL protocol; UNIQUE KEY merge-on-write
  tables upsert whole rows, their sequence column keeps the newest version.
- ``DorisStreamLoadResource``: Doris through the FE's HTTP Stream Load, one load per
  table and batch, labelled so a retried or re-executed batch loads once.
- ``DorisRoutineLoadResource``: the site's Routine Load jobs load Doris from the
  topics; runs write nothing there and await the batch's keys.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import ClassVar

import pymysql
from pydantic import PrivateAttr
from sqlalchemy import Engine, Table, text
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateTable

from wado_pipeline.core import schema as S
from wado_pipeline.core.planning import OffsetRange
from wado_pipeline.resources.sql.backend import TRANSIENT_DB_ERRORS, Rows, SqlBackend
from wado_pipeline.resources.sql.mysql_tls import share_tls_context
from wado_pipeline.resources.sql.queries import count_present
from wado_pipeline.resources.sql.tables import doris_ddl, sa_tables
from wado_pipeline.resources.sql.upserts import doris_insert_sql, mariadb_upsert
from wado_pipeline.resources.stream_load import LoadResult, StreamLoader, encode_rows, make_label
from wado_pipeline.settings import Settings


class DorisBackend(SqlBackend):
    """The pipeline tables in the database named by ``url`` (MySQL protocol): the type
    the ops and checks ask for, whichever subclass the settings chose."""

    connect_args: ClassVar = {"charset": "utf8mb4"}
    backend: ClassVar[S.Backend] = "doris"
    # Writes through the raw PyMySQL cursor (``DorisInsertResource``) raise PyMySQL's own
    # errors, not SQLAlchemy's: a dropped connection must be retried all the same.
    transient_errors: ClassVar[tuple[type[BaseException], ...]] = (
        *TRANSIENT_DB_ERRORS,
        pymysql.err.OperationalError,
        pymysql.err.InterfaceError,
    )

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = share_tls_context(super().engine)
        return self._engine

    @property
    def tables(self) -> dict[str, Table]:
        all_tables = sa_tables(self.backend, None)
        return {t.name: all_tables[t.name] for t in S.PIPELINE_TABLES}

    def _catalog(self, conn) -> dict[str, dict[str, str]]:
        return self._catalog_query(conn, "table_schema = DATABASE()", {})


class MariaDBResource(DorisBackend):
    service_name: ClassVar[str] = "MariaDB (Doris stand-in)"
    backend: ClassVar[S.Backend] = "mariadb"

    def _create_tables(self, conn) -> None:
        # IF NOT EXISTS, not a look-then-create: concurrent runs must not race
        for t in self.tables.values():
            conn.execute(CreateTable(t, if_not_exists=True))

    def _write(self, rows_by_table: Rows, rng: OffsetRange | None) -> dict[str, int]:
        tables = self.tables
        with self.engine.begin() as conn:
            for name, rows in rows_by_table.items():
                if rows:
                    conn.execute(mariadb_upsert(self.specs[name], tables[name]), list(rows))
        return {name: len(rows) for name, rows in rows_by_table.items()}


class DorisInsertResource(DorisBackend):
    buckets: int = Settings.doris_buckets
    replication_num: int = Settings.doris_replication_num

    service_name: ClassVar[str] = "Doris"

    def _create_tables(self, conn) -> None:
        for stmt in doris_ddl(self.buckets, self.replication_num).split(";\n"):
            if stmt.strip():
                conn.execute(text(stmt))

    def _write(self, rows_by_table: Rows, rng: OffsetRange | None) -> dict[str, int]:
        # Each INSERT is its own Doris transaction; upserts make a retry safe.
        raw = self.engine.raw_connection()
        try:
            with raw.cursor() as cur:
                for name, rows in rows_by_table.items():
                    if rows:
                        cur.executemany(doris_insert_sql(self.specs[name]), list(rows))
                        raw.commit()
        finally:
            raw.close()
        return {name: len(rows) for name, rows in rows_by_table.items()}


class DorisStreamLoadResource(DorisInsertResource):
    """Tables are created over the MySQL protocol (``url``); rows go through Stream Load
    to the FE at ``http_url`` with ``url``'s credentials."""

    http_url: str = Settings.doris_http_url

    def stream_load_batch(self, rows_by_table: Rows, rng: OffsetRange) -> dict[str, LoadResult]:
        """One Stream Load per table; labels make a retried or re-executed batch load once."""
        url = make_url(self.url)
        loader = StreamLoader(
            self.http_url, url.database or "", url.username or "", url.password or ""
        )
        results = {}
        for name, rows in rows_by_table.items():
            if not rows:
                continue
            spec = self.specs[name]
            body = encode_rows(spec, rows)
            label = make_label(name, rng.topic, rng.partition, rng.start, rng.end, body)
            results[name] = loader.load(spec, rows, label)
        return results

    def write_batch(self, rows_by_table: Rows, rng: OffsetRange | None = None) -> dict[str, int]:
        if rng is None:
            raise ValueError("Stream Load needs the batch's offset range for its labels")
        self.stream_load_batch(rows_by_table, rng)  # raises unless every load succeeded
        return {name: len(rows) for name, rows in rows_by_table.items()}


class DorisRoutineLoadResource(DorisBackend):
    """``WADO_DORIS_LOAD=routine_load``: the site's own Doris Routine Load jobs load the
    state and image tables from the output topics and the object table from the
    receiver's ``log_queue`` (``routine_load_ddl``). Runs write nothing into Doris (a
    second writer would duplicate rows in a DUPLICATE KEY object table); after the
    batch is published they await its keys there, for at most ``wait_seconds``, and
    report what Doris holds. Missing keys fail the batch's ``keys_present`` check,
    not the run: the rows are in the topics, which the jobs will load.

    ``flavor`` says which column set the tables have (``doris`` or the ``mariadb``
    stand-in, where the test's stand-in loader plays the Routine Load jobs)."""

    flavor: str = "doris"
    wait_seconds: float = Settings.routine_load_wait_seconds
    poll_seconds: float = 0.5

    service_name: ClassVar[str] = "Doris (Routine Load)"
    writes_rows: ClassVar[bool] = False
    _report: dict = PrivateAttr(default_factory=dict)

    @property
    def specs(self) -> dict[str, S.Table]:
        return S.tables_for("mariadb" if self.flavor == "mariadb" else "doris")

    @property
    def tables(self) -> dict[str, Table]:
        all_tables = sa_tables("mariadb" if self.flavor == "mariadb" else "doris", None)
        return {t.name: all_tables[t.name] for t in S.PIPELINE_TABLES}

    @property
    def expected_tables(self) -> tuple[S.Table, ...]:
        """Runs only read keys here: the key columns are what must exist."""
        out = []
        for name in self.tables:
            spec = self.specs[name]
            keys = set(spec.key) | set(spec.doris_key)
            out.append(replace(spec, columns=tuple(c for c in spec.columns if c.name in keys)))
        return tuple(out)

    def _create_tables(self, conn) -> None:
        if self.flavor == "mariadb":
            MariaDBResource(url=self.url)._create_tables(conn)
        else:
            DorisInsertResource(url=self.url)._create_tables(conn)

    def _write(self, rows_by_table: Rows, rng: OffsetRange | None) -> dict[str, int]:
        """Write nothing; await the batch's keys (the Routine Load jobs' lag)."""
        specs, tables = self.specs, self.tables
        want = {
            name: sorted({tuple(r[k] for k in specs[name].key) for r in rows})
            for name, rows in rows_by_table.items()
        }
        t0 = time.monotonic()
        deadline = t0 + self.wait_seconds
        while True:
            with self.engine.connect() as conn:
                found = {
                    name: count_present(conn, specs[name], tables[name], keys) if keys else 0
                    for name, keys in want.items()
                }
            done = all(found[n] == len(want[n]) for n in want)
            if done or time.monotonic() >= deadline:
                break
            time.sleep(self.poll_seconds)
        waited = round(time.monotonic() - t0, 3)
        self._report = {
            name: {
                "load": "routine_load (the site's jobs; the run wrote nothing)",
                "keys_expected": len(want[name]),
                "keys_found": found[name],
                "keys_missing": len(want[name]) - found[name],
                "routine_load_lag_s": waited if done else f">{self.wait_seconds:g}",
            }
            for name in want
        }
        return dict.fromkeys(want, 0)

    def write_metadata(self, table: str) -> dict:
        return dict(self._report.get(table, {}))
