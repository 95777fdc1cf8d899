"""Run output captured into files, without a copy to the daemon's terminal.

Dagster's ``LocalComputeLogManager`` captures a run's stdout and stderr into files the UI
reads, and mirrors each stream back to the terminal: per run it starts two ``tail -F``
processes and two Python interpreters that watch for their orphaning. On this machine at
100 msg/s those watchers were a tenth of all the run workers' CPU (py-spy, bench steady),
and about 40 ms of every run's start. Here the streams go straight into the same files
(the UI's stdout and stderr tabs read them as before); the daemon's terminal shows the
daemon, not one run's output per second interleaved.

``mirror: true`` in dagster.yaml brings the copy to the terminal back (Dagster's own
behaviour), for a developer who watches run output there.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from typing import IO

from dagster import Bool, Field, StringSource

from wado_pipeline.dagster_internals import (
    IO_TYPE_EXTENSION,
    CapturedLogContext,
    ComputeIOType,
    ConfigurableClassData,
    LocalComputeLogManager,
)


@contextmanager
def stream_into_file(stream: IO, path: str) -> Generator[None, None, None]:
    """Point ``stream``'s file descriptor at ``path`` (appended) for the duration, so
    output of C extensions and child processes lands there too; restored afterwards."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # not backed by a descriptor (pytest)
        yield
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    saved = os.dup(fd)
    stream.flush()
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(target, fd)
        yield
    finally:
        stream.flush()
        os.dup2(saved, fd)
        os.close(target)
        os.close(saved)


class FileComputeLogManager(LocalComputeLogManager):
    """``LocalComputeLogManager`` whose capture writes the files only (see the module)."""

    def __init__(
        self,
        base_dir: str | None = None,
        polling_timeout: float | None = None,
        inst_data: ConfigurableClassData | None = None,
        mirror: bool = False,
    ) -> None:
        # Without base_dir, where Dagster's default manager writes: <instance home>/storage,
        # set when the instance registers itself (below); DAGSTER_HOME until then.
        self._configured = base_dir is not None
        home = os.environ.get("DAGSTER_HOME") or os.getcwd()
        base = base_dir or os.path.join(home, "storage")
        super().__init__(base, polling_timeout=polling_timeout, inst_data=inst_data)
        self._mirror = mirror

    def register_instance(self, instance) -> None:
        """The instance this manager belongs to: without ``base_dir`` its logs go under
        that instance's home, whichever directory it was opened from (as Dagster's
        default manager's do), not under the process's DAGSTER_HOME or working
        directory."""
        super().register_instance(instance)
        if not self._configured:
            self._base_dir = os.path.join(instance.root_directory, "storage")

    @classmethod
    def config_type(cls) -> dict:
        return {
            "base_dir": Field(StringSource, is_required=False),
            "polling_timeout": Field(float, is_required=False),
            "mirror": Field(Bool, is_required=False, default_value=False),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: dict):
        return cls(inst_data=inst_data, **config_value)

    @contextmanager
    def capture_logs(self, log_key: Sequence[str]) -> Generator[CapturedLogContext, None, None]:
        if self._mirror:
            with super().capture_logs(log_key) as context:
                yield context
            return
        out = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDOUT])
        err = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDERR])
        with stream_into_file(sys.stdout, out), stream_into_file(sys.stderr, err):
            yield CapturedLogContext(log_key)
        # What LocalComputeLogManager leaves to say the capture is complete (the UI stops
        # polling the files then).
        with open(self.complete_artifact_path(log_key), "a"):
            pass
