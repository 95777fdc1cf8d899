"""Asset checks that are not tied to one batch."""

from dagster import AssetCheckResult, AssetCheckSeverity, AssetKey, asset_check

from wado_pipeline.resources.ingest import IngestSettings
from wado_pipeline.resources.kafka import KafkaResource
from wado_pipeline.sensors.kafka_offsets import LOST_CHECK


def build_storage_checks(storage_key: AssetKey):
    @asset_check(
        asset=storage_key,
        name=LOST_CHECK,
        description=(
            "Fails when messages expired from the storage topic before the pipeline "
            "processed them. The sensor reports each lost range when it sees one; run "
            "by hand, this compares the consumer group's committed offsets with the "
            "first offsets Kafka still holds."
        ),
    )
    def no_offsets_lost(kafka: KafkaResource, ingest: IngestSettings) -> AssetCheckResult:
        offsets = kafka.partition_offsets(ingest.storage_topic) or []
        committed = kafka.committed_offsets(
            ingest.consumer_group, ingest.storage_topic, [o.partition for o in offsets]
        )
        lost = {
            str(o.partition): f"{committed[o.partition]}..{o.beginning - 1}"
            for o in offsets
            if o.partition in committed and committed[o.partition] < o.beginning
        }
        return AssetCheckResult(
            passed=not lost,
            severity=AssetCheckSeverity.ERROR,
            metadata={"lost_ranges": lost or "none"},
        )

    return [no_offsets_lost]
