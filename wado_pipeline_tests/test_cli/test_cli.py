"""The operator's commands against the real stack."""

import os
import subprocess
import sys

import pytest
from dagster import instance_for_test

from wado_pipeline_tests.support import dump_tables, run_range

pytestmark = pytest.mark.stack


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
    out = cli(settings, "init-db").stdout
    assert "PostgreSQL tables ready" in out and "Doris tables ready" in out
    assert all(v == [] for v in dump_tables(settings).values())
