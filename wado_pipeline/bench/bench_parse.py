"""Benchmarks (``wado-pipeline bench …``): figures printed, never timed tests.

``parse``: header extraction rate (files/s: path and size checks against the
message, header read, value conversion) beside a bare
``pydicom.dcmread(stop_before_pixels=True)`` of the same files; the whole per-message
path (JSON message parse + extraction) single-core and with the worker pool.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pydicom

from wado_pipeline.bench.synthetic import synthetic_archive
from wado_pipeline.core.batch_rows import SourceRecord, process_record
from wado_pipeline.core.dicom.extract import extract
from wado_pipeline.core.dicom.parallel import process_records
from wado_pipeline.core.message import parse_store_message
from wado_pipeline.core.rejection import Rejected


def _best_rate(n: int, fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def corpus_messages(root: Path, n_synthetic: int) -> list[tuple[Path, bytes]]:
    """Synthetic CT/MR files (256² and 512², 130–520 KB) written under ``root``."""
    out = []
    half = n_synthetic // 2
    for rows, count, seed in ((256, half, "bench-a"), (512, n_synthetic - half, "bench-b")):
        for path, _, msg in synthetic_archive(root, "bench", count, seed=seed, rows=rows):
            out.append((path, json.dumps(msg).encode()))
    return out


def pydicom_corpus_messages(root: Path) -> list[tuple[Path, bytes]]:
    """The DICOM files shipped with pydicom (and pydicom-data, when installed),
    copied under ``root`` with the store message the receiver would publish."""
    import shutil

    from pydicom.data import get_testdata_files

    from wado_pipeline.core.dicom.receiver import store_message

    out = []
    for i, name in enumerate(sorted(set(get_testdata_files("*.dcm")))):
        try:
            ds = pydicom.dcmread(name, stop_before_pixels=True)
            message = store_message(Path(name), ds, "bench")
        except Exception:
            continue  # the benchmark times readable files; bad ones are tested elsewhere
        if "file_meta" not in ds.__dict__ or "TransferSyntaxUID" not in ds.file_meta:
            continue
        dest = root / "corpus" / f"{i:04d}.dcm"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(name, dest)
        message["file_path"] = str(dest)
        out.append((dest, json.dumps(message).encode()))
    return out


def _burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def cpu_parallel_ceiling(workers: int, n: int = 5_000_000) -> float:
    """Speed-up of a pure-CPU loop on ``workers`` forked processes: what this
    machine's cores can give at all (virtual cores are often shared)."""
    import multiprocessing

    t0 = time.perf_counter()
    for _ in range(workers):
        _burn(n)
    serial = time.perf_counter() - t0
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        t0 = time.perf_counter()
        pool.map(_burn, [n] * workers)
        parallel = time.perf_counter() - t0
    return serial / parallel


def bench_parse(n_synthetic: int = 600, repeat: int = 3, workers: int | None = None) -> dict:
    """Extraction vs bare read over the pydicom corpus plus ``n_synthetic`` CT/MR files."""
    workers = workers or os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        items = pydicom_corpus_messages(root) + corpus_messages(root, n_synthetic)
        paths = [p for p, _ in items]
        records = [SourceRecord(0, i, v) for i, (_, v) in enumerate(items)]
        n = len(records)
        for p in paths:  # warm the page cache so every mode reads from memory
            p.read_bytes()
        bare = _best_rate(
            n, lambda: [pydicom.dcmread(p, stop_before_pixels=True) for p in paths], repeat
        )
        # Header extraction proper: file checks against the message, header read, value
        # conversion (``extract``), on messages parsed beforehand.
        parsed = []
        for r in records:
            # a corpus file whose message is unusable is timed with the rest below
            with contextlib.suppress(Rejected):
                parsed.append(parse_store_message(r.value))

        def extract_all() -> None:
            for m in parsed:
                with contextlib.suppress(Rejected):
                    extract(m, (root,))

        single = _best_rate(len(parsed), extract_all, repeat)
        # The whole per-message path of a run: JSON message parse + extraction.
        per_message = _best_rate(n, lambda: [process_record(r, (root,)) for r in records], repeat)
        process_records(records[:200], (root,), workers)  # start the pool once
        parallel = _best_rate(n, lambda: process_records(records, (root,), workers), repeat)
        accepted = sum(1 for o in process_records(records, (root,), 1) if hasattr(o, "extracted"))
    return {
        "mode": "parse",
        "files": n,
        "synthetic_files": n_synthetic,
        "accepted": accepted,
        "bare_dcmread_files_per_s": round(bare, 1),
        "extract_single_files_per_s": round(single, 1),
        "message_single_msgs_per_s": round(per_message, 1),
        "extract_parallel_files_per_s": round(parallel, 1),
        "single_vs_bare": round(single / bare, 3),
        "message_vs_bare": round(per_message / bare, 3),
        "parallel_vs_single": round(parallel / per_message, 3),
        "workers": workers,
        "cpu_parallel_ceiling": round(cpu_parallel_ceiling(workers), 3),
        "machine_cores": os.cpu_count(),
        "transcode_need_transfer": bench_transcode(),
        "rows_vs_dataframe": bench_rows_vs_dataframe(),
    }


def bench_transcode(copies: int = 8) -> dict[str, dict]:
    """NeedTransfer rewrites per source syntax (``core.dicom.transcode``: decode, write,
    fsync, rename, in a forked child): files/s over ``copies`` fresh copies of every
    pydicom test file in that syntax, and how many of those files decode at all."""
    import shutil
    import warnings

    from pydicom.data import get_testdata_files

    from wado_pipeline.core.dicom.transcode import Transcoding, transcode_in_place

    by_syntax: dict[str, list[str]] = {}
    for name in sorted(set(get_testdata_files("*.dcm"))):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ts = pydicom.dcmread(name, stop_before_pixels=True).file_meta.TransferSyntaxUID
        except Exception:
            continue
        if ts.is_compressed:
            by_syntax.setdefault(str(ts), []).append(name)
    policy = Transcoding()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for ts, names in sorted(by_syntax.items()):
            work = []
            for i in range(copies):
                for j, name in enumerate(names):
                    dest = Path(tmp) / f"{ts}_{i}_{j}.dcm"
                    shutil.copyfile(name, dest)
                    work.append(dest)
            t0 = time.perf_counter()
            outcomes = [transcode_in_place(str(p), policy).outcome for p in work]
            elapsed = time.perf_counter() - t0
            out[f"{ts} {pydicom.uid.UID(ts).name}"] = {
                "files_per_s": round(len(work) / elapsed, 1),
                "decoded": f"{outcomes.count('done') // copies} of {len(names)} files",
            }
            for p in work:
                p.unlink()
    return out


def bench_rows_vs_dataframe(repeat: int = 20) -> dict[str, dict]:
    """Why the hot path keeps plain rows: a batch's image rows copied as dicts, against
    the same rows through a pandas DataFrame and back (what a DataFrame-based step would
    add per batch), at the smallest and the largest batch the policy makes."""
    import pandas as pd

    from wado_pipeline.core.dicom.extract import build_records

    with tempfile.TemporaryDirectory() as tmp:
        items = list(synthetic_archive(Path(tmp), "bench", 1, seed="rows", rows=64))
        _, ds, _ = items[0]
        image = build_records(ds, "bench", datetime.now(), 0).image
    out = {}
    for n in (50, 2000):
        rows = [dict(image, sop_uid=f"{image['sop_uid']}.{i}") for i in range(n)]
        plain = _best_rate(1, lambda rows=rows: [dict(r) for r in rows], repeat)
        frame = _best_rate(
            1, lambda rows=rows: pd.DataFrame.from_records(rows).to_dict("records"), repeat
        )
        out[f"{n}_rows"] = {
            "plain_ms": round(1000 / plain, 3),
            "dataframe_ms": round(1000 / frame, 3),
            "dataframe_vs_plain": round(plain / frame, 1),
        }
    return out


def print_table(result: dict) -> None:
    width = max(len(k) for k in result)
    for k, v in result.items():
        print(f"{k:<{width}}  {v}")


RESULTS_DIR = Path("bench/results")


def save_result(result: dict) -> Path:
    """Write ``bench/results/<mode>.json`` and ``latest.json``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2) + "\n"
    (RESULTS_DIR / f"{result['mode']}.json").write_text(text)
    latest = RESULTS_DIR / "latest.json"
    latest.write_text(text)
    return latest
