"""What every SQL backend resource shares: one engine per resource, the tables of one
schema, table creation once per run, bounded retries of transient errors, and one
``write_batch`` interface the ops call without knowing the backend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from dagster import ConfigurableResource
from pydantic import PrivateAttr
from sqlalchemy import Engine, Table
from sqlalchemy.exc import OperationalError

from wado_pipeline.core.batching import OffsetRange
from wado_pipeline.resources.retry import with_retries
from wado_pipeline.resources.tables import sql_engine

TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (OperationalError,)
Rows = Mapping[str, Sequence[dict[str, Any]]]


class SqlBackend(ConfigurableResource):
    """Base of the database resources. Subclasses name the service, create their
    tables (``_create_tables``) and write a batch (``_write``)."""

    url: str

    _engine: Engine | None = PrivateAttr(default=None)
    _ensured: bool = PrivateAttr(default=False)

    service_name: ClassVar[str] = "SQL database"  # how errors and the UI name it
    connect_args: ClassVar[Mapping[str, Any]] = {}

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = sql_engine(self.url, **self.connect_args)
        return self._engine

    @property
    def tables(self) -> dict[str, Table]:
        raise NotImplementedError

    def _create_tables(self, conn) -> None:
        raise NotImplementedError

    def _write(self, rows_by_table: Rows, rng: OffsetRange | None) -> dict[str, int]:
        raise NotImplementedError

    def ensure_tables(self) -> None:
        """Create the tables if they do not exist (idempotent; once per run)."""
        if self._ensured:
            return

        def attempt() -> None:
            with self.engine.begin() as conn:
                self._create_tables(conn)

        with_retries(attempt, retry_on=TRANSIENT_DB_ERRORS, what=f"{self.service_name} DDL")
        self._ensured = True

    def write_batch(self, rows_by_table: Rows, rng: OffsetRange | None = None) -> dict[str, int]:
        """Upsert the rows of several tables; returns the rows written per table.
        ``rng`` is the batch's offset range (a load label for backends that use one)."""
        return with_retries(
            lambda: self._write(rows_by_table, rng),
            retry_on=TRANSIENT_DB_ERRORS,
            what=f"{self.service_name} write",
        )

    def teardown_after_execution(self, context) -> None:
        self.dispose()

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
