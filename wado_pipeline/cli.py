"""``wado-pipeline``: the operator's command line.

Subcommands: ``inspect`` (what would be stored for a file), ``init-db`` (create
or print the tables), ``produce`` (publish store messages), ``lag`` (per-partition
progress), ``replay`` (launch a run for an offset range), ``bench``.
Exit codes: 0 success, 1 the command ran but found a problem, 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from wado_pipeline.core.extract import build_records, read_header
from wado_pipeline.core.rejection import Rejected
from wado_pipeline.core.wire import encode_row

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2


def inspect_file(path: Path, tenant: str) -> dict:
    """The records the pipeline would store for ``path`` (same code path as a run)."""
    try:
        ds, size = read_header(path)
        created = datetime.fromtimestamp(path.stat().st_mtime)
        out = build_records(ds, tenant, created, str(path), size)
    except Rejected as exc:
        r = exc.rejection
        return {"file": str(path), "rejected": {"reason": str(r.reason), "detail": r.detail}}
    return {"file": str(path), "state": out.state, "image": out.image, "warnings": out.warnings}


def cmd_inspect(args: argparse.Namespace) -> int:
    status = EXIT_OK
    for name in args.files:
        result = inspect_file(Path(name), args.tenant)
        if "rejected" in result:
            status = EXIT_PROBLEM
        sys.stdout.write(encode_row(result).decode() + "\n")
    return status


def cmd_init_db(args: argparse.Namespace) -> int:
    from wado_pipeline.resources.tables import doris_ddl, sql_ddl
    from wado_pipeline.settings import Settings

    settings = Settings.from_env()
    if args.print_ddl:
        if args.print_ddl == "doris":
            sys.stdout.write(doris_ddl(settings.doris_buckets, settings.doris_replication_num))
        else:
            sys.stdout.write(sql_ddl(args.print_ddl))
        return EXIT_OK
    from wado_pipeline.definitions import build_resources

    resources = build_resources(settings)
    resources["postgres"].ensure_tables()
    print(f"PostgreSQL tables ready (schema {settings.postgres_schema})")
    resources["doris"].ensure_tables()
    print(f"Doris tables ready (flavor {settings.doris_flavor})")
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    import warnings

    from wado_pipeline import bench

    warnings.simplefilter("ignore")  # pydicom warns about the corpus' odd files
    if args.mode == "parse":
        result = bench.bench_parse(n_synthetic=args.n, repeat=args.repeat)
    else:
        raise AssertionError(args.mode)
    bench.print_table(result)
    bench.save_result(result)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wado-pipeline",
        description="Ingest DICOM store messages from Kafka into Kafka topics, "
        "PostgreSQL and Apache Doris (orchestrated by Dagster).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "inspect",
        help="print what the pipeline would store for DICOM files (JSON Lines)",
        description="For each file print one JSON object: state and image records "
        "and warnings, or the rejection reason. Exit 1 when any file is rejected.",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--tenant", default="default", help="tenant_id to use (default: default)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser(
        "init-db",
        help="create the tables in PostgreSQL and Doris, or print their DDL",
        description="Create the pipeline's tables (idempotent). With --print-ddl, "
        "print the DDL for one backend instead and touch nothing.",
    )
    p.add_argument("--print-ddl", choices=("postgres", "mariadb", "doris"))
    p.set_defaults(func=cmd_init_db)

    p = sub.add_parser(
        "bench",
        help="measure throughput (prints figures, writes bench/results/latest.json)",
        description="parse: header extraction vs bare pydicom reads over the pydicom "
        "corpus plus synthetic CT/MR files.",
    )
    p.add_argument("mode", nargs="?", default="parse", choices=("parse",))
    p.add_argument("-n", type=int, default=600, help="synthetic files (default 600)")
    p.add_argument("--repeat", type=int, default=3, help="repetitions, best is kept")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
