"""WADO_SITE_CONFIG: a site's upstream application.<env>.json supplies the settings."""

import json
import os
from pathlib import Path

import pytest

from wado_pipeline.dagster_internals import RepositorySnap, serialize_value
from wado_pipeline.settings import Settings, SiteConfigError

SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "application.prod.json"


def test_every_mapped_key_of_a_site_file_becomes_a_setting():
    s = Settings.from_env({"WADO_SITE_CONFIG": str(SAMPLE)})
    assert s.kafka_bootstrap == "10.1.2.4:19092"
    assert s.storage_topic == "site_storage_queue"
    assert s.state_topic == "site_state_queue"
    assert s.image_topic == "site_image_queue"
    assert s.log_topic == "site_log_queue"
    assert s.consumer_group == "site-consumer-group"
    # the password's @ : / are escaped so the URL parses back to the same parts
    assert s.postgres_url == "postgresql+psycopg2://pacs_admin:p%40ss%3Aw%2Frd@10.1.2.3:5433/pacs"
    assert s.storage_roots == (Path(os.path.expanduser("~/pacs/xdcm")),)
    assert s.transcode_target == "1.2.840.10008.1.2"
    assert s.viewer_transfer_syntaxes.split(",") == [
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2.4.50",
    ]
    # what the file does not say keeps its default
    assert s.dlq_topic == Settings().dlq_topic


def test_wado_variables_override_the_site_file():
    s = Settings.from_env(
        {"WADO_SITE_CONFIG": str(SAMPLE), "WADO_STORAGE_TOPIC": "mine", "WADO_TRANSCODE": "off"}
    )
    assert (s.storage_topic, s.transcode, s.state_topic) == ("mine", "off", "site_state_queue")


def test_a_site_whose_index_is_not_postgresql_is_told_so(tmp_path):
    doc = json.loads(SAMPLE.read_text())
    doc["main_database"]["dbtype"] = "mysql"
    path = tmp_path / "application.dev.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(SiteConfigError, match=r"main_database\.dbtype is mysql"):
        Settings.from_env({"WADO_SITE_CONFIG": str(path)})


def test_an_unreadable_site_file_names_itself(tmp_path):
    with pytest.raises(SiteConfigError, match="cannot read"):
        Settings.from_env({"WADO_SITE_CONFIG": str(tmp_path / "missing.json")})
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    with pytest.raises(SiteConfigError, match="not JSON"):
        Settings.from_env({"WADO_SITE_CONFIG": str(bad)})


@pytest.mark.parametrize("site_file", [True, False], ids=["site file", "defaults"])
def test_no_password_reaches_the_ui(site_file, monkeypatch):
    """The repository snapshot the UI's resource pages read names where each URL comes
    from, never its password: from a site file, and with the local defaults too."""

    from wado_pipeline.definitions import build_definitions

    for var in ("WADO_POSTGRES_URL", "WADO_DORIS_URL"):
        monkeypatch.delenv(var, raising=False)
    env = {"WADO_SITE_CONFIG": str(SAMPLE)} if site_file else {}
    settings = Settings.from_env(env)
    repo = build_definitions(settings).get_repository_def()
    snapshot = serialize_value(RepositorySnap.from_def(repo))
    passwords = ["p%40ss%3Aw%2Frd", "p@ss:w/rd"] if site_file else ["wado:wado@"]
    assert not [p for p in passwords if p in snapshot]
    # each URL is named by a variable of the process that loaded the definitions
    for var in ("WADO_POSTGRES_URL", "WADO_DORIS_URL"):
        assert f'\\"url\\": {{\\"env\\": \\"{var}_RESOLVED_' in snapshot, var
