"""Dagster's own storage tables, made once by their owner (``wado-pipeline init-db``).

``dagster.yaml`` sets dagster-postgres's ``should_autocreate_tables: false``. With the
default (true) every ``DagsterInstance`` that is opened inspects the database for its
tables first: three connections (one per storage: runs, events, schedules), each with
SQLAlchemy's dialect set-up and a catalogue query. Dagster opens an instance for every
sensor evaluation in the code server and for every run worker, so with ticks every
second that check was most of a tick's CPU, and ~0.3 s of every run's start (py-spy at
100 msg/s). The tables are made here instead, as the pipeline's own tables are: by the
deployment step that owns them, never by the processes that only use them.
"""

from __future__ import annotations

from sqlalchemy import create_engine, inspect

# The table each of dagster-postgres's three storages checks before creating its own.
MARKER_TABLES = ("runs", "event_logs", "jobs")


def missing_dagster_tables(postgres_url: str) -> list[str]:
    """Which of the storages' marker tables are missing from the database."""
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            present = set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    return [t for t in MARKER_TABLES if t not in present]


def create_dagster_storage(postgres_url: str) -> bool:
    """Make Dagster's run, event-log and schedule tables (and their indexes and
    migration stamp) in the database at ``postgres_url`` where they are missing, as
    dagster-postgres does when it creates them itself. True if any were made; running
    it again changes nothing. A Dagster upgrade's schema changes still go through
    ``dagster instance migrate``."""
    if not missing_dagster_tables(postgres_url):
        return False
    from dagster_postgres import DagsterPostgresStorage

    storage = DagsterPostgresStorage(postgres_url, should_autocreate_tables=True)
    for part in (storage.run_storage, storage.event_log_storage, storage.schedule_storage):
        part.dispose()
    return True
