"""Header parsing on all cores for large batches.

The worker pool is made once per process and reused by every batch. It forks, so
workers start in milliseconds and inherit the imported code; a run process is
fresh for every Dagster run, so a spawned pool would re-import pydicom per run.
Small batches stay in process: forking is not free and 50 files take ~50 ms.

A process that used the pool must call ``shutdown_pool()`` before it ends: Dagster's
run workers end without ``atexit`` handlers (a worker forked by the project's run
launcher ends with ``os._exit``; one spawned by multiprocessing, Dagster's default, also
joins its live children on exit), so a forgotten pool would be left running as orphans,
or keep the run process alive for ever.
"""

from __future__ import annotations

import atexit
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from wado_pipeline.core.batch_rows import Outcome, SourceRecord, process_record
from wado_pipeline.core.dicom.transcode import Transcoding

PARALLEL_THRESHOLD = 64

_pool: ProcessPoolExecutor | None = None
_pool_workers = 0


def _process_chunk(
    args: tuple[list[SourceRecord], tuple[Path, ...], Transcoding | None],
) -> list[Outcome]:
    records, roots, transcoding = args
    return [process_record(r, roots, transcoding) for r in records]


def _get_pool(workers: int) -> ProcessPoolExecutor:
    global _pool, _pool_workers
    if _pool is None or _pool_workers != workers:
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
        _pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
        _pool_workers = workers
    return _pool


def shutdown_pool() -> None:
    """Stop the worker pool (if any); the next parallel batch starts a new one."""
    global _pool, _pool_workers
    if _pool is not None:
        _pool.shutdown(wait=True, cancel_futures=True)
        _pool = None
        _pool_workers = 0


atexit.register(shutdown_pool)  # plain interpreters (CLI, benchmark) exit cleanly too


def process_records(
    records: Sequence[SourceRecord],
    roots: Sequence[Path],
    workers: int = 1,
    transcoding: Transcoding | None = None,
) -> list[Outcome]:
    """``process_record`` over a batch, in offset order; parallel when it pays."""
    roots = tuple(roots)
    if workers <= 1 or len(records) < PARALLEL_THRESHOLD:
        return [process_record(r, roots, transcoding) for r in records]
    n_chunks = workers * 4
    size = -(-len(records) // n_chunks)
    chunks = [
        (list(records[i : i + size]), roots, transcoding) for i in range(0, len(records), size)
    ]
    out: list[Outcome] = []
    for part in _get_pool(workers).map(_process_chunk, chunks):
        out.extend(part)
    return out
