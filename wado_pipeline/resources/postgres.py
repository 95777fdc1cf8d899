"""PostgreSQL: the index tables and the error table, written in one transaction."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

from psycopg2.extras import execute_values

from wado_pipeline.core.planning import OffsetRange
from wado_pipeline.resources.sql import queries
from wado_pipeline.resources.sql.backend import Rows, SqlBackend
from wado_pipeline.resources.sql.tables import sa_tables
from wado_pipeline.resources.sql.upserts import postgres_upsert
from wado_pipeline.settings import Settings


def execute_values_upsert(conn, stmt, rows: Sequence[dict[str, Any]], page_size: int = 1000):
    """Run an INSERT … ON CONFLICT for many rows as multi-row VALUES pages.

    SQLAlchemy hands this statement to psycopg2's ``executemany``, one round trip per
    row (measured: 0.47 s for 1,000 rows); ``execute_values`` sends 1,000 rows per
    statement (~0.05 s). The SQL is SQLAlchemy's own compilation, split at VALUES."""
    compiled = stmt.compile(dialect=conn.dialect)
    sql = str(compiled)
    head, _, rest = sql.partition(" VALUES (")
    template, _, tail = rest.partition(") ON CONFLICT")
    with conn.connection.cursor() as cur:
        execute_values(
            cur,
            f"{head} VALUES %s ON CONFLICT{tail}",
            [dict(r) for r in rows],
            template=f"({template})",
            page_size=page_size,
        )


class PostgresResource(SqlBackend):
    """The PostgreSQL index. ``schema_name`` lets tests and tenants use their own schema."""

    schema_name: str = Settings.postgres_schema
    service_name: ClassVar[str] = "PostgreSQL"

    @property
    def tables(self):
        return sa_tables("postgres", self.schema_name)

    def _create_tables(self, conn) -> None:
        # Concurrent runs on a fresh database would race on PostgreSQL's catalog
        # (duplicate pg_type rows) even with IF NOT EXISTS: serialise the DDL.
        queries.advisory_xact_lock(conn, "wado_pipeline_ddl")
        queries.create_schema(conn, self.schema_name)
        for t in self.tables.values():
            t.create(conn, checkfirst=True)

    def _catalog(self, conn) -> dict[str, dict[str, str]]:
        return self._catalog_query(conn, "table_schema = :schema", {"schema": self.schema_name})

    @property
    def location(self) -> str:
        return f"{super().location} schema {self.schema_name}"

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """Hold a transaction-scoped advisory lock named ``name`` for the block: one
        holder at a time across every run process (the group commit's read, merge and
        write of a partition's progress, which Kafka cannot compare-and-set)."""
        with self.engine.begin() as conn:
            queries.advisory_xact_lock(conn, name)
            yield

    def _write(self, rows_by_table: Rows, rng: OffsetRange | None) -> dict[str, int]:
        """All tables in one transaction (all or nothing)."""
        tables = self.tables
        with self.engine.begin() as conn:
            for name, rows in rows_by_table.items():
                if rows:
                    execute_values_upsert(
                        conn, postgres_upsert(self.specs[name], tables[name]), rows
                    )
        return {name: len(rows) for name, rows in rows_by_table.items()}
