"""The side-by-side benchmark's bookkeeping: ratios of pipeline to upstream figures, and
CPU time read from /proc for a process, a whole session and its parts."""

import subprocess
import sys

from wado_pipeline.bench.bench_upstream import with_backlog_comparison, with_steady_comparison
from wado_pipeline.bench.upstream import cpu_seconds, session_cpu_by_role, session_cpu_seconds


def test_ratios_put_the_pipeline_over_upstream():
    ours = {"rates": {"100.0": {"p50_s": 4.0, "p95_s": 6.0, "p99_s": 9.0}}}
    theirs = {"100.0": {"p50_s": 0.5, "p95_s": 1.5, "p99_s": 12.0}}
    got = with_steady_comparison(ours, theirs)
    assert got["pipeline_vs_upstream"]["100.0"] == {"p50_s": 8.0, "p95_s": 4.0, "p99_s": 0.75}
    assert got["upstream"] == theirs and got["rates"] == ours["rates"]
    backlog = with_backlog_comparison({"dagster_msgs_per_s": 600.0}, {"msgs_per_s": 150.0})
    assert backlog["pipeline_vs_upstream_msgs_per_s"] == 4.0
    assert (
        with_backlog_comparison({}, {"msgs_per_s": 150.0})["pipeline_vs_upstream_msgs_per_s"]
        is None
    )


def test_cpu_time_of_a_process_and_of_its_session():
    """A child that spins for 0.6 s of CPU in a session of its own, then sleeps."""
    code = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\n"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code + "import sys; sys.stdout.write('done'); sys.stdout.flush()" + "\ntime.sleep(60)",
        ],
        start_new_session=True,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout.read(4) == b"done"  # its CPU is spent; it now sleeps
        assert cpu_seconds(child.pid) >= 0.5
        assert session_cpu_seconds(child.pid) >= 0.5
    finally:
        child.kill()
        child.wait()


def test_a_sessions_cpu_time_is_split_by_part_of_the_deployment():
    """A child named as the warm launcher names a run worker spins for 0.6 s of CPU: it
    counts under ``runs``, and the parts add up to the session's total."""
    code = (
        "import sys, time\n"
        "open('/proc/self/comm', 'w').write('wado-run-worker')\n"
        "t = time.process_time()\n"
        "while time.process_time() - t < 0.6: pass\n"
        "sys.stdout.write('done'); sys.stdout.flush(); time.sleep(60)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE
    )
    try:
        assert child.stdout.read(4) == b"done"
        roles = session_cpu_by_role(child.pid)
        assert roles.get("runs", 0.0) >= 0.5
        assert set(roles) <= {"runs"}  # nothing else runs in its session
        assert abs(sum(roles.values()) - session_cpu_seconds(child.pid)) < 0.05
    finally:
        child.kill()
        child.wait()
