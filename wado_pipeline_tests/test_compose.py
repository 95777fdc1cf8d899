"""docker-compose.yml, checked offline: no Docker engine runs on these machines, so this
tests the file's structure and its agreement with the settings, not the containers."""

import dataclasses
import re
from pathlib import Path

import yaml

from wado_pipeline.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_and_volumes():
    c = compose()
    assert {
        "kafka",
        "kafka-topics",
        "postgres",
        "doris-fe",
        "doris-be",
        "doris-init",
        "pipeline",
    } <= set(c["services"])
    used = set()
    for svc in c["services"].values():
        for v in svc.get("volumes", []):
            name = v.split(":")[0]
            if not name.startswith("."):
                used.add(name)
    assert used <= set(c["volumes"])
    assert (ROOT / c["services"]["pipeline"]["build"] / "Dockerfile").exists()
    init = c["services"]["postgres"]["volumes"][1].split(":")[0]
    assert (ROOT / init).exists()


def test_pipeline_environment_uses_only_known_settings():
    env = compose()["services"]["pipeline"]["environment"]
    known = {f.metadata["env"] for f in dataclasses.fields(Settings)} | {"DAGSTER_POSTGRES_URL"}
    assert set(env) <= known, set(env) - known
    assert env["WADO_DORIS_FLAVOR"] == "doris" and env["WADO_DORIS_LOAD"] == "stream_load"
    assert env["WADO_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert "+psycopg2" in env["DAGSTER_POSTGRES_URL"]


def test_topics_match_the_settings_defaults():
    script = compose()["services"]["kafka-topics"]["command"][0]
    topics = dict(re.findall(r"(\w+):(\d)", script.split("do")[0]))
    env = compose()["services"]["pipeline"]["environment"]
    assert topics == {
        env["WADO_STORAGE_TOPIC"]: "3",
        env["WADO_STATE_TOPIC"]: "1",
        env["WADO_IMAGE_TOPIC"]: "1",
        env["WADO_DLQ_TOPIC"]: "1",
    }


def test_doris_tables_come_from_print_ddl():
    command = compose()["services"]["doris-init"]["command"][0]
    assert "wado-pipeline init-db --print-ddl doris" in command
