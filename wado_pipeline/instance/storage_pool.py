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


def _engines(instance) -> list:
    """The SQLAlchemy engines of the instance's run, event and schedule storage.

    ``_engine`` is dagster-postgres's own attribute (checked against 0.29.27): the only
    way to tell whether a storage is pooled already. None for other storage."""
    storages = (instance.run_storage, instance.event_log_storage, instance.schedule_storage)
    return [getattr(s, "_engine", None) for s in storages if s is not None]


def pool_dagster_storage(instance, *, max_overflow: int = 2) -> None:
    """Keep one pooled connection per storage of ``instance`` (plus ``max_overflow``
    while threads overlap). Idempotent; an instance whose storage is already pooled (the
    webserver's) or is not PostgreSQL is left as it is."""
    if instance in _pooled:
        return
    _pooled.add(instance)
    engines = _engines(instance)
    if not engines or any(e is None or type(e.pool).__name__ != "NullPool" for e in engines):
        return
    instance.optimize_for_webserver(
        statement_timeout=STATEMENT_TIMEOUT_MS,
        pool_recycle=POOL_RECYCLE_S,
        max_overflow=max_overflow,
    )
