"""What every SQL backend resource shares: one engine per resource, the tables of one
schema, table creation once per run, bounded retries of transient errors, and one
``write_batch`` interface the ops call without knowing the backend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from dagster import ConfigurableResource
from pydantic import PrivateAttr
from sqlalchemy import Engine, Table, bindparam, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from wado_pipeline.core import schema as S
from wado_pipeline.core.planning import OffsetRange
from wado_pipeline.resources.retry import with_retries
from wado_pipeline.resources.sql.tables import sql_engine

TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (OperationalError,)
Rows = Mapping[str, Sequence[dict[str, Any]]]

# Catalog types (information_schema.columns.data_type, lower case) that hold each kind
# of our columns, in PostgreSQL, MariaDB and Doris.
COMPATIBLE_TYPES: dict[str, frozenset[str]] = {
    "varchar": frozenset({"character varying", "varchar", "text", "char", "string"}),
    "text": frozenset({"text", "character varying", "mediumtext", "longtext", "string", "varchar"}),
    "int": frozenset({"integer", "int", "bigint", "smallint", "tinyint"}),
    "bigint": frozenset({"bigint", "largeint"}),
    "double": frozenset({"double precision", "double", "real", "float", "numeric", "decimal"}),
    "date": frozenset({"date", "datev2"}),
    # Doris has no TIME type: the pipeline's Doris DDL stores times as VARCHAR(16)
    "time": frozenset({"time without time zone", "time", "varchar", "character varying"}),
    "datetime": frozenset(
        {"timestamp without time zone", "timestamp with time zone", "datetime", "timestamp"}
        | {"datetimev2"}
    ),
}


class TablesNotReady(Exception):
    """The tables a run writes are missing or do not match (never retried: a DBA acts)."""


@dataclass(frozen=True)
class LiveColumn:
    """A column as the catalog describes it."""

    data_type: str
    nullable: bool = True
    max_length: int | None = None  # characters (PostgreSQL, MariaDB) or bytes (Doris)
    has_default: bool = False


def table_problems(
    expected: Sequence[S.Table],
    found: Mapping[str, Mapping[str, LiveColumn]],
    writes: bool = True,
) -> list[str]:
    """What stops a run from writing, found once before any row is sent: a missing
    table or column, a type that cannot hold ours, a column shorter than our limit, a
    NOT NULL column we may leave empty, or a NOT NULL column without a default that we
    do not write (every insert would fail). With ``writes=False`` (a run that only
    reads keys) only the presence and types of ``expected``'s columns matter."""
    problems = []
    for table in expected:
        columns = found.get(table.name)
        if not columns:
            problems.append(f"table {table.name} is missing")
            continue
        ours = set(table.column_names)
        for col in table.columns:
            live = columns.get(col.name)
            where = f"column {table.name}.{col.name}"
            if live is None:
                problems.append(f"{where} is missing")
            elif live.data_type.lower() not in COMPATIBLE_TYPES[col.kind]:
                problems.append(f"{where} is {live.data_type}, which cannot hold {col.kind}")
            elif col.length and live.max_length and live.max_length < col.length:
                problems.append(
                    f"{where} holds {live.max_length}, the pipeline writes up to {col.length}"
                )
            elif col.nullable and not live.nullable:
                problems.append(f"{where} is NOT NULL, the pipeline may leave it empty")
        for name, live in columns.items() if writes else ():
            if name not in ours and not live.nullable and not live.has_default:
                problems.append(
                    f"column {table.name}.{name} is NOT NULL without a default and the "
                    "pipeline does not write it"
                )
    return problems


class SqlBackend(ConfigurableResource):
    """Base of the database resources. Subclasses name the service, create their
    tables (``_create_tables``), read the catalog (``_catalog``) and write a batch
    (``_write``).

    Runs need DML only: they check the tables through the catalog and create nothing;
    ``create_tables`` is for the tables' owner (``wado-pipeline init-db``, ``make dev``)."""

    url: str

    _engine: Engine | None = PrivateAttr(default=None)
    _checked: bool = PrivateAttr(default=False)

    service_name: ClassVar[str] = "SQL database"  # how errors and the UI name it
    backend: ClassVar[S.Backend] = "postgres"  # which column set its tables have
    writes_rows: ClassVar[bool] = True  # False: runs only read keys (Routine Load mode)
    transient_errors: ClassVar[tuple[type[BaseException], ...]] = TRANSIENT_DB_ERRORS
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

    def _catalog(self, conn) -> dict[str, dict[str, LiveColumn]]:
        """table -> column -> description of the pipeline's tables, from the catalog."""
        raise NotImplementedError

    @property
    def specs(self) -> dict[str, S.Table]:
        """Our tables as this backend holds them (its column set)."""
        return S.tables_for(self.backend)

    @property
    def expected_tables(self) -> tuple[S.Table, ...]:
        return tuple(self.specs[name] for name in self.tables)

    @property
    def location(self) -> str:
        """Where the tables are, for messages (no credentials)."""
        url = make_url(self.url)
        return f"{url.host}:{url.port}/{url.database}"

    def create_tables(self) -> None:
        """Create the tables if they do not exist (idempotent). Needs the privilege to
        create: the tables' owner runs it (``wado-pipeline init-db``), never a run."""

        def attempt() -> None:
            with self.engine.begin() as conn:
                self._create_tables(conn)

        with_retries(attempt, retry_on=self.transient_errors, what=f"{self.service_name} DDL")

    def check_tables(self) -> None:
        """Check once per run, through the catalog (no privilege beyond DML needed), that
        every table and column the run writes is there with a compatible type; raise
        ``TablesNotReady`` naming each problem and what to do."""
        if self._checked:
            return

        def attempt() -> dict[str, dict[str, LiveColumn]]:
            with self.engine.connect() as conn:
                return self._catalog(conn)

        found = with_retries(
            attempt, retry_on=self.transient_errors, what=f"{self.service_name} catalog"
        )
        problems = table_problems(self.expected_tables, found, self.writes_rows)
        if problems:
            raise TablesNotReady(
                f"{self.service_name} at {self.location}: "
                + "; ".join(problems)
                + ". Create or update the tables as their owner with `wado-pipeline init-db` "
                "(or apply `wado-pipeline init-db --print-ddl …`), then re-execute this run."
            )
        self._checked = True

    def write_metadata(self, table: str) -> dict:
        """What the last ``write_batch`` has to say about ``table`` beyond its row count
        (shown on the table's materialization)."""
        return {}

    def write_batch(self, rows_by_table: Rows, rng: OffsetRange | None = None) -> dict[str, int]:
        """Upsert the rows of several tables; returns the rows written per table.
        ``rng`` is the batch's offset range (a load label for backends that use one)."""
        return with_retries(
            lambda: self._write(rows_by_table, rng),
            retry_on=self.transient_errors,
            what=f"{self.service_name} write",
        )

    def _catalog_query(
        self, conn, schema_clause: str, params: dict
    ) -> dict[str, dict[str, LiveColumn]]:
        rows = conn.execute(
            text(
                "SELECT table_name, column_name, data_type, is_nullable, "
                "character_maximum_length, column_default FROM information_schema.columns "
                f"WHERE {schema_clause} AND table_name IN :names"
            ).bindparams(bindparam("names", expanding=True)),
            {**params, "names": list(self.tables)},
        ).all()
        found: dict[str, dict[str, LiveColumn]] = {}
        for table, column, kind, nullable, length, default in rows:
            found.setdefault(table, {})[column] = LiveColumn(
                data_type=kind,
                nullable=str(nullable).upper() == "YES",
                max_length=int(length) if length is not None else None,
                # MariaDB reports a missing default as NULL or the string 'NULL'
                has_default=default is not None and str(default).upper() != "NULL",
            )
        return found

    def teardown_after_execution(self, context) -> None:
        self.dispose()

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
