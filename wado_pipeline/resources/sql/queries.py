"""Every SQL text the resources run besides their upserts and DDL: the read-side queries
of the asset checks, shared by the PostgreSQL and Doris resources, and PostgreSQL's
advisory locks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Table, case, func, or_, select, text, tuple_

from wado_pipeline.core import schema as S

CHUNK = 500  # keys per IN list


def _chunks(keys: Sequence[tuple]) -> list[Sequence[tuple]]:
    return [keys[i : i + CHUNK] for i in range(0, len(keys), CHUNK)]


def count_present(conn: Connection, spec: S.Table, table: Table, keys: Sequence[tuple]) -> int:
    """How many of ``keys`` (tuples in ``spec.key`` order) exist in the table. Distinct
    keys: a Doris DUPLICATE KEY table may hold a key twice."""
    cols = [table.c[k] for k in spec.key]
    return sum(
        conn.execute(
            select(func.count()).select_from(
                select(*cols).where(tuple_(*cols).in_(list(part))).distinct().subquery()
            )
        ).scalar_one()
        for part in _chunks(keys)
    )


@dataclass(frozen=True)
class KeyCounts:
    """What a table holds of some keys: ``found`` (distinct keys present),
    ``null_key_rows`` (rows with a NULL in a Doris key column, which is a superset of
    the primary key: such a row could not be loaded into Doris' UNIQUE KEY table) and
    ``duplicate_keys`` (keys stored more than once)."""

    found: int
    null_key_rows: int
    duplicate_keys: int


def key_counts(conn: Connection, spec: S.Table, table: Table, keys: Sequence[tuple]) -> KeyCounts:
    """``KeyCounts`` of ``keys`` (tuples in ``spec.key`` order), one query per chunk of
    keys: the verification looks a minute's keys up while batches write beside it, so
    each index range is read once, not once per question."""
    cols = [table.c[k] for k in spec.key]
    nulls = or_(*(table.c[k].is_(None) for k in spec.doris_key))
    found = null_rows = dups = 0
    for part in _chunks(keys):
        per_key = (
            select(
                func.count().label("n"),
                func.sum(case((nulls, 1), else_=0)).label("nulls"),
            )
            .where(tuple_(*cols).in_(list(part)))
            .group_by(*cols)
            .subquery()
        )
        row = conn.execute(
            select(
                func.count(),
                func.coalesce(func.sum(per_key.c.nulls), 0),
                func.coalesce(func.sum(case((per_key.c.n > 1, 1), else_=0)), 0),
            )
        ).one()
        found, null_rows, dups = found + row[0], null_rows + int(row[1]), dups + int(row[2])
    return KeyCounts(found, null_rows, dups)


def rejections_in(
    conn: Connection, errors: Table, topic: str, partition: int, start: int, end: int
) -> list[tuple[int, str]]:
    """``(offset, reason)`` of the error table's rows for offsets ``[start, end)``."""
    c = errors.c
    query = select(c.offset, c.reason).where(
        c.topic == topic, c.partition == partition, c.offset >= start, c.offset < end
    )
    return [(offset, reason) for offset, reason in conn.execute(query).all()]


def advisory_xact_lock(conn: Connection, name: str) -> None:
    """PostgreSQL: wait for, then hold until the transaction ends, the advisory lock
    named ``name`` (one holder at a time across every process)."""
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})


def create_schema(conn: Connection, schema: str) -> None:
    """PostgreSQL: the schema, unless it exists."""
    conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
