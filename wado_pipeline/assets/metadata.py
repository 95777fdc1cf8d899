"""What a batch's materializations carry in the UI: counts, timings and a preview of
non-identifying columns (no names, birth dates or IDs of patients)."""

from __future__ import annotations

from dagster import MetadataValue, TableColumn, TableRecord, TableSchema

from wado_pipeline.assets.steps import Batch
from wado_pipeline.core import schema as S

PREVIEW_COLUMNS = {
    S.OBJECT_META.name: (
        "trace_id",
        "tenant_id",
        "transfer_syntax_uid",
        "file_size",
        "number_of_frames",
        "transfer_status",
        "created_time",
    ),
    S.STATE_META.name: (
        "tenant_id",
        "modality",
        "series_number",
        "body_part_examined",
        "series_related_instances",
        "updated_time",
    ),
    S.IMAGE_META.name: (
        "tenant_id",
        "instance_number",
        "width",
        "columns",
        "bits_stored",
        "photometric_interpretation",
        "transfer_syntax_uid",
        "updated_time",
    ),
}
PREVIEW_ROWS = 5


def preview(table: str, rows: list[dict]) -> MetadataValue:
    """A few rows of the batch, safe columns only, as a table for the UI."""
    cols = PREVIEW_COLUMNS[table]
    return MetadataValue.table(
        records=[
            TableRecord({c: None if r.get(c) is None else str(r[c]) for c in cols})
            for r in rows[:PREVIEW_ROWS]
        ],
        schema=TableSchema(columns=[TableColumn(c, "string") for c in cols]),
    )


def batch_metadata(batch: Batch) -> dict:
    """Counts every output of a batch carries."""
    g = batch.grouped
    return {
        "offset_range": batch.describe() or "nothing pending",
        "consumed": g.consumed,
        "accepted": g.accepted,
        "rejected": len(g.rejections),
        "rejects_by_reason": MetadataValue.json(g.rejects_by_reason()),
        "warnings_by_column": MetadataValue.json(dict(g.warnings)),
    }


def table_metadata(batch: Batch, table: str, rows_upserted: int, write_s: float) -> dict:
    """Metadata of one table's materialization."""
    return {
        **batch_metadata(batch),
        "rows_upserted": rows_upserted,
        "write_s": write_s,
        "preview": preview(table, batch.table_rows()[table]),
    }
