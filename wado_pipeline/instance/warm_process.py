"""The warm process that run workers are forked from (``launcher.WarmProcessRunLauncher``).

Started by the launcher in the daemon as ``python -m wado_pipeline.instance.warm_process``, it
imports the heavy third-party modules once (Dagster, dagster-postgres, pydicom,
kafka-python, SQLAlchemy, …: ~1.2 s of CPU on this machine) and then waits on a socket.
For each run it forks: the child already has those modules, imports the code location
itself (fresh, so a reloaded code location runs its new code: ~0.1 s) and executes the
run exactly as ``dagster api execute_run`` does. It never opens a connection or starts a
thread itself, so a fork shares nothing but imported code.

Protocol, one JSON object per line on the socket inherited as ``--fd``:
``{"run_id": …, "instance_ref": <serialized InstanceRef>}`` in,
``{"pid": …, "start": …}`` (the child's pid and its start time in clock ticks, which
identifies the process for a later ``terminate``) or ``{"error": …}`` out. The zygote
ends when the launcher closes the socket (the daemon exited); its children run on.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import socket
import sys
import traceback
from pathlib import Path


def process_start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, /proc/<pid>/stat field 22): with the
    pid, it names one process even after pids wrap around."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def _run_worker(request: dict) -> int:
    """In the forked child: execute the run as ``dagster api execute_run`` would."""
    from dagster import DagsterInstance

    from wado_pipeline.dagster_internals import (
        InstanceRef,
        _execute_run_command_body,
        capture_interrupts,
        deserialize_value,
    )
    from wado_pipeline.instance.storage_pool import pool_dagster_storage

    with capture_interrupts():
        ref = deserialize_value(request["instance_ref"], InstanceRef)
        with DagsterInstance.from_ref(ref) as instance:
            # One connection to the storage for the whole run, from its first event.
            pool_dagster_storage(instance)
            return _execute_run_command_body(
                request["run_id"], instance, lambda _event: None, set_exit_code_on_failure=False
            )


def _fork_run(request: dict, channel: int) -> int:
    pid = os.fork()
    if pid:
        return pid
    # The child: the run worker. It must not keep the zygote's socket (the daemon would
    # not see the zygote end), and gets back default signal handling: the zygote ignores
    # SIGINT (a Ctrl-C of `dagster dev` reaches the whole process group; the zygote ends
    # with its socket instead) and waits for its children in a SIGCHLD handler, which
    # would take a run's own pool processes from it.
    code = 1
    try:
        os.close(channel)  # the zygote's socket (its objects are never used here again)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            with open("/proc/self/comm", "w") as comm:
                comm.write("wado-run-worker")  # `ps`/`top` name it; the cmdline stays
        except OSError:
            pass
        code = _run_worker(request)
    except BaseException:  # (the child must reach os._exit whatever happens)
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve(sock: socket.socket, preload: list[str]) -> None:
    failed = []
    for name in preload:
        try:
            importlib.import_module(name)
        except Exception as exc:  # (a missing optional module only costs time)
            failed.append(f"{name}: {type(exc).__name__}")
    stream = sock.makefile("rwb", buffering=0)
    stream.write(json.dumps({"ready": True, "not_preloaded": failed}).encode() + b"\n")
    for line in stream:
        try:
            request = json.loads(line)
            pid = _fork_run(request, sock.fileno())
            if request.get("nice"):  # below this process's own, before the answer
                own = os.getpriority(os.PRIO_PROCESS, 0)
                os.setpriority(os.PRIO_PROCESS, pid, own + int(request["nice"]))
            reply = {"pid": pid, "start": process_start_ticks(pid)}
        except Exception as exc:  # (reported to the launcher, which falls back)
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        stream.write(json.dumps(reply).encode() + b"\n")


def _reap_children(_signum, _frame) -> None:
    """Wait for every ended run worker. Waited for (not left to the kernel, as with
    SIGCHLD ignored), a worker's CPU time is added to this process's children's time,
    so the deployment's CPU per message can be read from its processes
    (``bench``); a worker's own pool processes are waited for by the worker."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--preload", default="", help="comma-separated modules")
    parser.add_argument("--home", default="", help="DAGSTER_HOME, for `ps` only")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, _reap_children)
    sock = socket.socket(fileno=args.fd)
    serve(sock, [m for m in args.preload.split(",") if m])


if __name__ == "__main__":
    main()
