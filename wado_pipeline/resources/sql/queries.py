"""Every SQL text the resources run besides their upserts and DDL: the read-side queries
of the asset checks, shared by the PostgreSQL and Doris resources, and PostgreSQL's
advisory locks."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, Table, and_, func, or_, select, text, tuple_

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


def count_null_keys(conn: Connection, spec: S.Table, table: Table, keys: Sequence[tuple]) -> int:
    """Rows among ``keys`` with a NULL in any Doris key column (which is a superset of
    the primary key): such a row could not be loaded into Doris' UNIQUE KEY table."""
    cols = [table.c[k] for k in spec.key]
    nulls = or_(*(table.c[k].is_(None) for k in spec.doris_key))
    return sum(
        conn.execute(
            select(func.count())
            .select_from(table)
            .where(and_(tuple_(*cols).in_(list(part)), nulls))
        ).scalar_one()
        for part in _chunks(keys)
    )


def count_duplicate_keys(
    conn: Connection, spec: S.Table, table: Table, keys: Sequence[tuple]
) -> int:
    """Keys among ``keys`` stored more than once."""
    cols = [table.c[k] for k in spec.key]
    total = 0
    for part in _chunks(keys):
        dup = (
            select(*cols)
            .where(tuple_(*cols).in_(list(part)))
            .group_by(*cols)
            .having(func.count() > 1)
            .subquery()
        )
        total += conn.execute(select(func.count()).select_from(dup)).scalar_one()
    return total


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
