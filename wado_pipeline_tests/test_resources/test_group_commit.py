"""The group commit under concurrency: runs of one partition whose commits overlap (a
retry beside a re-execution) never lose each other's ranges, so the committed offset
never moves back."""

from __future__ import annotations

import threading

import pytest

from wado_pipeline.assets import batch_steps
from wado_pipeline.core.planning import OffsetRange

pytestmark = pytest.mark.stack


def test_concurrent_commits_of_one_partition_lose_no_range(settings, kafka, postgres, produce):
    produce([b"x"] * 200, partition=0)
    ranges = [OffsetRange(settings.storage_topic, 0, s, s + 10) for s in range(0, 200, 10)]
    # shuffled so that later ranges arrive first (held above a gap, then released)
    order = ranges[1::2] + ranges[0::2]
    start = threading.Barrier(8)
    errors = []

    def commit_some(mine: list[OffsetRange]) -> None:
        try:
            start.wait()
            for rng in mine:
                batch_steps.commit(kafka, postgres, settings.consumer_group, rng)
        except Exception as exc:  # reported below, with the thread's traceback lost
            errors.append(exc)

    threads = [threading.Thread(target=commit_some, args=(order[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    final = kafka.group_progress(settings.consumer_group, settings.storage_topic, [0])[0]
    assert final.committed == 200 and final.done == []
