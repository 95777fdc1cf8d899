"""docker-compose.yml, checked offline: no Docker engine runs on these machines, so this
tests the file's structure and its agreement with the settings, not the containers."""

import dataclasses
import json
import re
import shlex
from pathlib import Path

import yaml

from wado_pipeline.cli.main import build_parser
from wado_pipeline.settings import Settings, topic_specs

ROOT = Path(__file__).resolve().parents[2]


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


def test_topics_match_the_one_topic_definition():
    """Compose creates the topics exactly as settings.topic_specs defines them."""
    script = compose()["services"]["kafka-topics"]["command"][0]
    found = {}
    for name, parts, cfg in re.findall(r"^\s*topic (\S+) (\d+)(?: (\S+))?$", script, re.M):
        configs = dict(kv.split("=", 1) for kv in cfg.split(",")) if cfg else {}
        found[name] = (int(parts), configs)
    env = compose()["services"]["pipeline"]["environment"]
    defaults = Settings.from_env()
    names = dataclasses.replace(
        defaults,
        storage_topic=env["WADO_STORAGE_TOPIC"],
        state_topic=env["WADO_STATE_TOPIC"],
        image_topic=env["WADO_IMAGE_TOPIC"],
        dlq_topic=env["WADO_DLQ_TOPIC"],
    )
    assert found == {t.name: (t.partitions, t.configs) for t in topic_specs(names)}
    assert len(found) == 4


def test_doris_tables_come_from_print_ddl():
    command = compose()["services"]["doris-init"]["command"][0]
    assert "wado-pipeline init-db --print-ddl doris" in command


def test_docs_topics_table_matches_the_definition():
    section = (ROOT / "docs/operations.md").read_text().split("### Topics", 1)[1]
    rows = re.findall(r"^\| `(\w+)` \| (\d+) \| ([^|]+) \|", section, re.M)
    found = {}
    for name, parts, cfg in rows:
        configs = dict(re.findall(r"`([\w.]+)=(\d+)`", cfg))
        found[name] = (int(parts), configs)
    assert found == {t.name: (t.partitions, t.configs) for t in topic_specs(Settings.from_env())}


def test_every_published_port_is_bound_to_loopback():
    published = [
        (name, port) for name, svc in compose()["services"].items() for port in svc.get("ports", [])
    ]
    assert published  # the UI and the Doris FE are published
    for name, port in published:
        assert str(port).startswith("127.0.0.1:"), (name, port)


def test_doris_gets_passwords_and_least_privilege_users_from_the_environment():
    c = compose()
    init = c["services"]["doris-init"]
    for var in ("WADO_DORIS_ROOT_PASSWORD", "WADO_DORIS_PASSWORD", "WADO_DORIS_READER_PASSWORD"):
        assert init["environment"][var] == f"${{{var}:?set {var}}}"  # required, no default
    script = init["command"][0]
    assert "SET PASSWORD FOR 'root'" in script
    assert "wado-pipeline init-db --print-grants wado_pipeline" in script
    url = c["services"]["pipeline"]["environment"]["WADO_DORIS_URL"]
    assert url.startswith("mysql+pymysql://wado_pipeline:${WADO_DORIS_PASSWORD:?")


def test_the_pipeline_image_makes_its_storage_before_dagster_starts():
    """dagster.yaml leaves Dagster's tables to init-db: the image's command makes them
    (and the index tables, as their owner) and only then starts Dagster."""
    line = next(x for x in (ROOT / "Dockerfile").read_text().splitlines() if x.startswith("CMD"))
    shell, flag, script = json.loads(line.removeprefix("CMD "))
    assert (shell, flag) == ("sh", "-c")
    init, dev = script.split(" && ")
    program, *args = shlex.split(init)
    assert program == "wado-pipeline"
    parsed = build_parser().parse_args(args)
    assert parsed.command == "init-db" and sorted(parsed.only) == ["dagster", "postgres"]
    assert shlex.split(dev)[:3] == ["exec", "dagster", "dev"]
    assert "DAGSTER_POSTGRES_URL" in compose()["services"]["pipeline"]["environment"]
