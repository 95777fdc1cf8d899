"""The operator's commands against the real stack."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, instance_for_test
from sqlalchemy.exc import ProgrammingError

from wado_pipeline.bench.sandbox import dagster_home as sandbox_dagster_home
from wado_pipeline_tests.support import dump_tables, run_range

pytestmark = pytest.mark.stack

PROJECT = Path(__file__).resolve().parents[2]


def cli(settings, *args, check=True):
    env = {**os.environ, **settings.to_env()}
    env.pop("DAGSTER_HOME", None)
    return subprocess.run(
        [sys.executable, "-m", "wado_pipeline.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        check=check,
    )


def test_produce_lag_and_requeue_a_fixed_dead_letter(settings, storage_root, tmp_path):
    out = cli(settings, "produce", "--synthetic", "5", "--tenant", "hospA", "--seed", "cli")
    assert "published 5 store message(s)" in out.stdout
    lag = cli(settings, "lag").stdout.splitlines()
    assert lag[0].startswith(f"topic {settings.storage_topic}")
    pending = sum(int(line.split()[4]) for line in lag[2:])
    assert pending == 5
    # one file goes missing before the pipeline reads it
    victim = next(storage_root.rglob("*.dcm"))
    saved = tmp_path / "saved.dcm"
    victim.rename(saved)
    parts = {}
    for line in lag[2:]:
        p, end = int(line.split()[0]), int(line.split()[1])
        parts[p] = end
    with instance_for_test() as instance:
        for p, end in parts.items():
            if end:
                assert run_range(settings, instance, p, 0, end).success
        listing = cli(settings, "dlq", "list").stdout
        assert "file_missing" in listing
        dlq_offset = int(listing.splitlines()[2].split()[0])  # after the title and header
        # the operator restores the file, then requeues the dead letter
        saved.rename(victim)
        requeued = cli(settings, "dlq", "requeue", "--offset", str(dlq_offset)).stdout
        partition, offset = requeued.strip().rsplit("[", 1)[1].split("]@")
        assert run_range(settings, instance, int(partition), int(offset), int(offset) + 1).success
    tables = dump_tables(settings)
    assert len(tables["postgres.dicom_image_meta"]) == 5
    assert cli(settings, "dlq", "requeue", "--offset", "999", check=False).returncode == 1


def test_every_subcommand_has_help(settings):
    top = cli(settings, "--help").stdout
    for sub in ("inspect", "init-db", "produce", "lag", "replay", "rebuild", "dlq", "bench"):
        assert sub in top
        assert cli(settings, sub, "--help").returncode == 0
    assert cli(settings, check=False).returncode == 2
    assert (
        cli(
            settings, "replay", "--partition", "0", "--from", "5", "--to", "5", check=False
        ).returncode
        == 2
    )


def test_init_db_creates_tables(settings):
    out = cli(settings, "init-db", "--only", "postgres", "doris").stdout
    assert "PostgreSQL tables ready" in out and "Doris tables ready" in out
    assert "Dagster" not in out
    assert all(v == [] for v in dump_tables(settings).values())


def test_init_db_makes_dagster_storage_which_instances_no_longer_make(
    settings, tmp_path, monkeypatch
):
    """dagster.yaml leaves the storage's tables to init-db (should_autocreate_tables:
    false): an instance opened on an empty database finds no runs table, and after
    init-db, run twice, it works."""
    with sandbox_dagster_home(tmp_path, settings.postgres_url, create_storage=False) as (
        home,
        url,
    ):
        monkeypatch.setenv("DAGSTER_POSTGRES_URL", url)
        with (
            DagsterInstance.from_config(str(home)) as instance,
            pytest.raises(ProgrammingError, match='relation "runs" does not exist'),
        ):
            instance.get_runs(limit=1)
        first = cli(settings, "init-db", "--only", "dagster").stdout
        again = cli(settings, "init-db", "--only", "dagster").stdout
        with DagsterInstance.from_config(str(home)) as instance:
            assert instance.get_runs(limit=1) == []
            assert instance.get_ticks("any-origin", "any-selector") == []
            changes = instance.fetch_run_status_changes(DagsterEventType.RUN_SUCCESS, limit=1)
            assert changes.records == []
    database = url.rsplit("/", 1)[1].split("?")[0]
    assert first.strip() == f"Dagster storage created (database {database})"
    assert again.strip() == f"Dagster storage ready (database {database})"


def test_make_validate_makes_the_storage_then_validates(settings, tmp_path, monkeypatch):
    """`make validate` runs where Dagster reads the project's dagster.yaml: its recipe
    makes the storage's tables first, and those two commands pass on an empty database."""
    recipe = (PROJECT / "Makefile").read_text().split("\nvalidate:", 1)[1].split("\n\n")[0]
    steps = [line.strip() for line in recipe.splitlines()[1:]]
    assert steps == [
        "$(BIN)/wado-pipeline init-db --only dagster",
        "$(BIN)/dagster definitions validate -w workspace.yaml",
    ]
    with sandbox_dagster_home(tmp_path, settings.postgres_url, create_storage=False) as (_, url):
        monkeypatch.setenv("DAGSTER_POSTGRES_URL", url)
        cli(settings, "init-db", "--only", "dagster")
        env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
        dagster = Path(sys.executable).parent / "dagster"
        done = subprocess.run(
            [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
            cwd=PROJECT,
            env={**env, **settings.to_env()},
            capture_output=True,
            text=True,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "All code locations passed validation" in done.stderr + done.stdout
