"""A STAND-IN for Apache Doris Routine Load, for tests on MariaDB. Not Doris.

MariaDB has no Routine Load, and Doris cannot run on this machine. This small loader
plays the part of a site's three Routine Load jobs (``resources.sql.tables.
routine_load_ddl``) against the MariaDB stand-in, so ``WADO_DORIS_LOAD=routine_load``
can be tested end to end: it consumes the log, state and image topics with its own
consumer group and maps each JSON record's fields by column name onto the table, as a
Routine Load job with ``"format" = "json"`` does. What it does not do: Doris' own
type conversion (it only trims datetime fractions to 6 digits), error accounting,
or DUPLICATE KEY semantics (the MariaDB object table has a primary key, so a
re-sent store message is kept once). It runs in a thread of the test process.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

from kafka import KafkaConsumer
from sqlalchemy import Engine

from wado_pipeline.core import schema as S
from wado_pipeline.resources.sql.tables import ROUTINE_LOAD_SOURCES, sa_tables, sql_engine
from wado_pipeline.resources.sql.upserts import mariadb_upsert

_LONG_FRACTION = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(\.\d{1,6})\d*$")


def _value(value: Any) -> Any:
    if isinstance(value, str):
        m = _LONG_FRACTION.match(value)
        if m:
            return f"{m.group(1)} {m.group(2)}{m.group(3)}"
    return value


class RoutineLoadStandIn:
    """Loads ``topics`` (``log``/``state``/``image`` -> topic) into MariaDB at ``url``."""

    def __init__(self, bootstrap: str, url: str, topics: dict[str, str], group: str) -> None:
        self.engine: Engine = sql_engine(url, charset="utf8mb4")
        self.table_of = {topics[src]: name for name, src in ROUTINE_LOAD_SOURCES.items()}
        self.consumer = KafkaConsumer(
            *self.table_of,
            bootstrap_servers=bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            consumer_timeout_ms=500,
        )
        self.loaded = dict.fromkeys(ROUTINE_LOAD_SOURCES, 0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def load_available(self) -> int:
        """One poll of every topic, loaded into the tables; returns the rows loaded."""
        polled = self.consumer.poll(timeout_ms=500, max_records=2000)
        specs, tables = S.tables_for("mariadb"), sa_tables("mariadb", None)
        by_table: dict[str, list[dict]] = {}
        for tp, records in polled.items():
            name = self.table_of[tp.topic]
            columns = specs[name].column_names
            for r in records:
                obj = json.loads(r.value)
                by_table.setdefault(name, []).append({c: _value(obj.get(c)) for c in columns})
        with self.engine.begin() as conn:
            for name, rows in by_table.items():
                conn.execute(mariadb_upsert(specs[name], tables[name]), rows)
                self.loaded[name] += len(rows)
        if polled:
            self.consumer.commit()
        return sum(len(rows) for rows in by_table.values())

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.load_available()
        except BaseException as exc:  # reported by stop(): a test must see it
            self.error = exc

    def start(self) -> RoutineLoadStandIn:
        self._thread = threading.Thread(target=self._run, name="routine-load-standin")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.consumer.close()
        self.engine.dispose()
        if self.error is not None:
            raise RuntimeError("the Routine Load stand-in failed") from self.error
