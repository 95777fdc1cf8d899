"""``wado-pipeline``: the operator's command line (argument parsing and dispatch).

Subcommands: ``inspect`` (what would be stored for a file), ``init-db`` (create
or print the tables), ``produce`` (publish store messages), ``lag`` (per-partition
progress), ``replay`` (launch a run for an offset range), ``dlq``, ``bench``.
Each command's work lives in its own module of this package; ``bench`` and
``produce --synthetic`` load the development package (``wado_pipeline.bench``) on demand.
Exit codes: 0 success, 1 the command ran but found a problem, 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from wado_pipeline.core.dicom.extract import build_records, read_header
from wado_pipeline.core.rejection import Rejected
from wado_pipeline.core.run_contract import SINKS
from wado_pipeline.core.topic_json import encode_row
from wado_pipeline.settings import Settings

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2


def inspect_file(path: Path, tenant: str) -> dict:
    """The records the pipeline would store for ``path`` (same code path as a run)."""
    try:
        ds, size = read_header(path)
        created = datetime.fromtimestamp(path.stat().st_mtime)
        out = build_records(ds, tenant, created, size)
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
    from sqlalchemy.engine import make_url

    from wado_pipeline.resources.sql.tables import doris_ddl, grants_sql, routine_load_ddl, sql_ddl

    settings = Settings.from_env()
    if args.print_grants:
        backends = [args.backend] if args.backend else ["postgres", "mariadb", "doris"]
        for i, backend in enumerate(backends):
            url = settings.postgres_url if backend == "postgres" else settings.doris_url
            database = make_url(url).database or ""
            if i:
                sys.stdout.write("\n")
            sys.stdout.write(
                grants_sql(
                    backend, args.print_grants, args.reader, database, settings.postgres_schema
                )
            )
        return EXIT_OK
    if args.print_ddl:
        if args.print_ddl == "doris":
            sys.stdout.write(doris_ddl(settings.doris_buckets, settings.doris_replication_num))
            if settings.doris_load == "routine_load":
                database = make_url(settings.doris_url).database or ""
                topics = {
                    "log": settings.log_topic,
                    "state": settings.state_topic,
                    "image": settings.image_topic,
                }
                sys.stdout.write(
                    "\n" + routine_load_ddl(settings.kafka_bootstrap, topics, database)
                )
        else:
            sys.stdout.write(sql_ddl(args.print_ddl))
        return EXIT_OK
    return _create_tables(settings, args.only or list(INIT_PARTS))


# What `init-db` makes, in this order: Dagster's storage (when DAGSTER_POSTGRES_URL names
# it, as dagster.yaml reads it), the index tables, the analytics tables.
INIT_PARTS = ("dagster", "postgres", "doris")


def _create_tables(settings: Settings, parts: list[str]) -> int:
    from sqlalchemy.engine import make_url

    from wado_pipeline.resources.configured import build_resources
    from wado_pipeline.resources.dagster_instance.dagster_storage import create_dagster_storage

    if "dagster" in parts:
        url = os.environ.get("DAGSTER_POSTGRES_URL")
        if url:
            made = create_dagster_storage(url)
            database = make_url(url).database
            print(f"Dagster storage {'created' if made else 'ready'} (database {database})")
        else:
            print("Dagster storage skipped: DAGSTER_POSTGRES_URL is not set")
    resources = build_resources(settings, env_secrets=False)
    if "postgres" in parts:
        resources["postgres"].create_tables()
        print(f"PostgreSQL tables ready (schema {settings.postgres_schema})")
    if "doris" in parts:
        resources["doris"].create_tables()
        print(f"Doris tables ready (flavor {settings.doris_flavor})")
    return EXIT_OK


def _settings() -> Settings:
    return Settings.from_env()


def cmd_produce(args: argparse.Namespace) -> int:
    from wado_pipeline.cli import produce

    settings = _settings()
    root = Path(args.root) if args.root else settings.storage_roots[0]
    if args.synthetic is not None:
        from wado_pipeline.bench.synthetic import synthetic_archive

        archive = synthetic_archive(root, args.tenant, args.synthetic, seed=args.seed)
        messages = (message for _, _, message in archive)
        total = args.synthetic
    else:
        if not args.directory or not Path(args.directory).is_dir():
            print("produce: give a DIRECTORY of DICOM files or --synthetic N", file=sys.stderr)
            return EXIT_USAGE
        messages = list(produce.messages_for_directory(Path(args.directory), root, args.tenant))
        total = len(messages)
    n = produce.publish(settings, messages, total=total, rate=args.rate)
    print(f"published {n} store message(s) to {settings.storage_topic}; files under {root}")
    return EXIT_OK


def cmd_lag(args: argparse.Namespace) -> int:
    from wado_pipeline.cli import table
    from wado_pipeline.cli.lag import lag

    settings = _settings()
    try:
        rows = lag(settings)
    except LookupError as exc:
        print(f"lag: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    print(f"topic {settings.storage_topic}, group {settings.consumer_group}")
    columns = ("partition", "end", "sensor_cursor", "committed", "pending", "oldest_age_s")
    print(table.render([_lag_row(r) for r in rows], columns))
    return EXIT_OK


def _lag_row(r) -> dict:
    return {
        "partition": r.partition,
        "end": r.end,
        "sensor_cursor": r.sensor_cursor,
        "committed": r.committed,
        "pending": r.pending,
        "oldest_age_s": r.oldest_pending_age_s,
    }


def cmd_replay(args: argparse.Namespace) -> int:
    from wado_pipeline.core.planning import OffsetRange
    from wado_pipeline.core.run_contract import JOB_NAME, REPLAY_TAG, run_config_for, tags_for

    settings = _settings()
    if args.to <= getattr(args, "from"):
        print("replay: --to must be greater than --from", file=sys.stderr)
        return EXIT_USAGE
    rng = OffsetRange(settings.storage_topic, args.partition, getattr(args, "from"), args.to)
    tags = {**tags_for(rng), REPLAY_TAG: "manual"}
    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

    client = DagsterGraphQLClient(args.host, port_number=args.port)
    try:
        run_id = client.submit_job_execution(JOB_NAME, run_config=run_config_for(rng), tags=tags)
    except (DagsterGraphQLClientError, OSError) as exc:
        print(f"replay: Dagster at {args.host}:{args.port} refused: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    print(f"launched run {run_id} for {rng}")
    return EXIT_OK


def cmd_rebuild(args: argparse.Namespace) -> int:
    from wado_pipeline.cli.rebuild_command import RebuildFailed, rebuild, run_config

    settings = _settings()
    partitions = [int(p) for p in args.partitions.split(",") if p] if args.partitions else None
    config = run_config(args.sink, args.since, args.from_offset, partitions)
    try:
        summary = rebuild(
            args.host,
            args.port,
            config,
            settings.storage_topic,
            wait=not args.no_wait,
        )
    except RebuildFailed as exc:
        print(f"rebuild: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    except OSError as exc:
        print(f"rebuild: Dagster at {args.host}:{args.port} refused: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    if "elapsed_s" in summary:
        print(
            f"rebuilt {summary['sink']}: {summary['messages']} message(s) in "
            f"{summary['runs']} run(s), {summary['elapsed_s']} s "
            f"({summary['seconds_per_10k_messages']} s per 10,000 messages)"
        )
    return EXIT_OK


def cmd_dlq(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from wado_pipeline.cli import dlq, table

    settings = _settings()
    if args.action == "list":
        rows = dlq.dead_letters(settings, args.limit)
        print(f"dead-letter topic {settings.dlq_topic}: last {len(rows)}")
        if rows:
            columns = ("offset", "reason", "source", "size", "detail")
            print(table.render([asdict(d) for d in rows], columns))
        return EXIT_OK
    if args.offset is None:
        print("dlq requeue: --offset is required", file=sys.stderr)
        return EXIT_USAGE
    try:
        partition, offset = dlq.requeue(settings, args.offset)
    except LookupError as exc:
        print(f"dlq requeue: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    print(f"requeued dead letter {args.offset} to {settings.storage_topic}[{partition}]@{offset}")
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    import warnings

    from wado_pipeline.bench import bench_parse as bench

    warnings.simplefilter("ignore")  # pydicom warns about the corpus' odd files
    if args.mode == "parse":
        result = bench.bench_parse(n_synthetic=args.n or 600, repeat=args.repeat)
    elif args.mode == "retention":
        from wado_pipeline.bench import bench_retention

        result = bench_retention.retention(args.n or (500 if args.quick else 5000))
    else:
        from wado_pipeline.bench import bench_pipeline

        quick = args.quick
        upstream = Path(args.against_upstream).resolve() if args.against_upstream else None
        if upstream is not None and not (upstream / "bin" / "wado-consumer").is_file():
            print(f"bench: no bin/wado-consumer under {upstream}", file=sys.stderr)
            return EXIT_PROBLEM
        if args.mode == "backlog":
            n = args.n or (1000 if quick else 10_000)
            result = bench_pipeline.backlog(n, args.max_batch)
            if upstream is not None:
                from wado_pipeline.bench import bench_upstream as up

                result = up.with_backlog_comparison(result, up.backlog_upstream(upstream, n))
        else:
            rates = [float(r) for r in args.rates.split(",")]
            seconds = args.seconds or (20 if quick else 60)
            result = bench_pipeline.steady(rates, seconds)
            if upstream is not None:
                from wado_pipeline.bench import bench_upstream as up

                theirs = up.steady_upstream(upstream, rates, seconds)
                result = up.with_steady_comparison(result, theirs)
    bench.print_table(result)
    bench.save_result(result)
    return EXIT_OK


def _inspect_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--tenant", default="default", help="tenant_id to use (default: default)")


def _init_db_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--only",
        nargs="+",
        choices=INIT_PARTS,
        help="make only these: Dagster's storage (DAGSTER_POSTGRES_URL), the PostgreSQL "
        "index tables, the Doris tables (default: all three)",
    )
    p.add_argument("--print-ddl", choices=BACKENDS)
    p.add_argument(
        "--print-grants",
        metavar="ROLE",
        help="print least-privilege grants for the pipeline's role ROLE (and a read-only "
        "role, --reader) instead: what a DBA runs after init-db",
    )
    p.add_argument("--reader", default="wado_reader", help="the read-only role (wado_reader)")
    p.add_argument(
        "--backend", choices=BACKENDS, help="with --print-grants: one backend only (default: all)"
    )


def _produce_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("directory", nargs="?", metavar="DIRECTORY")
    p.add_argument("--synthetic", type=int, metavar="N", help="generate N CT/MR instances")
    p.add_argument("--seed", default="demo", help="seed of --synthetic (same seed, same UIDs)")
    p.add_argument("--tenant", default="default")
    p.add_argument("--root", help="storage root (default: first of WADO_STORAGE_ROOTS)")
    p.add_argument("--rate", type=float, help="messages per second (default: as fast as possible)")


def _replay_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--partition", type=int, required=True)
    p.add_argument("--from", type=int, required=True, metavar="A", help="first offset")
    p.add_argument("--to", type=int, required=True, metavar="B", help="end offset (exclusive)")


def _rebuild_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sink", required=True, choices=SINKS)
    when = p.add_mutually_exclusive_group()
    when.add_argument("--since", help="ISO 8601 time (UTC), e.g. 2026-11-01")
    when.add_argument("--from-offset", type=int, help="first offset in every partition")
    p.add_argument("--partitions", help="comma-separated partitions (default: all)")
    p.add_argument("--no-wait", action="store_true", help="launch the plan and return")


def _dlq_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("list", "requeue"))
    p.add_argument("--offset", type=int, help="requeue: offset in the dead-letter topic")
    p.add_argument("--limit", type=int, default=50, help="list: how many (default 50)")


def _bench_arguments(p: argparse.ArgumentParser) -> None:
    modes = ("parse", "backlog", "steady", "retention")
    p.add_argument("mode", nargs="?", default="parse", choices=modes)
    p.add_argument("-n", type=int, help="messages/files (parse 600, backlog 10,000)")
    p.add_argument("--quick", action="store_true", help="a small version (under 3 minutes)")
    p.add_argument("--repeat", type=int, default=3, help="parse: repetitions, best kept")
    cap = Settings.max_batch_messages
    p.add_argument("--max-batch", type=int, default=cap, help=f"backlog: batch cap ({cap})")
    p.add_argument("--rates", default="10,100", help="steady: messages/s, comma-separated")
    p.add_argument("--seconds", type=float, help="steady: seconds per rate (60; quick 20)")
    p.add_argument(
        "--against-upstream",
        metavar="PATH",
        help="backlog, steady: then measure upstream's PATH/bin/wado-consumer the same way "
        "and print both, with the ratios",
    )


def _webserver_options() -> argparse.ArgumentParser:
    """The options of the commands that talk to a running Dagster webserver."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--host", default="127.0.0.1", help="Dagster webserver host")
    parent.add_argument("--port", type=int, default=3000, help="Dagster webserver port")
    return parent


@dataclass(frozen=True)
class Command:
    name: str
    run: Callable[[argparse.Namespace], int]
    help: str
    description: str
    arguments: Callable[[argparse.ArgumentParser], None] | None = None
    webserver: bool = False  # takes --host and --port


BACKENDS = ("postgres", "mariadb", "doris")

COMMANDS = (
    Command(
        "inspect",
        cmd_inspect,
        "print what the pipeline would store for DICOM files (JSON Lines)",
        "For each file print one JSON object: state and image records and warnings, or the "
        "rejection reason. Exit 1 when any file is rejected.",
        _inspect_arguments,
    ),
    Command(
        "init-db",
        cmd_init_db,
        "create the tables in PostgreSQL and Doris, or print their DDL or grants",
        "Create the pipeline's tables (idempotent; run it as the tables' owner: the "
        "pipeline's runs only read and upsert). With --print-ddl, print the DDL for one "
        "backend instead; with --print-grants ROLE, the least-privilege grants. Both touch "
        "nothing.",
        _init_db_arguments,
    ),
    Command(
        "produce",
        cmd_produce,
        "publish a store message per DICOM file, as the receiver does",
        "Copy DICOM files under a storage root in the receiver's layout "
        "(<root>/<tenant>/<study>/<series>/<sop>.dcm) and publish one store message each "
        "to WADO_STORAGE_TOPIC. Either a DIRECTORY of files or --synthetic N.",
        _produce_arguments,
    ),
    Command(
        "lag",
        cmd_lag,
        "per partition: end offset, sensor cursor, committed offset, pending, age",
        "Progress of the pipeline on WADO_STORAGE_TOPIC. The sensor cursor is read from the "
        "Dagster instance in $DAGSTER_HOME (shown as - without one).",
    ),
    Command(
        "replay",
        cmd_replay,
        "launch a run for an offset range (recover a range by hand)",
        "Submit a run of the ingest job for offsets [FROM, TO) of one partition to a running "
        "Dagster webserver (dagster dev / make dev). Same code path as sensor runs; writes "
        "are idempotent, so replaying processed offsets changes nothing.",
        _replay_arguments,
        webserver=True,
    ),
    Command(
        "rebuild",
        cmd_rebuild,
        "refill one sink (doris, postgres or topics) from Kafka",
        "Launch the rebuild_sink job on a running Dagster webserver: it plans the processed "
        "offsets to replay (from --since or --from-offset up to the consumer group's "
        "offset) and the sensor runs them as bounded runs that write only the sink's "
        "assets, never moving the group. Prints progress until every run ended.",
        _rebuild_arguments,
        webserver=True,
    ),
    Command(
        "dlq",
        cmd_dlq,
        "list rejected messages, or requeue one after fixing its cause",
        "list: the last rejected messages of WADO_DLQ_TOPIC with reason, detail and source "
        "offset (no payloads). requeue --offset N: publish dead letter N's original value "
        "to WADO_STORAGE_TOPIC again, once the file or message is fixed.",
        _dlq_arguments,
    ),
    Command(
        "bench",
        cmd_bench,
        "measure throughput (prints figures, writes bench/results/latest.json)",
        "parse: header extraction vs bare pydicom reads over the pydicom corpus plus "
        "synthetic CT/MR files. backlog: N messages already in the topic, processed (a) by "
        "the core loop without Dagster and (b) by dagster-daemon with the sensor and queued "
        "runs. steady: messages at fixed rates with the daemon running; latency from "
        "produce to row visible. retention: N finished runs (5,000) deleted by the pruning "
        "rules, runs per second. Needs the local stack (make up).",
        _bench_arguments,
    ),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wado-pipeline",
        description="Ingest DICOM store messages from Kafka into Kafka topics, "
        "PostgreSQL and Apache Doris (orchestrated by Dagster).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    webserver = _webserver_options()
    for c in COMMANDS:
        p = sub.add_parser(
            c.name,
            help=c.help,
            description=c.description,
            parents=[webserver] if c.webserver else [],
        )
        if c.arguments:
            c.arguments(p)
        p.set_defaults(func=c.run)
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
