"""SQLAlchemy tables and DDL generated from the one schema in ``core.schema``.

PostgreSQL and MariaDB DDL come from SQLAlchemy's compilers; Doris DDL is written
out here because Doris has its own table model (UNIQUE KEY, merge-on-write,
sequence column, buckets) and no TIME column type.
"""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    Time,
    create_engine,
)
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.schema import CreateTable
from sqlalchemy.types import TypeEngine

from wado_pipeline.core import schema as S
from wado_pipeline.settings import Settings


def _sa_type(col: S.Column) -> TypeEngine:
    kind = col.kind
    if kind == "varchar":
        return String(col.length).with_variant(
            mysql.VARCHAR(col.length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql"
        )
    if kind == "text":
        return Text().with_variant(mysql.MEDIUMTEXT(), "mysql")
    if kind == "date":
        return Date()
    if kind == "time":
        return Time().with_variant(mysql.TIME(fsp=6), "mysql")
    if kind == "datetime":
        return DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")
    if kind == "int":
        return Integer()
    if kind == "bigint":
        return BigInteger()
    if kind == "double":
        return Float(precision=53).with_variant(mysql.DOUBLE(), "mysql")
    raise ValueError(f"unknown column kind {kind}")


def sa_table(table: S.Table, metadata: MetaData, schema: str | None = None) -> Table:
    """The SQLAlchemy ``Table`` for one of our tables."""
    return Table(
        table.name,
        metadata,
        *(Column(c.name, _sa_type(c), nullable=c.nullable) for c in table.columns),
        PrimaryKeyConstraint(*table.key, name=f"pk_{table.name}"),
        schema=schema,
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )


@lru_cache(maxsize=32)
def sa_tables(backend: S.Backend, schema: str | None = None) -> dict[str, Table]:
    """The SQLAlchemy tables of ``backend`` in ``schema`` (built once per process)."""
    md = MetaData()
    return {name: sa_table(t, md, schema) for name, t in S.tables_for(backend).items()}


def sql_engine(url: str, **connect_args) -> Engine:
    """An engine for our writes: liveness-checked pool, bounded connect, and errors
    that never echo parameters (they would carry patient data)."""
    return create_engine(
        url,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5, **connect_args},
        hide_parameters=True,
    )


def sql_ddl(dialect: str) -> str:
    """CREATE TABLE statements for ``postgres`` or ``mariadb``."""
    compiler = {"postgres": postgresql.dialect(), "mariadb": mysql.dialect(is_mariadb=True)}
    d = compiler[dialect]
    out = []
    for t in sa_tables(dialect).values():
        text = str(CreateTable(t, if_not_exists=True).compile(dialect=d)).strip()
        out.append(text + ";\n")
    return "\n".join(out)


_DORIS_TYPES = {
    "text": "STRING",
    "date": "DATE",
    "time": "VARCHAR(16)",  # Doris has no TIME column type: HH:MM:SS.ffffff as text
    "datetime": "DATETIME(6)",
    "int": "INT",
    "bigint": "BIGINT",
    "double": "DOUBLE",
}

# Distribution: a study's series and instances land in the same buckets.
_DORIS_DISTRIBUTION = {
    S.OBJECT_META.name: ("trace_id",),
    S.STATE_META.name: ("study_uid",),
    S.IMAGE_META.name: ("study_uid",),
}


def doris_column_order(table: S.Table) -> tuple[S.Column, ...]:
    """Doris wants the UNIQUE KEY columns first, in key order."""
    key = [table.column(k) for k in table.doris_key]
    return (*key, *(c for c in table.columns if c.name not in table.doris_key))


def doris_ddl(
    buckets: int = Settings.doris_buckets, replication_num: int = Settings.doris_replication_num
) -> str:
    """CREATE TABLE statements for Apache Doris (UNIQUE KEY, merge-on-write).

    VARCHAR(n) in Doris counts bytes; ``core.schema`` lengths are bytes already and
    the extraction cuts optional text to fit, so no load fails on a CJK name.
    """
    out = []
    for t in S.PIPELINE_TABLES:
        lines = []
        for c in doris_column_order(t):
            typ = f"VARCHAR({c.length})" if c.kind == "varchar" else _DORIS_TYPES[c.kind]
            null = "NOT NULL" if (not c.nullable or c.name in t.doris_key) else "NULL"
            lines.append(f"  `{c.name}` {typ} {null}")
        props = [
            f'  "replication_num" = "{replication_num}"',
            '  "enable_unique_key_merge_on_write" = "true"',
        ]
        if t.sequence:
            props.append(f'  "function_column.sequence_col" = "{t.sequence}"')
        key = ", ".join(f"`{k}`" for k in t.doris_key)
        dist = ", ".join(f"`{k}`" for k in _DORIS_DISTRIBUTION[t.name])
        out.append(
            f"CREATE TABLE IF NOT EXISTS `{t.name}` (\n"
            + ",\n".join(lines)
            + "\n) ENGINE=OLAP\n"
            + f"UNIQUE KEY({key})\n"
            + f"DISTRIBUTED BY HASH({dist}) BUCKETS {buckets}\n"
            + "PROPERTIES (\n"
            + ",\n".join(props)
            + "\n);\n"
        )
    return "\n".join(out)


# Which topic feeds each Doris table in a site's Routine Load set-up (upstream.md).
ROUTINE_LOAD_SOURCES = {
    S.OBJECT_META.name: "log",  # the receiver's copy of every store message
    S.STATE_META.name: "state",
    S.IMAGE_META.name: "image",
}


def routine_load_ddl(brokers: str, topics: dict[str, str], database: str) -> str:
    """The Doris Routine Load jobs a site needs with ``WADO_DORIS_LOAD=routine_load``:
    one per table, JSON mapped by column name (what upstream's jobs do), reading every
    partition of its topic from the beginning. ``topics`` maps ``log``, ``state`` and
    ``image`` to topic names. The object table's job reads the store message as the
    receiver wrote it (its ``created_time`` has up to 9 fraction digits: Doris keeps 6)."""
    out = [
        "-- Routine Load jobs for WADO_DORIS_LOAD=routine_load: Doris loads itself from",
        "-- the topics; the pipeline's runs write nothing into these tables.",
    ]
    for t in S.PIPELINE_TABLES:
        spec = t.for_backend("doris")
        columns = ",\n".join(f"    `{c}`" for c in spec.column_names)
        topic = topics[ROUTINE_LOAD_SOURCES[t.name]]
        out.append(
            f"CREATE ROUTINE LOAD `{database}`.`wado_{t.name}_load` ON `{t.name}`\n"
            f"COLUMNS (\n{columns}\n)\n"
            "PROPERTIES (\n"
            '    "format" = "json",\n'
            '    "strict_mode" = "false",\n'
            '    "max_batch_interval" = "5",\n'
            '    "max_error_number" = "1000"\n'
            ")\n"
            "FROM KAFKA (\n"
            f'    "kafka_broker_list" = "{brokers}",\n'
            f'    "kafka_topic" = "{topic}",\n'
            f'    "property.group.id" = "doris_{t.name}_load",\n'
            '    "property.kafka_default_offsets" = "OFFSET_BEGINNING"\n'
            ");\n"
        )
    return "\n".join(out)


def grants_sql(backend: str, role: str, reader: str, database: str, schema: str = "public") -> str:
    """Least-privilege grants for ``backend`` (postgres, mariadb, doris).

    ``role`` is what the pipeline's runs use: read and upsert its tables (no DDL, no
    DELETE). ``reader`` is a data team's read-only role: the three metadata tables, not
    the error table (its payloads hold whole store messages, patient IDs included).
    Both must exist; the tables' owner creates the tables with ``init-db``."""
    every = [t.name for t in (*S.PIPELINE_TABLES, S.INGEST_ERROR)]
    metadata = [t.name for t in S.PIPELINE_TABLES]
    head = [
        f"-- wado-pipeline least-privilege grants for {backend}",
        "-- The tables' owner creates the tables first: wado-pipeline init-db",
    ]
    if backend == "postgres":

        def tables(names: list[str]) -> str:
            return ", ".join(f'"{schema}"."{n}"' for n in names)

        lines = [
            *head,
            f"-- runs: read and upsert the pipeline's tables in schema {schema}, nothing else",
            f'GRANT CONNECT ON DATABASE "{database}" TO "{role}";',
            f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}";',
            f'GRANT SELECT, INSERT, UPDATE ON TABLE {tables(every)} TO "{role}";',
            "-- a data team: read the metadata tables",
            f'GRANT CONNECT ON DATABASE "{database}" TO "{reader}";',
            f'GRANT USAGE ON SCHEMA "{schema}" TO "{reader}";',
            f'GRANT SELECT ON TABLE {tables(metadata)} TO "{reader}";',
        ]
    elif backend == "mariadb":
        lines = [
            *head,
            "-- runs: read and upsert the pipeline's tables, nothing else",
            *(
                f"GRANT SELECT, INSERT, UPDATE ON `{database}`.`{n}` TO '{role}'@'%';"
                for n in metadata
            ),
            "-- a data team: read the metadata tables",
            *(f"GRANT SELECT ON `{database}`.`{n}` TO '{reader}'@'%';" for n in metadata),
        ]
    elif backend == "doris":
        lines = [
            *head,
            "-- runs: read and load the pipeline's tables (INSERT and Stream Load), nothing else",
            *(f"GRANT SELECT_PRIV, LOAD_PRIV ON {database}.{n} TO '{role}'@'%';" for n in metadata),
            "-- a data team: read the metadata tables",
            *(f"GRANT SELECT_PRIV ON {database}.{n} TO '{reader}'@'%';" for n in metadata),
        ]
    else:
        raise ValueError(f"unknown backend {backend}")
    return "\n".join(lines) + "\n"
