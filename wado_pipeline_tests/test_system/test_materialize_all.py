"""The UI's "Materialize all" while the sensor runs, under `dagster dev`: the sensor alone hands
out offsets, so the UI run gets its ranges from the sensor's next tick (in its own
``wado/pending`` tag, without waiting out the fallback) and the sensor's own runs take
the rest; no offset goes to two runs, none to no run, and every message lands once."""

from itertools import pairwise

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from wado_pipeline.core.run_contract import (
    JOB_NAME,
    PENDING_TAG,
    range_from_tags,
    ranges_from_pending_tag,
)
from wado_pipeline_tests.support import (
    await_group_offsets,
    encode,
    postgres_rows,
    synthetic_messages,
    wait_until,
)
from wado_pipeline_tests.test_system.test_ui import (
    _tags,
    failure_messages,
    gql,
)
from wado_pipeline_tests.test_system.test_ui_actions import RUN, _all_assets, _launch

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def test_materialize_all_beside_the_running_sensor_takes_disjoint_offsets(
    settings,
    dev_instance,
    produce,
    storage_root,
):
    url, home = dev_instance
    topic = settings.storage_topic
    messages = synthetic_messages(storage_root, 40)
    produce(encode(messages[:20]), partition=0)
    ui_run = _launch(url, _all_assets(url), None)  # "Materialize all", no config
    produce(encode(messages[20:]), partition=0)
    await_group_offsets(settings, {0: 40}, 240, "every message to be processed")

    def ended():
        run = gql(url, RUN, id=ui_run)["runOrError"]
        return run if run["status"] in ("SUCCESS", "FAILURE", "CANCELED") else None

    done = wait_until(ended, 240, "the UI run to end")
    assert done["status"] == "SUCCESS", failure_messages(url, ui_run)
    claimed = [(r.start, r.end) for r in ranges_from_pending_tag(topic, _tags(done)[PENDING_TAG])]
    with DagsterInstance.from_config(str(home)) as instance:
        said = " ".join(e.user_message or "" for e in instance.all_logs(ui_run))
        assert "assigned no range" not in said  # the sensor assigned it: no fallback
        sensor_runs = instance.get_runs(
            RunsFilter(job_name=JOB_NAME, statuses=[DagsterRunStatus.SUCCESS])
        )
        spans = [s for s in (range_from_tags(r.tags) for r in sensor_runs) if s is not None]
    every = sorted(claimed + spans)
    # disjoint and together exactly [0, 40)
    assert every and every[0][0] == 0 and every[-1][1] == 40, every
    assert all(a[1] == b[0] for a, b in pairwise(every)), every
    assert postgres_rows(settings, "dicom_object_meta") == 40
