"""A run launcher that forks run workers from a warm process (named in dagster.yaml).

Why: Dagster's default launcher asks the code server to *spawn* a process per run, which
imports Dagster and every library of the code location before the run can start: ~1.2 s
of CPU per run on this machine, and on two cores shared with Kafka and the databases
about 2.5 s from the queue to ``RUN_START``. A micro-batch pipeline launches a run every
few seconds, so that start is most of its latency and, under backlog, of its CPU.

This launcher keeps one process (``zygote``) that has imported those libraries, and forks
each run worker from it. The worker then does exactly what ``dagster api execute_run``
does (the command Dagster's container launchers run): loads the code location from the
run's origin, fresh, and executes the run in its own process. So a run is still one
process with its own instance and its own failure; re-execution, run retries, the queue's
limits and run monitoring work as before. What differs:

- ``terminate`` (the UI's button, run monitoring) signals the worker (SIGTERM, which
  Dagster turns into an interrupt of the step) instead of asking the code server; the
  worker is named by the ``wado/run_worker`` tag (host, pid, start time).
- Runs of an origin this process cannot run (another interpreter, no Python origin) go
  to the default launcher, as does everything if the zygote cannot be started.
- The zygote preloads the third-party modules, and the code location's own modules
  (``code_location_modules``: ~0.3 s of CPU per run otherwise). Upgrading a library
  needs a daemon restart (as it would for the code server). A changed code location
  does not: before each launch the launcher compares the code location's source files
  (path, size, modification time) with those the zygote imported, and replaces the
  zygote when they differ, so a reloaded code location runs its new code.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dagster import DagsterRun, Field

from wado_pipeline.core.run_contract import LANE_TAG, UPKEEP_LANE
from wado_pipeline.dagster_internals import (
    CheckRunHealthResult,
    ConfigurableClassData,
    DagsterLaunchFailedError,
    DefaultRunLauncher,
    LaunchRunContext,
    WorkerStatus,
    serialize_value,
)
from wado_pipeline.instance.warm_process import process_start_ticks

log = logging.getLogger(__name__)

WORKER_TAG = "wado/run_worker"

# Upkeep runs (the minute's verification, a pruning) are forked at this niceness, so a
# batch run gets the CPU first: a verification re-reads a minute's store messages and
# looks their keys up in both sinks, and on two cores, beside three batch runs, it
# slowed them all for its seconds (the 100 msg/s tail).
UPKEEP_NICENESS = 10


def worker_niceness(tags: Mapping[str, str]) -> int:
    """The niceness a run's worker is forked at: upkeep below the batches."""
    return UPKEEP_NICENESS if tags.get(LANE_TAG) == UPKEEP_LANE[LANE_TAG] else 0


# The zygote's first answer comes after its imports (~1-3 s); later ones after a fork.
READY_TIMEOUT_S = 120.0
FORK_TIMEOUT_S = 30.0


def source_fingerprint(modules: Sequence[str]) -> str:
    """Path, size and modification time of every Python source file of the packages of
    ``modules`` (found without importing them): ~1 ms for this project's ~90 files."""
    entries = []
    for name in modules:
        spec = importlib.util.find_spec(name.split(".")[0])
        if spec is None:
            continue
        roots = list(spec.submodule_search_locations or []) or [os.path.dirname(spec.origin)]
        for root in roots:
            for path in sorted(Path(root).rglob("*.py")):
                st = path.stat()
                entries.append(f"{path}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()


class WarmProcessRunLauncher(DefaultRunLauncher):
    """Forks each run's worker from a process that has already imported the libraries."""

    def __init__(
        self,
        inst_data: ConfigurableClassData | None = None,
        preload_modules: Sequence[str] = (),
        code_location_modules: Sequence[str] = (),
    ):
        super().__init__(inst_data=inst_data)
        self._preload = list(preload_modules)
        self._code = list(code_location_modules)
        self._code_fingerprint: str | None = None  # of the code the zygote imported
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._stream: Any = None
        self._sock: socket.socket | None = None

    @classmethod
    def config_type(cls) -> dict:
        return {
            "preload_modules": Field(
                [str],
                is_required=False,
                default_value=["dagster"],
                description="Modules the warm process imports once, for every run to share.",
            ),
            "code_location_modules": Field(
                [str],
                is_required=False,
                default_value=[],
                description="The code location's own modules, imported by the warm process "
                "too; it is replaced when a source file of their packages changes.",
            ),
        }

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> WarmProcessRunLauncher:
        return cls(
            inst_data=inst_data,
            preload_modules=config_value.get("preload_modules", []),
            code_location_modules=config_value.get("code_location_modules", []),
        )

    # -- launching ----------------------------------------------------------------------

    def prestart(self) -> None:
        """Start the warm process now, in the background, so that the first run does not
        wait for its imports (~3.5 s on this machine while the daemon starts): called
        by the daemon's run coordinator when the daemon sets up its queue."""

        def start() -> None:
            with self._lock:
                self._zygote()

        threading.Thread(target=start, name="warm-process-start", daemon=True).start()

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        origin = run.job_code_origin
        if origin is None or not _same_interpreter(origin.executable_path):
            super().launch_run(context)
            return
        request = {
            "run_id": run.run_id,
            "instance_ref": serialize_value(self._instance.get_ref()),
            "nice": worker_niceness(run.tags),
        }
        reply = self._fork(request)
        if reply is None or "pid" not in reply:
            log.warning("warm run launcher unavailable (%s); launching the default way", reply)
            super().launch_run(context)
            return
        self._instance.add_run_tags(
            run.run_id,
            {
                WORKER_TAG: json.dumps(
                    {"host": socket.gethostname(), "pid": reply["pid"], "start": reply["start"]}
                )
            },
        )
        self._run_ids.add(run.run_id)

    def _fork(self, request: dict) -> dict | None:
        """The zygote's answer, or None if no zygote could take the request (then the
        default launcher may). A request that reached a zygote which then gave no answer
        is not sent again: its worker may be running, and a second one would run the
        same batch beside it. The launch fails instead (Dagster's run retry and the
        sensor's relaunch take it from there)."""
        with self._lock:
            for _attempt in range(2):  # a zygote that died is replaced once
                stream = self._zygote()
                if stream is None:
                    return None
                try:
                    stream.write(json.dumps(request).encode() + b"\n")
                except OSError:
                    self._stop_zygote()  # it never read the request
                    continue
                try:
                    line = stream.readline()
                except OSError:
                    line = b""
                if line:
                    return json.loads(line)
                self._stop_zygote()
                raise DagsterLaunchFailedError(
                    "the warm run process took the run but gave no answer; not launched again"
                )
            return None

    def _zygote(self) -> Any:
        """The warm process's socket, started (and waited for) on first use, and again
        when the code location's sources changed since it imported them."""
        fingerprint = source_fingerprint(self._code)
        if (
            self._proc is not None
            and self._proc.poll() is None
            and fingerprint == self._code_fingerprint
        ):
            return self._stream
        self._stop_zygote()
        ours, theirs = socket.socketpair()
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "wado_pipeline.instance.warm_process",
                    "--fd",
                    str(theirs.fileno()),
                    "--preload",
                    ",".join([*self._preload, *self._code]),
                    "--home",
                    os.environ.get("DAGSTER_HOME", ""),
                ],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            log.warning("cannot start the warm run process: %s", exc)
            ours.close()
            return None
        finally:
            theirs.close()
        ours.settimeout(READY_TIMEOUT_S)
        stream = ours.makefile("rwb", buffering=0)
        try:
            ready = json.loads(stream.readline() or b"{}")
        except (OSError, ValueError):
            ready = {}
        if not ready.get("ready"):
            proc.kill()
            ours.close()
            return None
        if ready.get("not_preloaded"):
            log.warning("warm run process could not preload %s", ready["not_preloaded"])
        ours.settimeout(FORK_TIMEOUT_S)
        self._proc, self._stream, self._sock = proc, stream, ours
        self._code_fingerprint = fingerprint
        return stream

    def _stop_zygote(self) -> None:
        if self._proc is None:
            return
        try:
            # The zygote ends at end of input; its runs go on. Closing the socket alone
            # leaves the connection open while the stream made from it holds a
            # reference: shut it down, so the zygote reads EOF at once.
            if self._sock is not None:
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)
            if self._stream is not None:
                with contextlib.suppress(OSError):
                    self._stream.close()
            if self._sock is not None:
                self._sock.close()
            self._proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait()
        self._proc = self._stream = self._sock = None

    def dispose(self) -> None:
        with self._lock:
            self._stop_zygote()
        super().dispose()

    # -- health ------------------------------------------------------------------------

    @property
    def supports_check_run_worker_health(self) -> bool:
        """Dagster's run monitoring asks this launcher whether a ``STARTED`` run's worker
        lives, and fails the run when it does not: for every job, upkeep and UI runs
        included. A worker that is alive, however slow or silent, is left alone."""
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        worker = run.tags.get(WORKER_TAG)
        if worker is None:
            # Launched the default way (or its tag is not written yet): nothing here can
            # tell, and a run must never be failed on a guess.
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no worker recorded by this launcher")
        info = json.loads(worker)
        if info.get("host") != socket.gethostname():
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"worker on host {info.get('host')}")
        if worker_alive(info):
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"run worker process {info.get('pid')} has ended without finishing the run "
            "(killed, or it lost Dagster's storage)",
        )

    # -- terminating --------------------------------------------------------------------

    def terminate(self, run_id: str) -> bool:
        if not self.has_instance:
            return False
        run = self._instance.get_run_by_id(run_id)
        if not run or run.is_finished:
            return False
        worker = run.tags.get(WORKER_TAG)
        if worker is None:
            return super().terminate(run_id)  # launched the default way (or not yet)
        self._instance.report_run_canceling(run)
        info = json.loads(worker)
        reason = signal_worker(info)
        if reason:
            self._instance.report_engine_event(
                message=f"Could not signal the run worker: {reason}.",
                dagster_run=run,
                cls=self.__class__,
            )
            return False
        return True


def worker_alive(info: Mapping[str, Any]) -> bool:
    """The process ``info`` names still runs (same pid and the same start time, so a
    recycled pid is not taken for it)."""
    pid = int(info["pid"])
    return info.get("start") is not None and process_start_ticks(pid) == info["start"]


def signal_worker(info: Mapping[str, Any]) -> str | None:
    """SIGTERM the worker ``info`` names; the reason it could not be, or None."""
    if info.get("host") != socket.gethostname():
        return f"it runs on host {info.get('host')}"
    pid = int(info["pid"])
    if not worker_alive(info):
        return f"process {pid} has ended"
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError as exc:
        return f"process {pid}: {exc.strerror}"
    return None


def _same_interpreter(executable: str | None) -> bool:
    """The run's origin names this interpreter (the same venv: its path, not the file a
    venv's ``python`` links to, which every venv of that Python shares)."""
    return bool(executable) and os.path.abspath(executable) == os.path.abspath(sys.executable)
