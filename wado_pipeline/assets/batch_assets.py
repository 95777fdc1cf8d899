"""The graph-backed multi-asset of one batch: one run = one offset range of one
storage-topic partition, with an asset per place the batch lands (lineage in the UI).

Run config holds only the offset range (``core.run_contract``); everything else is read
from Kafka. The ops are in ``ops``; the steps they perform in ``steps``.
"""

from __future__ import annotations

from datetime import timedelta

from dagster import (
    AssetIn,
    AssetOut,
    AssetSpec,
    FreshnessPolicy,
    Nothing,
    graph_multi_asset,
)

from wado_pipeline.assets.batch_ops import (
    commit_offsets,
    publish_records,
    read_batch,
    write_doris,
    write_postgres,
)
from wado_pipeline.assets.keys import GROUP, asset_keys
from wado_pipeline.core import schema as S
from wado_pipeline.core.run_contract import DORIS, GRAPH_NAME, POSTGRES, TABLE_SINKS
from wado_pipeline.settings import Settings


def _batch_outs(keys: dict) -> dict[str, AssetOut]:
    """One output per place a batch lands: the topics, the error table, the group's
    offsets and each table in PostgreSQL and Doris."""
    outs = {
        "state_topic": AssetOut(key=keys["state_topic"], kinds={"kafka"}, dagster_type=Nothing),
        "image_topic": AssetOut(key=keys["image_topic"], kinds={"kafka"}, dagster_type=Nothing),
        "dlq_topic": AssetOut(key=keys["dlq_topic"], kinds={"kafka"}, dagster_type=Nothing),
        "pg_errors": AssetOut(key=keys["pg_errors"], kinds={"postgres"}, dagster_type=Nothing),
        "group_offsets": AssetOut(
            key=keys["group_offsets"],
            kinds={"kafka"},
            dagster_type=Nothing,
            description="The consumer group's committed offsets: the end of the contiguous "
            "prefix of processed batches (what Kafka tools read the lag from).",
        ),
    }
    for t in S.PIPELINE_TABLES:
        for sink in TABLE_SINKS:
            outs[sink.output(t.name)] = AssetOut(
                key=keys[sink.output(t.name)],
                kinds={sink.name},
                dagster_type=Nothing,
                description=f"{t.name} in {sink.title}, upserted by every batch.",
            )
    return outs


def _with_freshness(assets, settings: Settings, keys: dict):
    """Fresh while batches keep landing; stale when nothing was written for a while (no
    traffic, or the pipeline is stuck: the UI and freshness checks tell which).
    graph_multi_asset does not carry AssetOut.freshness_policy over (Dagster 1.13), so
    the policy is set on the specs afterwards."""
    freshness = FreshnessPolicy.time_window(
        fail_window=timedelta(seconds=settings.freshness_fail_seconds),
        warn_window=timedelta(seconds=settings.freshness_warn_seconds),
    )
    tables = {keys[s.output(t.name)] for t in S.PIPELINE_TABLES for s in TABLE_SINKS}
    return assets.map_asset_specs(
        lambda spec: (
            spec.replace_attributes(freshness_policy=freshness) if spec.key in tables else spec
        )
    )


def build_ingest_assets(settings: Settings):
    """The storage topic (external) and the graph-backed multi-asset of one batch."""
    keys = asset_keys(settings)
    routine_load = settings.doris_load == "routine_load"
    storage = AssetSpec(
        keys["storage"],
        description="Store messages published by the DICOM receiver (one per stored file).",
        kinds={"kafka"},
        group_name=GROUP,
    )

    @graph_multi_asset(
        name=GRAPH_NAME,
        outs=_batch_outs(keys),
        ins={"storage": AssetIn(key=keys["storage"], dagster_type=Nothing)},
        group_name=GROUP,
        # Selecting some assets (in the UI, or `dagster asset materialize --select`)
        # runs only the ops they need and writes only those sinks; group_offsets moves
        # only when every sink is selected (commit_offsets).
        can_subset=True,
    )
    def ingest_batch(storage):
        batch = read_batch(storage)
        # PostgreSQL first: rows are visible to users once it is written; the topics and
        # Doris follow (each independent of it in a subset: Dagster drops the ordering
        # when write_postgres is not selected).
        *pg, errors = write_postgres(batch)
        state, image, dlq = publish_records(batch, after=pg)
        # Routine Load: Doris loads itself from the topics, so the run awaits the keys
        # there after publishing; otherwise the Doris write does not wait for Kafka.
        dr = write_doris(batch, after=[state, image] if routine_load else pg)
        # dlq and errors materialize only in a batch with rejects: nothing waits on them.
        committed = commit_offsets(batch, published=[state, image], postgres=pg, doris=list(dr))
        result = {
            "state_topic": state,
            "image_topic": image,
            "dlq_topic": dlq,
            "pg_errors": errors,
            "group_offsets": committed,
        }
        for t, o in zip(S.PIPELINE_TABLES, pg, strict=True):
            result[POSTGRES.output(t.name)] = o
        for t, o in zip(S.PIPELINE_TABLES, dr, strict=True):
            result[DORIS.output(t.name)] = o
        return result

    return storage, _with_freshness(ingest_batch, settings, keys)
