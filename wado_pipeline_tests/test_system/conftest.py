"""Fixtures of the end-to-end tests: `dagster dev` on the test's own storage."""

import pytest

from wado_pipeline_tests.test_system.test_ui import running_dagster_dev


@pytest.fixture
def dagster_dev(settings, dagster_home):
    """`dagster dev` for this test's settings and storage."""
    with running_dagster_dev(settings, *dagster_home) as (url, _):
        yield url


@pytest.fixture
def dev_instance(dagster_dev, dagster_home, monkeypatch):
    """`dagster dev`'s URL and its DAGSTER_HOME, with this process pointed at its
    storage (so ``DagsterInstance.from_config(home)`` reads the same runs)."""
    home, storage_url = dagster_home
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", storage_url)
    return dagster_dev, home
