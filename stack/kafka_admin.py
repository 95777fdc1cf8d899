"""Readiness check and topic creation for the local Kafka broker (used by stack/up.sh).

Topics and their configuration come from wado_pipeline.settings.topic_specs, the one
place that defines them.
"""

from __future__ import annotations

import sys

from kafka import KafkaAdminClient

from wado_pipeline.resources.kafka import KafkaResource
from wado_pipeline.settings import Settings, topic_specs


def admin(settings: Settings) -> KafkaAdminClient:
    return KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap,
        request_timeout_ms=3000,
        client_id="wado-stack",
    )


def main(command: str) -> int:
    settings = Settings.from_env()
    client = admin(settings)
    try:
        if command == "ready":
            client.describe_cluster()
            return 0
        if command == "create-topics":
            kafka = KafkaResource(bootstrap=settings.kafka_bootstrap)
            for line in kafka.ensure_topics(topic_specs(settings)):
                print(f"[stack] {line}")
            return 0
        if command == "describe":
            for name in sorted(t for t in client.list_topics() if not t.startswith("__")):
                if name.startswith("t_"):
                    continue  # per-test topics
                meta = client.describe_topics([name])[0]
                print(f"  topic {name}: {len(meta['partitions'])} partition(s)")
            return 0
        print(f"unknown command {command!r}", file=sys.stderr)
        return 2
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
