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

import functools
import weakref

from sqlalchemy.engine import Connection

_pooled: weakref.WeakSet = weakref.WeakSet()

# Dagster's storage asks PostgreSQL's catalogue whether a migration's table or column is
# there before many of its calls (SQLAlchemy's inspector, a fresh one each time, so
# nothing is cached): profiled at 100 msg/s these were a fifth of the daemon's samples
# (every tick's instigator state, every run query) and a catalogue query per stored
# materialization in the runs. The answer changes only with `dagster instance migrate`,
# which Dagster's upgrade guide follows with a restart. Per storage class (checked
# against dagster 1.13.27; `test_coordinator.py` fails when one is gone): the methods
# whose yes is kept for the life of the storage object (a no is asked again, so a table
# made while the process runs is found).
SCHEMA_PROBES = {
    "PostgresScheduleStorage": (
        "_has_instigators_table",
        "_has_asset_daemon_asset_evaluations_table",
        "has_secondary_index_table",
    ),
    "PostgresRunStorage": (
        "has_run_stats_index_cols",
        "has_bulk_actions_selector_cols",
        "has_backfill_id_column",
        "has_bulk_action_job_name_column",
        "has_backfill_tags_table",
    ),
    "PostgresEventLogStorage": (
        "has_table",
        "_has_asset_key_col_on_connection",
        "_has_asset_key_index_cols_on_connection",
    ),
}

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
        cache_schema_probes(storage)


def cache_schema_probes(storage) -> None:
    """Keep each yes of ``storage``'s schema probes (``SCHEMA_PROBES``) on the object;
    a connection argument is not part of the question."""
    for name in SCHEMA_PROBES.get(type(storage).__name__, ()):
        setattr(storage, name, _keep_yes(getattr(storage, name)))


def _keep_yes(probe):
    answers: dict[tuple, bool] = {}

    @functools.wraps(probe)
    def cached(*args):
        key = tuple(a for a in args if not isinstance(a, Connection))
        if key in answers:
            return True
        answer = probe(*args)
        if answer:
            answers[key] = True
        return answer

    return cached


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
