"""What a batch's materializations carry in the UI: counts, timings and a preview of
non-identifying columns (no names, birth dates or IDs of patients)."""

from __future__ import annotations

from dagster import MetadataValue

from wado_pipeline.assets.batch_steps import Batch
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
PREVIEW_ROWS = 3


def preview(table: str, rows: list[dict]) -> MetadataValue:
    """A few rows of the batch, safe columns only, as a Markdown table for the UI.

    Markdown, not ``MetadataValue.table``: Dagster serializes a table's schema and every
    record with type tags, five times the bytes, and each run stores it twice (its step
    output and its materialization) in the event log (docs/sizing.md)."""
    cols = PREVIEW_COLUMNS[table]

    def cell(v) -> str:
        return "" if v is None else str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows[:PREVIEW_ROWS]]
    return MetadataValue.md("\n".join(lines))


def batch_metadata(batch: Batch) -> dict:
    """The batch's counts, on the run's summary (group_offsets). Reason and column
    counts appear only when there are any: most batches have none, and every entry is
    stored on every run."""
    g = batch.grouped
    meta = {
        "offset_range": batch.describe() or "nothing pending",
        "consumed": g.consumed,
        "accepted": g.accepted,
        "rejected": len(g.rejections),
    }
    if g.rejections:
        meta["rejects_by_reason"] = MetadataValue.json(g.rejects_by_reason())
    if g.warnings:
        meta["warnings_by_column"] = MetadataValue.json(dict(g.warnings))
    return meta


def table_metadata(
    batch: Batch, table: str, rows_upserted: int, write_s: float, with_preview: bool
) -> dict:
    """Metadata of one table's materialization: what was written, from which range,
    values cut to fit (if any), and on the index (PostgreSQL) a preview."""
    meta = {
        "offset_range": batch.describe() or "nothing pending",
        "rows_upserted": rows_upserted,
        "write_s": write_s,
    }
    if batch.grouped.warnings:
        meta["warnings_by_column"] = MetadataValue.json(dict(batch.grouped.warnings))
    if with_preview:
        meta["preview"] = preview(table, batch.table_rows()[table])
    return meta
