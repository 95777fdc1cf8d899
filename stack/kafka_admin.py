"""Readiness check and topic creation for the local Kafka broker (used by stack/up.sh).

Topic names come from wado_pipeline.settings, the one place that defines them.
"""

from __future__ import annotations

import sys

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from wado_pipeline.settings import Settings

STORAGE_PARTITIONS = 3


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
            wanted = {
                settings.storage_topic: STORAGE_PARTITIONS,
                settings.state_topic: 1,
                settings.image_topic: 1,
                settings.dlq_topic: 1,
            }
            existing = set(client.list_topics())
            for name, partitions in wanted.items():
                if name in existing:
                    continue
                try:
                    client.create_topics([NewTopic(name, partitions, 1)])
                    print(f"[stack] created topic {name} ({partitions} partitions)")
                except TopicAlreadyExistsError:
                    pass
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
