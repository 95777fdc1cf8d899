"""Apache Doris (analytics copy) over the MySQL protocol.

``flavor="doris"`` speaks Doris: UNIQUE KEY merge-on-write tables with a sequence
column, plain INSERTs that upsert whole rows. ``flavor="mariadb"`` speaks the
MariaDB stand-in used on machines without Doris: primary keys and guarded
``INSERT … ON DUPLICATE KEY UPDATE``, one transaction per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dagster import ConfigurableResource
from pydantic import PrivateAttr
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.schema import CreateTable

from wado_pipeline.core import schema as S
from wado_pipeline.resources.retry import with_retries
from wado_pipeline.resources.stream_load import LoadResult, StreamLoader, encode_rows, make_label
from wado_pipeline.resources.tables import doris_ddl, sa_tables, sql_engine
from wado_pipeline.resources.upserts import doris_insert_sql, mariadb_upsert

SPECS = S.TABLES_BY_NAME
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (OperationalError,)


class DorisResource(ConfigurableResource):
    """The Doris database (or its MariaDB stand-in) named by ``url``.

    ``load_mode="insert"`` writes over the MySQL protocol; ``"stream_load"`` loads
    each table through the FE's HTTP Stream Load API at ``http_url`` (DDL still goes
    over the MySQL protocol)."""

    url: str
    flavor: str = "mariadb"
    buckets: int = 8
    replication_num: int = 1
    load_mode: str = "insert"
    http_url: str = "http://127.0.0.1:8030"

    _engine: Engine | None = PrivateAttr(default=None)
    _ensured: bool = PrivateAttr(default=False)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = sql_engine(self.url, charset="utf8mb4")
        return self._engine

    @property
    def service_name(self) -> str:
        """What the UI calls this service in errors."""
        return "Doris" if self.flavor == "doris" else "MariaDB (Doris stand-in)"

    @property
    def tables(self):
        all_tables = sa_tables(None)
        return {t.name: all_tables[t.name] for t in S.PIPELINE_TABLES}

    def ensure_tables(self) -> None:
        """Create the tables if they do not exist (idempotent; once per run)."""
        if self._ensured:
            return

        def attempt() -> None:
            with self.engine.begin() as conn:
                if self.flavor == "doris":
                    for stmt in doris_ddl(self.buckets, self.replication_num).split(";\n"):
                        if stmt.strip():
                            conn.execute(text(stmt))
                else:
                    # IF NOT EXISTS, not a look-then-create: concurrent runs must not race
                    for t in self.tables.values():
                        conn.execute(CreateTable(t, if_not_exists=True))

        with_retries(attempt, retry_on=TRANSIENT_DB_ERRORS, what=f"{self.service_name} DDL")
        self._ensured = True

    def write_batch(self, rows_by_table: dict[str, Sequence[dict[str, Any]]]) -> dict[str, int]:
        tables = self.tables

        def attempt() -> dict[str, int]:
            if self.flavor == "doris":
                # Each INSERT is its own Doris transaction; upserts make a retry safe.
                raw = self.engine.raw_connection()
                try:
                    with raw.cursor() as cur:
                        for name, rows in rows_by_table.items():
                            if rows:
                                cur.executemany(doris_insert_sql(SPECS[name]), list(rows))
                                raw.commit()
                finally:
                    raw.close()
            else:
                with self.engine.begin() as conn:
                    for name, rows in rows_by_table.items():
                        if rows:
                            conn.execute(mariadb_upsert(SPECS[name], tables[name]), list(rows))
            return {name: len(rows) for name, rows in rows_by_table.items()}

        return with_retries(
            attempt, retry_on=TRANSIENT_DB_ERRORS, what=f"{self.service_name} write"
        )

    def stream_load_batch(
        self,
        rows_by_table: dict[str, Sequence[dict[str, Any]]],
        topic: str,
        partition: int,
        start: int,
        end: int,
    ) -> dict[str, LoadResult]:
        """One Stream Load per table; labels make a retried or re-executed batch load once."""
        url = make_url(self.url)
        loader = StreamLoader(
            self.http_url, url.database or "", url.username or "", url.password or ""
        )
        results = {}
        for name, rows in rows_by_table.items():
            if not rows:
                continue
            spec = SPECS[name]
            label = make_label(name, topic, partition, start, end, encode_rows(spec, rows))
            results[name] = loader.load(spec, rows, label)
        return results

    def teardown_after_execution(self, context) -> None:
        self.dispose()

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
