"""Where the pipeline deliberately differs from upstream's ``wado-consumer``: one list.

The Compatibility table of docs/upstream.md is made from it (``markdown_table``, checked by
a test), and the side-by-side suite against the real upstream programs
(``wado_pipeline_tests/test_upstream``) lets a column or JSON field differ only when an
entry here names it (``fields``), so every difference a site can see has its reason.

A field is named ``<place>.<column>``: places are ``postgres.<table>`` for the site's
PostgreSQL tables and ``topic.state`` / ``topic.image`` for the published JSON.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Difference:
    point: str
    upstream: str
    pipeline: str
    why: str
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class Observed:
    """One difference the side-by-side suite saw: a place, a column or field, what."""

    place: str
    column: str
    what: str

    def __str__(self) -> str:
        return f"{self.place}.{self.column}: {self.what}"


# The processing clocks: upstream stamps rows with the time it processed them.
CLOCKS = tuple(
    f"{place}.{column}"
    for place in (
        "postgres.dicom_state_meta",
        "postgres.dicom_image_meta",
        "topic.state",
        "topic.image",
    )
    for column in ("created_time", "updated_time")
)

# Image columns an enhanced multi-frame object keeps in its functional groups.
FUNCTIONAL_GROUP_COLUMNS = (
    "image_orientation_patient",
    "image_position_patient",
    "slice_thickness",
    "spacing_between_slices",
    "rescale_intercept",
    "rescale_slope",
    "rescale_type",
    "window_center",
    "window_width",
)


def _both_image(*columns: str) -> tuple[str, ...]:
    """An image column as the site's table holds it and as the image JSON carries it."""
    return tuple(
        f"{place}.{c}" for c in columns for place in ("postgres.dicom_image_meta", "topic.image")
    )


DIFFERENCES: tuple[Difference, ...] = (
    Difference(
        "offsets",
        "committed before the write",
        "committed after every write succeeded, and only over a contiguous prefix of "
        "processed batches",
        "a crash or a failed write loses nothing",
    ),
    Difference(
        "database errors",
        "logged; the batch is published anyway",
        "the run fails, is retried and can be re-executed; nothing is committed past it",
        "rows and topics never disagree silently",
    ),
    Difference(
        "dedupe within and across batches",
        "last finished wins",
        "newest message `created_time` wins (ties: partition, offset); stored rows are "
        "replaced only by a newer `updated_time`",
        "re-running any batch changes nothing",
    ),
    Difference(
        "`created_time`, `updated_time` of series and image rows",
        "the processing clock",
        "the earliest and the newest message `created_time` for that key",
        "deterministic rows, so replays are idempotent",
        CLOCKS,
    ),
    Difference(
        "bad input",
        "logged and dropped, or stuck",
        "a reason code, the dead-letter topic and `dicom_ingest_error` (kept losslessly); "
        "the message's receipt row is kept as upstream keeps it",
        "nothing disappears and no partition blocks",
    ),
    Difference(
        "extra table",
        "none",
        "`dicom_ingest_error` in PostgreSQL, created by `init-db`",
        "the rejections' record",
    ),
    Difference(
        "over-long non-key values",
        "load errors",
        "cut at a character boundary to fit the column in UTF-8 bytes, with a warning; "
        "only key fields reject",
        "one long value never costs a whole message",
    ),
    Difference(
        "image `transfer_syntax_uid`",
        "always `1.2`",
        "the file's syntax as it is on disk (after transcoding)",
        "the column means what it says",
        _both_image("transfer_syntax_uid"),
    ),
    Difference(
        "image `space_size`",
        "the message's `file_size`",
        "the file's size as it is on disk (after transcoding, or after a later receipt of "
        "the instance replaced it)",
        "the column is the space the file takes",
        _both_image("space_size"),
    ),
    Difference(
        "enhanced multi-frame objects",
        "top-level attributes only: geometry, rescale and window values are null",
        "taken from the Shared or Per-frame Functional Groups when the top level lacks them",
        "an enhanced CT or MR instance's rows carry the values a viewer needs",
        _both_image(*FUNCTIONAL_GROUP_COLUMNS),
    ),
    Difference(
        "text in ISO 2022 character sets (Japanese, Korean: `ISO 2022 IR 87`, `IR 149`)",
        "the bytes as Latin-1, escape sequences and all",
        "decoded with the file's SpecificCharacterSet (pydicom)",
        "the patient's name is readable and searchable",
        ("postgres.dicom_state_meta.patient_name", "topic.state.patient_name"),
    ),
    Difference(
        "`pregnancy_status`",
        "never read: NULL in PostgreSQL, absent from the state JSON",
        "PregnancyStatus (0010,21C0) in both",
        "the site's table and Doris' have the column, and its Routine Load job maps it",
        ("postgres.dicom_state_meta.pregnancy_status", "topic.state.pregnancy_status"),
    ),
    Difference(
        "`study_date_origin` in the image JSON",
        "absent",
        "the study date as `YYYYMMDD` (not in PostgreSQL, whose image table lacks the column)",
        "Doris' `dicom_image_meta.study_date_origin` is NOT NULL and its Routine Load job "
        "maps it by name: without it Doris filters the record out",
        ("topic.image.study_date_origin",),
    ),
    Difference(
        "UID hashes",
        "taken from the message",
        "recomputed (SeaHash)",
        "a wrong producer cannot corrupt keys",
    ),
    Difference(
        "transcoding",
        "GDCM, in place",
        "pydicom + pylibjpeg, atomic rename, bounded in time; an undecodable file keeps its "
        "rows with a warning",
        "maintained Python decoders; no half-written file; no stuck batch",
    ),
    Difference(
        "connections",
        "a new connection per table per batch",
        "one pooled engine per run",
        "fewer round trips",
    ),
    Difference(
        "Doris",
        "Routine Load jobs only",
        "`insert` (default), `stream_load`, or the site's Routine Load (`routine_load`)",
        "sites without Routine Load get exactly-once upserts; sites with it keep it",
    ),
)


def explains(observed: Observed) -> Difference | None:
    """The listed difference that covers ``observed``, or None."""
    name = f"{observed.place}.{observed.column}"
    for d in DIFFERENCES:
        if name in d.fields:
            return d
    return None


def markdown_table() -> str:
    """The the Compatibility table of docs/upstream.md."""
    lines = [
        "| point | upstream `wado-consumer` | this pipeline | why |",
        "|---|---|---|---|",
    ]
    lines += [f"| {d.point} | {d.upstream} | {d.pipeline} | {d.why} |" for d in DIFFERENCES]
    return "\n".join(lines)
