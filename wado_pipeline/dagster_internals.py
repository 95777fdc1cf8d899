"""Every private Dagster API the project uses, in one module.

Dagster's underscored modules may change in any release. Checked against dagster 1.13.27
(dagster-postgres 0.29.27); after an upgrade, `make test` covers each use, and this list
is where to look first. Everything else comes from Dagster's public API.
"""

# Each name's use is in WHY below.
from dagster._cli.api import _execute_run_command_body  # noqa: F401
from dagster._core.definitions.reconstruct import ReconstructableJob  # noqa: F401
from dagster._core.errors import DagsterLaunchFailedError  # noqa: F401
from dagster._core.events import EngineEventData  # noqa: F401
from dagster._core.events.log import EventLogEntry  # noqa: F401
from dagster._core.instance import InstanceRef  # noqa: F401
from dagster._core.launcher import DefaultRunLauncher  # noqa: F401
from dagster._core.launcher.base import (  # noqa: F401
    CheckRunHealthResult,
    LaunchRunContext,
    WorkerStatus,
)
from dagster._core.remote_representation.external_data import RepositorySnap  # noqa: F401
from dagster._core.scheduler.instigation import TickStatus  # noqa: F401
from dagster._core.storage.compute_log_manager import (  # noqa: F401
    CapturedLogContext,
    ComputeIOType,
)
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable  # noqa: F401
from dagster._core.storage.local_compute_log_manager import (  # noqa: F401
    IO_TYPE_EXTENSION,
    LocalComputeLogManager,
)
from dagster._core.storage.tags import PARENT_RUN_ID_TAG  # noqa: F401
from dagster._core.utils import make_new_run_id  # noqa: F401
from dagster._daemon import sensor as sensor_daemon_module  # noqa: F401
from dagster._daemon.daemon import DagsterDaemon, SpanMarker  # noqa: F401
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (  # noqa: F401
    QueuedRunCoordinatorDaemon,
)
from dagster._serdes import (  # noqa: F401
    ConfigurableClassData,
    deserialize_value,
    serialize_value,
)
from dagster._utils.error import serializable_error_info_from_exc_info  # noqa: F401
from dagster._utils.interrupts import capture_interrupts  # noqa: F401

WHY = {
    # instance/zygote.py: a forked run worker executes the run as `dagster api
    # execute_run` does, from the instance reference the launcher hands it, with
    # Dagster's interrupt handling.
    "_execute_run_command_body": "zygote: execute a run in a forked worker",
    "InstanceRef": "zygote: the instance a forked worker opens",
    "deserialize_value": "zygote: the launch request's instance reference",
    "capture_interrupts": "zygote: SIGINT handling of `dagster api execute_run`",
    # instance/launcher.py: the run launcher plug-in and its configurable-class data
    "DefaultRunLauncher": "launcher: base class (its fallback path spawns a worker)",
    "LaunchRunContext": "launcher: argument of launch_run",
    "CheckRunHealthResult": "launcher: answer to run monitoring",
    "WorkerStatus": "launcher: answer to run monitoring",
    "DagsterLaunchFailedError": "launcher: a launch that failed",
    "ConfigurableClassData": "launcher: its dagster.yaml config",
    "serialize_value": "launcher: the request sent to the warm process",
    # instance/coordinator.py: the sensor daemon's loop period, a module constant
    # (MIN_INTERVAL_LOOP_TIME, 5 s) read at every loop, with no setting of its own
    "sensor_daemon_module": "coordinator: the sensor daemon's loop period",
    # instance/coordinator.py: the queue daemon's loop, which waits out its interval
    # whatever arrives; the coordinator's own loop also wakes when a run is submitted
    "QueuedRunCoordinatorDaemon": "coordinator: its loop, woken by a submission",
    "SpanMarker": "coordinator: what a daemon loop yields around a pass",
    "serializable_error_info_from_exc_info": "coordinator: a failed pass, as daemons report it",
    # instance/compute_logs.py: run output captured into the files without the tail mirror
    "LocalComputeLogManager": "compute logs: base class (files, the UI's reading of them)",
    "CapturedLogContext": "compute logs: what capture_logs yields",
    "ComputeIOType": "compute logs: stdout/stderr file names",
    "IO_TYPE_EXTENSION": "compute logs: stdout/stderr file names",
    # resources/retention.py: what Dagster's delete_run leaves behind, and tick purging
    "AssetCheckExecutionsTable": "retention: check results delete_run leaves",
    "TickStatus": "retention: which ticks are purged",
    # assets/ops.py: a re-execution's parent (the tag when the run record lacks it)
    "PARENT_RUN_ID_TAG": "ops: a re-execution's parent run",
    # bench retention: stored events as a batch run writes them
    "EngineEventData": "bench: events of a made-up finished run",
    "EventLogEntry": "bench: events of a made-up finished run",
    # tests only
    "ReconstructableJob": "tests: run a job in a worker process",
    "RepositorySnap": "tests: what the UI's resource page reads",
    "make_new_run_id": "tests: a run id for a subset run",
    "DagsterDaemon": "tests: the daemon loop still calls core_loop",
}
