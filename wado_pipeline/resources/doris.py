"""Apache Doris, one resource class per way of loading it, and its MariaDB stand-in.

``definitions.py`` picks one from the settings (``WADO_DORIS_FLAVOR``,
``WADO_DORIS_LOAD``); the ops call ``write_batch`` and never branch on the backend.

- ``MariaDBResource``: the local stand-in speaking Doris' MySQL protocol; primary keys
  and a guarded ``INSERT … ON DUPLICATE KEY UPDATE`` (latest ``updated_time`` wins).
- ``DorisInsertResource``: Doris over the MySQL protocol; UNIQUE KEY merge-on-write
  tables upsert whole rows, their sequence column keeps the newest version.
- ``DorisStreamLoadResource``: Doris through the FE's HTTP Stream Load, one load per
  table and batch, labelled so a retried or re-executed batch loads once.
"""

from __future__ import annotations

from typing import ClassVar

from sqlalchemy import Table, text
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateTable

from wado_pipeline.core import schema as S
from wado_pipeline.core.batching import OffsetRange
from wado_pipeline.resources.sql import Rows, SqlBackend
from wado_pipeline.resources.stream_load import LoadResult, StreamLoader, encode_rows, make_label
from wado_pipeline.resources.tables import doris_ddl, sa_tables
from wado_pipeline.resources.upserts import doris_insert_sql, mariadb_upsert


class DorisBackend(SqlBackend):
    """The pipeline tables in the database named by ``url`` (MySQL protocol): the type
    the ops and checks ask for, whichever subclass the settings chose."""

    connect_args: ClassVar = {"charset": "utf8mb4"}
    backend: ClassVar[S.Backend] = "doris"

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
    buckets: int = 8
    replication_num: int = 1

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

    http_url: str = "http://127.0.0.1:8030"

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
