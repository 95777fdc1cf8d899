"""Upsert statements per backend, generated from ``core.schema``.

Rules, the same everywhere:
- a table without a sequence column (``dicom_object_meta``, the error table) keeps
  the first row written for a key: re-running a batch changes nothing;
- otherwise a row replaces the stored one only if its sequence value
  (``updated_time``) is at least the stored one, so an older version never wins;
- ``keep_first`` columns (``created_time``) keep the earliest value.
"""

from __future__ import annotations

from sqlalchemy import Table, case, func
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.sql.dml import Insert

from wado_pipeline.core import schema as S


def postgres_upsert(spec: S.Table, table: Table) -> Insert:
    stmt = postgresql.insert(table)
    if spec.sequence is None:
        return stmt.on_conflict_do_nothing(index_elements=list(spec.key))
    new = stmt.excluded
    newer = new[spec.sequence] >= table.c[spec.sequence]
    updates = {}
    for name in spec.column_names:
        if name in spec.key:
            continue
        if name in spec.keep_first:
            updates[name] = func.least(table.c[name], new[name])
        else:
            updates[name] = case((newer, new[name]), else_=table.c[name])
    return stmt.on_conflict_do_update(index_elements=list(spec.key), set_=updates)


def mariadb_upsert(spec: S.Table, table: Table) -> Insert:
    """``INSERT … ON DUPLICATE KEY UPDATE`` with a guard on the sequence column.

    MariaDB applies assignments left to right and later ones see earlier results,
    so the sequence column is assigned last, after every guarded column.
    """
    stmt = mysql.insert(table)
    new = stmt.inserted
    if spec.sequence is None:
        first_key = spec.key[0]
        return stmt.on_duplicate_key_update([(first_key, table.c[first_key])])
    newer = new[spec.sequence] >= table.c[spec.sequence]
    updates = []
    for name in spec.column_names:
        if name in spec.key or name == spec.sequence:
            continue
        if name in spec.keep_first:
            updates.append((name, func.least(table.c[name], new[name])))
        else:
            updates.append((name, case((newer, new[name]), else_=table.c[name])))
    updates.append((spec.sequence, func.greatest(table.c[spec.sequence], new[spec.sequence])))
    return stmt.on_duplicate_key_update(updates)


def doris_insert_sql(spec: S.Table) -> str:
    """Plain INSERT: Doris UNIQUE KEY merge-on-write tables upsert whole rows, and
    their sequence column (``updated_time``) keeps the newest version.

    Written out (every identifier back-quoted: ``columns`` is a Doris keyword) so the
    exact text is pinned by a test; PyMySQL batches it into multi-row VALUES."""
    cols = ", ".join(f"`{c}`" for c in spec.column_names)
    params = ", ".join(f"%({c})s" for c in spec.column_names)
    return f"INSERT INTO `{spec.name}` ({cols}) VALUES ({params})"
