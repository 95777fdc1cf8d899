"""The warm-process run launcher (dagster.yaml, wado_pipeline/instance/launcher.py):

- every run is forked from one warm process, which is replaced when it dies, with no
  batch lost;
- the UI's Terminate button (the webserver's terminateRun) cancels a run that is
  running, and the sensor relaunches its range so the rows still arrive;
- a worker is signalled only if it is the very process that was launched.
"""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus
from sqlalchemy import create_engine, text

from wado_pipeline.bench.sandbox import dagster_process
from wado_pipeline.core.run_contract import JOB_NAME, UPKEEP_LANE
from wado_pipeline.dagster_internals import DagsterLaunchFailedError, WorkerStatus
from wado_pipeline.instance.launcher import (
    WORKER_TAG,
    WarmProcessRunLauncher,
    signal_worker,
    worker_niceness,
)
from wado_pipeline.instance.warm_process import process_start_ticks
from wado_pipeline_tests.support import encode, postgres_rows, synthetic_messages, wait_until
from wado_pipeline_tests.test_system.test_ui import gql, running_dagster_dev

ZYGOTE = "wado_pipeline.instance.warm_process"


def zygotes(home) -> list[int]:
    """The warm processes of this DAGSTER_HOME: the zygote's command line, and a parent
    that is not a zygote (its forked run workers share the command line)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if ZYGOTE in cmd and str(home) in cmd and fields[0] != "Z":
            found[int(entry)] = int(fields[1])
    return [pid for pid, parent in found.items() if parent not in found]


def image_rows(settings) -> int:
    return postgres_rows(settings, "dicom_image_meta")


def batch_runs(instance: DagsterInstance):
    return [r for r in instance.get_runs() if r.job_name == JOB_NAME]


@pytest.mark.stack
@pytest.mark.slow
def test_runs_fork_from_a_warm_process_replaced_when_it_dies(
    settings, produce, storage_root, dagster_home, monkeypatch
):
    home, storage_url = dagster_home
    messages = synthetic_messages(storage_root, 160)
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", storage_url)
    with dagster_process(["dagster-daemon", "run"], settings, home, storage_url):
        produce(encode(messages[:100]), partition=0)
        wait_until(lambda: image_rows(settings) == 100, 180, "the first 100 rows", interval=1)
        (first,) = wait_until(lambda: zygotes(home) or None, 30, "the warm process")
        with DagsterInstance.from_config(str(home)) as instance:
            runs = wait_until(
                lambda: (rs := batch_runs(instance)) and all(r.is_finished for r in rs) and rs,
                60,
                "the first runs to end",
            )
            workers = [json.loads(r.tags[WORKER_TAG]) for r in runs]
            assert len({w["pid"] for w in workers}) == len(runs)
            assert all(w["pid"] != first and w["host"] == socket.gethostname() for w in workers)
            # The run's output was captured into the compute-log files the UI reads (its
            # runs print nothing below WARNING: they are empty), and marked complete.
            manager = instance.compute_log_manager
            for r in runs:
                (captured,) = instance.get_records_for_run(
                    r.run_id, of_type=DagsterEventType.LOGS_CAPTURED
                ).records
                file_key = captured.event_log_entry.dagster_event.logs_captured_data.file_key
                key = manager.build_log_key_for_run(r.run_id, file_key)
                assert manager.is_capture_complete(key)
                for ext in ("out", "err"):
                    assert Path(manager.get_captured_local_path(key, ext)).is_file()

            os.kill(first, signal.SIGKILL)
            produce(encode(messages[100:]), partition=0)
            wait_until(lambda: image_rows(settings) == 160, 180, "all 160 rows", interval=1)
            every = wait_until(
                lambda: (rs := batch_runs(instance)) and all(r.is_finished for r in rs) and rs,
                60,
                "the later runs to end",
            )
            later = [r for r in every if r.run_id not in {x.run_id for x in runs}]
            assert later and all(WORKER_TAG in r.tags for r in later)  # forked, not spawned
            assert all(r.status == DagsterRunStatus.SUCCESS for r in every)
        (second,) = zygotes(home)
        assert second != first


TERMINATE = """mutation ($id: String!) { terminateRun(runId: $id) { __typename
  ... on TerminateRunFailure { message } ... on PythonError { message } } }"""


@pytest.mark.stack
@pytest.mark.slow
def test_the_ui_terminate_button_cancels_a_running_run(
    settings, produce, storage_root, dagster_home, monkeypatch
):
    """A run held inside write_postgres (the test locks the table) is terminated through
    the webserver, as the button does: it ends CANCELED, and its range is relaunched by
    the sensor, so every row still arrives once."""
    home, storage_url = dagster_home
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", storage_url)
    messages = synthetic_messages(storage_root, 50)
    schema = settings.postgres_schema
    locker = create_engine(settings.postgres_url).connect()
    locker.execute(
        text(
            f'LOCK TABLE "{schema}".dicom_state_meta, "{schema}".dicom_image_meta '
            "IN ACCESS EXCLUSIVE MODE"
        )
    )
    try:
        with running_dagster_dev(settings, home, storage_url) as (url, _):
            produce(encode(messages), partition=0)
            with DagsterInstance.from_config(str(home)) as instance:
                (run,) = wait_until(
                    lambda: [r for r in batch_runs(instance) if WORKER_TAG in r.tags] or None,
                    120,
                    "a batch run forked by the warm launcher",
                )
                wait_until(
                    lambda: instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED,
                    60,
                    "the run to start",
                )
                out = gql(url, TERMINATE, id=run.run_id)["terminateRun"]
                assert out["__typename"] == "TerminateRunSuccess", out
                # The worker is blocked in PostgreSQL until the lock goes; Dagster
                # interrupts the step as soon as control is back in Python.
                locker.rollback()
                ended = wait_until(
                    lambda: (r := instance.get_run_by_id(run.run_id)).is_finished and r,
                    60,
                    "the terminated run to end",
                )
                assert ended.status == DagsterRunStatus.CANCELED
                wait_until(lambda: image_rows(settings) == 50, 180, "the relaunched range's rows")
    finally:
        locker.close()


def test_only_the_launched_process_is_signalled():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = process_start_ticks(proc.pid)
        assert start is not None
        host = socket.gethostname()
        assert "host" in signal_worker({"host": "elsewhere", "pid": proc.pid, "start": start})
        # the same pid with another start time is another process: left alone
        assert "ended" in signal_worker({"host": host, "pid": proc.pid, "start": start + 1})
        assert proc.poll() is None
        assert signal_worker({"host": host, "pid": proc.pid, "start": start}) is None
        assert proc.wait(timeout=10) == -signal.SIGTERM
        assert "ended" in signal_worker({"host": host, "pid": proc.pid, "start": start})
    finally:
        proc.kill()
        proc.wait()


def test_the_warm_process_preloads_what_a_run_worker_imports():
    """dagster.yaml's preload list: each module exists, and each is one a run worker
    imports anyway (its code location, Dagster's run command, and opening its instance
    from a reference, as a worker does), so the warm process holds nothing runs do not
    use."""
    import yaml

    config = yaml.safe_load((Path(__file__).parents[2] / "dagster.yaml").read_text())
    preload = config["run_launcher"]["config"]["preload_modules"]
    probe = (
        "import sys, wado_pipeline.definitions, dagster._cli.api, dagster_postgres; "
        "from dagster import DagsterInstance; DagsterInstance.local_temp(); "
        f"print([m for m in {preload!r} if m not in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert "wado_pipeline" not in " ".join(preload)  # the code location has its own list
    assert config["run_launcher"]["config"]["code_location_modules"] == [
        yaml.safe_load((Path(__file__).parents[2] / "workspace.yaml").read_text())["load_from"][0][
            "python_module"
        ]["module_name"]
    ]


def test_a_changed_code_location_replaces_the_warm_process(tmp_path, monkeypatch):
    """The warm process imports the code location once; a source file that changed
    since (a reload) makes the next launch start a new one, so runs run the new code."""
    pkg = tmp_path / "fingerprinted_location"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("VERSION = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # for the warm process
    launcher = WarmProcessRunLauncher(
        preload_modules=[], code_location_modules=["fingerprinted_location"]
    )
    try:
        launcher._zygote()
        first = launcher._proc
        launcher._zygote()
        assert launcher._proc is first  # nothing changed: the same process
        (pkg / "__init__.py").write_text("VERSION = 22\n")
        reply = launcher._fork(BOGUS)
        assert reply is not None and reply["pid"] > 0
        assert launcher._proc is not first and launcher._proc.poll() is None
        assert first.wait(timeout=30) == 0  # the old one ended by itself
    finally:
        launcher.dispose()


BOGUS = {"run_id": "no-such-run", "instance_ref": "{}"}  # a worker that exits at once


def test_upkeep_workers_are_forked_below_the_batches():
    """An upkeep run's worker (its tags name the upkeep lane) runs at niceness 10, set
    before the warm process answers; a batch run's at the warm process's own."""
    assert worker_niceness({**UPKEEP_LANE, "dagster/schedule_name": "x"}) == 10
    assert worker_niceness({"wado/lane": "data"}) == 0 and worker_niceness({}) == 0
    launcher = WarmProcessRunLauncher(preload_modules=[])  # the worker imports Dagster
    try:
        launcher._zygote()
        own = os.getpriority(os.PRIO_PROCESS, launcher._proc.pid)
        upkeep = launcher._fork({**BOGUS, "nice": worker_niceness(UPKEEP_LANE)})
        batch = launcher._fork({**BOGUS, "nice": 0})
        assert os.getpriority(os.PRIO_PROCESS, upkeep["pid"]) == own + 10
        assert os.getpriority(os.PRIO_PROCESS, batch["pid"]) == own
    finally:
        launcher.dispose()


def test_a_dead_warm_process_is_replaced_before_the_request():
    launcher = WarmProcessRunLauncher(preload_modules=[])
    try:
        launcher._zygote()
        first = launcher._proc
        first.kill()
        first.wait(timeout=10)
        reply = launcher._fork(BOGUS)
        assert reply is not None and reply["pid"] > 0
        assert launcher._proc is not first and launcher._proc.poll() is None
    finally:
        launcher.dispose()


def _children_cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[13]) + int(fields[14])  # cutime + cstime: of children waited for


def test_an_ended_workers_cpu_time_is_counted_in_the_warm_process():
    """The warm process waits for its workers, so their CPU time adds up in its own
    children's time (how bench counts the deployment's CPU); none is left a zombie."""
    launcher = WarmProcessRunLauncher(preload_modules=[])  # the worker imports Dagster
    try:
        launcher._zygote()
        zygote = launcher._proc.pid
        before = _children_cpu_ticks(zygote)
        reply = launcher._fork(BOGUS)
        wait_until(
            lambda: (
                process_start_ticks(reply["pid"]) is None
                and not Path(f"/proc/{reply['pid']}").exists()
            ),
            60,
            "the worker to end and be waited for",
            0.1,
        )
        assert _children_cpu_ticks(zygote) > before
    finally:
        launcher.dispose()


def test_a_request_without_an_answer_is_not_sent_again():
    """A warm process that read the request but does not answer (stopped here) may
    have forked the worker: the launch fails rather than start a second one."""
    launcher = WarmProcessRunLauncher(preload_modules=[])
    try:
        launcher._zygote()
        stuck = launcher._proc
        os.kill(stuck.pid, signal.SIGSTOP)
        launcher._sock.settimeout(1.0)
        with pytest.raises(DagsterLaunchFailedError):
            launcher._fork(BOGUS)
        assert stuck.wait(timeout=30) != 0  # ended (killed) with its socket
        assert launcher._proc is None
    finally:
        launcher.dispose()


def test_stopping_the_warm_process_lets_it_end_by_itself():
    """The launcher's stop closes the warm process's input: it ends on its own (exit 0)
    rather than being killed after the stop's bound (closing only the socket left the
    stream made from it, and so the connection, open)."""
    launcher = WarmProcessRunLauncher(preload_modules=[])
    try:
        launcher._zygote()
        proc = launcher._proc
        launcher.dispose()
        assert proc.returncode == 0
    finally:
        launcher.dispose()


def test_worker_health_is_the_recorded_process_alive():
    """What Dagster's run monitoring asks of the launcher: a worker that runs, however
    silent, is RUNNING; once its process is gone the run is FAILED; a run this launcher
    recorded no worker for is never failed on a guess."""
    launcher = WarmProcessRunLauncher(preload_modules=[])
    silent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        tag = {"host": socket.gethostname(), "pid": silent.pid}
        tag["start"] = process_start_ticks(silent.pid)
        run = DagsterRun(job_name="ingest_job", tags={WORKER_TAG: json.dumps(tag)})
        assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
        silent.kill()
        silent.wait()
        result = launcher.check_run_worker_health(run)
        assert result.status == WorkerStatus.FAILED and str(silent.pid) in result.msg
        bare = DagsterRun(job_name="ingest_job")
        assert launcher.check_run_worker_health(bare).status == WorkerStatus.RUNNING
        assert launcher.supports_check_run_worker_health
    finally:
        silent.kill()
        launcher.dispose()
