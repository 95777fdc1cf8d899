"""Pooled connections to Dagster's own PostgreSQL storage, for the processes that store
most of its rows: the daemon (run creation, the queue, ticks) and the run workers.

dagster-postgres opens a new connection for every call (SQLAlchemy's ``NullPool``, to
suit any process); only the webserver pools (``optimize_for_webserver``). Profiled at
100 msg/s (py-spy over the daemon and its workers), opening connections was a quarter
of the deployment's samples: the sensor's run requests store ~11 "materialization
planned" events per run, each on a new connection, and a worker did the same for every
event before its first op. A connection lost to a PostgreSQL restart is dropped by the
pool (SQLAlchemy invalidates it on the disconnect error) and the next call connects
again, so an outage heals as before.
"""

from __future__ import annotations

import weakref

_pooled: weakref.WeakSet = weakref.WeakSet()

# A statement of Dagster's storage that runs longer than this is cancelled, as in the
# webserver (a minute: its longest calls here are a pruning page's deletes).
STATEMENT_TIMEOUT_MS = 60_000
# A pooled connection is replaced after an hour, as in the webserver.
POOL_RECYCLE_S = 3600


def _storages(instance) -> list:
    """The instance's run, event and schedule storage."""
    storages = (instance.run_storage, instance.event_log_storage, instance.schedule_storage)
    return [s for s in storages if s is not None]


def _engines(instance) -> list:
    """The SQLAlchemy engines of the instance's run, event and schedule storage.

    ``_engine`` is dagster-postgres's own attribute (checked against 0.29.27): the only
    way to tell whether a storage is pooled already. None for other storage."""
    return [getattr(s, "_engine", None) for s in _storages(instance)]


def pool_dagster_storage(instance, *, pool_size: int = 2, max_overflow: int = 2) -> None:
    """Keep up to ``pool_size`` connections open per storage of ``instance`` (plus
    ``max_overflow`` more, closed after use, while threads overlap). Idempotent; an
    instance whose storage is already pooled (the webserver's) or is not PostgreSQL is
    left as it is.

    Why not ``optimize_for_webserver``, which the webserver uses: it keeps one
    connection per storage, and a storage call that needs a second while holding the
    first gets a new connection each time (SQLAlchemy closes overflow connections when
    they are returned). Storing a materialization does that (its tag insert checks
    ``has_table`` on another connection), nine times per batch run; the daemon's
    threads overlap all the time. The engines are made as that method makes them
    (autocommit, the URL's options, a statement timeout), with a larger pool."""
    if instance in _pooled:
        return
    _pooled.add(instance)
    engines = _engines(instance)
    if not engines or any(e is None or type(e.pool).__name__ != "NullPool" for e in engines):
        return
    for storage in _storages(instance):
        _replace_engine(storage, pool_size, max_overflow)


def _replace_engine(storage, pool_size: int, max_overflow: int) -> None:
    from dagster_postgres.utils import create_pg_engine, set_pg_statement_timeout
    from sqlalchemy import event

    old = storage._engine
    kwargs: dict = {
        "isolation_level": "AUTOCOMMIT",
        "pool_size": pool_size,
        "max_overflow": max_overflow,
        "pool_recycle": POOL_RECYCLE_S,
    }
    options = old.url.query.get("options")
    if options:
        kwargs["connect_args"] = {"options": options}
    engine = create_pg_engine(
        storage.postgres_url, getattr(storage, "_token_provider", None), **kwargs
    )
    event.listen(
        engine,
        "connect",
        lambda connection, _: set_pg_statement_timeout(connection, STATEMENT_TIMEOUT_MS),
    )
    storage._engine = engine
    old.dispose()
