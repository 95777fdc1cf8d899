"""Run output lands in the compute-log files the UI reads, and (unless ``mirror: true``)
not on the terminal of the process that ran it: no ``tail`` copy, no watcher processes."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance

from wado_pipeline.dagster_internals import ComputeIOType
from wado_pipeline.instance.compute_logs import FileComputeLogManager

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import os, sys
    from wado_pipeline.instance.compute_logs import FileComputeLogManager
    manager = FileComputeLogManager(sys.argv[1], mirror=sys.argv[2] == "true")
    print("before", flush=True)
    with manager.capture_logs(["run", "compute_logs", "key"]):
        print("from python", flush=True)
        os.system("echo from a child process")
        print("to stderr", file=sys.stderr, flush=True)
    print("after", flush=True)
    """
)


def _run_child(base: Path, mirror: bool) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(base), "true" if mirror else "false"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_run_output_goes_to_the_files_only(tmp_path):
    done = _run_child(tmp_path, mirror=False)
    assert done.stdout.splitlines() == ["before", "after"]
    assert "to stderr" not in done.stderr
    manager = FileComputeLogManager(str(tmp_path))
    key = ["run", "compute_logs", "key"]
    data = manager.get_log_data(key)  # what the UI's stdout/stderr tabs read
    assert data.stdout.decode().splitlines() == ["from python", "from a child process"]
    assert data.stderr.decode().splitlines() == ["to stderr"]
    assert manager.is_capture_complete(key)
    assert manager.get_log_data_for_type(key, ComputeIOType.STDOUT, 0, None)[1] > 0


def test_mirror_true_also_copies_it_to_the_terminal(tmp_path):
    done = _run_child(tmp_path, mirror=True)
    out = done.stdout.splitlines()
    assert out[0] == "before" and out[-1] == "after"
    assert {"from python", "from a child process"} <= set(out)
    data = FileComputeLogManager(str(tmp_path)).get_log_data(["run", "compute_logs", "key"])
    assert "from python" in data.stdout.decode()


@pytest.mark.parametrize("env", ["same", "other", "unset"])
def test_the_projects_dagster_yaml_uses_it_under_the_instance_home(tmp_path, monkeypatch, env):
    """Under the home the instance was opened from, whatever DAGSTER_HOME says (a test or
    a script opening an instance from a directory must not write into its working
    directory)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    env_home = {"same": home, "other": tmp_path / "elsewhere", "unset": None}[env]
    if env_home is None:
        monkeypatch.delenv("DAGSTER_HOME", raising=False)
    else:
        monkeypatch.setenv("DAGSTER_HOME", str(env_home))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", "postgresql+psycopg2://unused@127.0.0.1:1/unused")
    config = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    assert config["compute_logs"]["config"]["mirror"] is False
    with DagsterInstance.from_config(str(home)) as instance:
        manager = instance.compute_log_manager
        assert isinstance(manager, FileComputeLogManager)
        path = Path(manager.get_captured_local_path(["run", "compute_logs", "key"], "out"))
        assert path.parent.parent.parent == home / "storage"  # where Dagster's default writes
