"""kafka-python's metadata backoff: the class default our clients get, since its
manager does not pass a client's ``retry_backoff_ms`` on (see ``resources.kafka``)."""

import inspect
import logging
import re

import pytest
from kafka.cluster import ClusterMetadata

from wado_pipeline.resources.kafka import METADATA_BACKOFF_MS


def test_new_cluster_metadata_takes_the_projects_backoff():
    assert ClusterMetadata().config["retry_backoff_ms"] == METADATA_BACKOFF_MS


def test_kafka_python_still_paces_metadata_requests_by_that_default():
    """After an upgrade: the pause between two metadata requests still comes from this
    config key (otherwise the setting above silently does nothing)."""
    assert "self.config['retry_backoff_ms']" in inspect.getsource(ClusterMetadata.ttl)


@pytest.mark.stack
def test_a_runs_read_waits_no_longer_than_the_backoff_for_its_topic(
    settings, kafka, produce, caplog
):
    """A read opens a new consumer: its topic's metadata request follows the bootstrap
    one after at most ``METADATA_BACKOFF_MS`` (kafka-python logs each such pause)."""
    produce([b"a", b"b", b"c"], partition=0)
    with caplog.at_level(logging.DEBUG, logger="kafka.cluster"):
        records = kafka.read_range(settings.storage_topic, 0, 0, 3)
    assert [r.value for r in records] == [b"a", b"b", b"c"]
    pauses = [
        float(m.group(1))
        for r in caplog.records
        if (m := re.match(r"Sleeping ([\d.]+) for next Metadata refresh", r.getMessage()))
    ]
    short = [p for p in pauses if p < 60]  # the rest: the 5-minute refresh
    assert short, "no pause before a metadata request was logged"
    assert max(short) <= METADATA_BACKOFF_MS / 1000
