"""The ``no_offsets_lost`` evaluation: offsets that expired from Kafka before they were
processed. The sensor reports what it finds below the log start; a run reports the part
of its range that retention deleted before it was read. Both say it the same way."""

from __future__ import annotations

from dagster import AssetCheckEvaluation, AssetCheckSeverity, AssetKey

from wado_pipeline.core.planning import OffsetRange
from wado_pipeline.core.run_contract import LOST_CHECK


def lost_offsets_evaluation(
    storage_key: AssetKey, lost: OffsetRange, context_note: str = ""
) -> AssetCheckEvaluation:
    """A failed ``no_offsets_lost`` evaluation of the storage topic naming ``lost``."""
    message = (
        f"{lost.described} ({lost.size} messages) expired from Kafka before they were "
        f"processed{context_note}"
    )
    return AssetCheckEvaluation(
        asset_key=storage_key,
        check_name=LOST_CHECK,
        passed=False,
        severity=AssetCheckSeverity.ERROR,
        description=message,
        metadata={
            "partition": lost.partition,
            "lost_start": lost.start,
            "lost_end_exclusive": lost.end,
        },
    )
