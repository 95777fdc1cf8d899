"""The one definition of every table column the pipeline writes.

DDL for each backend (PostgreSQL, MariaDB, Doris), the SQL upserts, the JSON
messages on the output topics and the byte-length checks are all generated from,
or checked against, these tuples. Names and sizes follow the upstream schema
(data-model doc), so existing readers keep working.

Quirk kept for compatibility: in ``dicom_image_meta`` the column ``width`` holds
Rows (0028,0010) and ``columns`` holds Columns (0028,0011).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Kind = Literal["varchar", "date", "time", "datetime", "int", "bigint", "double", "text"]
Backend = Literal["postgres", "mariadb", "doris"]
BACKENDS: frozenset[str] = frozenset({"postgres", "mariadb", "doris"})


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    length: int | None = None  # for varchar: the limit in UTF-8 bytes (Doris counts bytes)
    nullable: bool = True
    # Where the column exists. Upstream's PostgreSQL ``dicom_image_meta`` has no
    # ``study_date_origin`` (its Doris table does); a site's tables are written as they are.
    backends: frozenset[str] = BACKENDS


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # PostgreSQL / MariaDB primary key
    doris_key: tuple[str, ...]  # Doris UNIQUE KEY (must be a prefix of the column order)
    sequence: str | None = None  # newer-wins column; None: rows never change once written
    keep_first: tuple[str, ...] = ()  # columns an upsert never moves forward

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def row(self, **values: object) -> dict[str, object]:
        """A row of this table: every column given, no other (in column order)."""
        names = self.column_names
        if set(values) != set(names):
            missing = sorted(set(names) - set(values))
            extra = sorted(set(values) - set(names))
            raise ValueError(f"{self.name} row: missing {missing}, unknown {extra}")
        return {n: values[n] for n in names}

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def for_backend(self, backend: Backend) -> Table:
        """This table as ``backend`` holds it: only the columns that exist there."""
        if all(backend in c.backends for c in self.columns):
            return self
        kept = tuple(c for c in self.columns if backend in c.backends)
        return replace(self, columns=kept)


def _v(name: str, length: int, nullable: bool = True) -> Column:
    return Column(name, "varchar", length, nullable)


def _req(name: str, kind: Kind, length: int | None = None) -> Column:
    return Column(name, kind, length, nullable=False)


OBJECT_META = Table(
    name="dicom_object_meta",
    columns=(
        _v("trace_id", 36, nullable=False),
        _v("worker_node_id", 64, nullable=False),
        _v("tenant_id", 64, nullable=False),
        _v("patient_id", 64, nullable=False),
        _v("study_uid", 64, nullable=False),
        _v("series_uid", 64, nullable=False),
        _v("sop_uid", 64, nullable=False),
        Column("file_size", "bigint"),
        _v("file_path", 512),
        _v("transfer_syntax_uid", 64),
        Column("number_of_frames", "int"),
        _req("created_time", "datetime"),
        _v("series_uid_hash", 20),
        _v("study_uid_hash", 20),
        _v("accession_number", 64),
        _v("target_ts", 64),
        Column("study_date", "date"),
        _v("transfer_status", 16),  # an enum; a site's varchar(64) holds it too
        _v("source_ip", 24),
        _v("source_ae", 64),
    ),
    key=("trace_id",),
    doris_key=("trace_id",),
)

# Columns the series and instance tables share: who and which series, then the hashes.
_SERIES_IDS = (
    _v("tenant_id", 64, nullable=False),
    _v("patient_id", 64, nullable=False),
    _v("study_uid", 64, nullable=False),
    _v("series_uid", 64, nullable=False),
)
_HASHES = (
    _v("study_uid_hash", 20, nullable=False),
    _v("series_uid_hash", 20, nullable=False),
)
_STUDY_DATE_ORIGIN = _v("study_date_origin", 8, nullable=False)
# Row versions: the newest updated_time wins, the first created_time is kept.
_VERSION_COLUMNS = (_req("created_time", "datetime"), _req("updated_time", "datetime"))
_VERSIONED = {"sequence": "updated_time", "keep_first": ("created_time",)}

STATE_META = Table(
    name="dicom_state_meta",
    columns=(
        *_SERIES_IDS,
        *_HASHES,
        _STUDY_DATE_ORIGIN,
        _v("patient_name", 64),
        _v("patient_sex", 1),
        Column("patient_birth_date", "date"),
        Column("patient_birth_time", "time"),
        _v("patient_age", 16),
        Column("patient_size", "double"),
        Column("patient_weight", "double"),
        Column("pregnancy_status", "int"),
        _req("study_date", "date"),
        Column("study_time", "time"),
        _v("accession_number", 16),
        _v("study_id", 16),
        _v("study_description", 64),
        _v("modality", 16),
        Column("series_number", "int"),
        Column("series_date", "date"),
        Column("series_time", "time"),
        _v("series_description", 256),
        _v("body_part_examined", 64),
        _v("protocol_name", 64),
        Column("series_related_instances", "int"),
        *_VERSION_COLUMNS,
    ),
    key=("tenant_id", "study_uid", "series_uid"),
    doris_key=("tenant_id", "patient_id", "study_uid", "series_uid"),
    **_VERSIONED,
)

IMAGE_META = Table(
    name="dicom_image_meta",
    columns=(
        *_SERIES_IDS,
        _v("sop_uid", 64, nullable=False),
        *_HASHES,
        Column("study_date_origin", "varchar", 8, False, frozenset({"mariadb", "doris"})),
        Column("content_date", "date"),
        Column("content_time", "time"),
        Column("instance_number", "int"),
        _v("image_type", 128),
        _v("image_orientation_patient", 128),
        _v("image_position_patient", 64),
        Column("slice_thickness", "double"),
        Column("spacing_between_slices", "double"),
        Column("slice_location", "double"),
        Column("samples_per_pixel", "int"),
        _v("photometric_interpretation", 32),
        Column("width", "int"),  # Rows (0028,0010): upstream name kept
        Column("columns", "int"),  # Columns (0028,0011)
        Column("bits_allocated", "int"),
        Column("bits_stored", "int"),
        Column("high_bit", "int"),
        Column("pixel_representation", "int"),
        Column("rescale_intercept", "double"),
        Column("rescale_slope", "double"),
        _v("rescale_type", 64),
        _v("window_center", 64),
        _v("window_width", 64),
        _v("transfer_syntax_uid", 64, nullable=False),
        _v("pixel_data_location", 512),
        _v("thumbnail_location", 512),
        _v("sop_class_uid", 64, nullable=False),
        _v("image_status", 32),
        Column("space_size", "bigint"),
        *_VERSION_COLUMNS,
    ),
    key=("tenant_id", "study_uid", "series_uid", "sop_uid"),
    doris_key=("tenant_id", "patient_id", "study_uid", "series_uid", "sop_uid"),
    **_VERSIONED,
)

INGEST_ERROR = Table(
    name="dicom_ingest_error",
    columns=(
        _v("topic", 249, nullable=False),
        Column("partition", "int", nullable=False),
        Column("offset", "bigint", nullable=False),
        _v("reason", 32, nullable=False),
        Column("detail", "text"),
        _v("trace_id", 64),
        _v("run_id", 64),
        Column("payload", "text"),
        _v("payload_encoding", 16),  # utf-8, or base64 for values that are not UTF-8 text
        _req("created_time", "datetime"),
    ),
    key=("topic", "partition", "offset"),
    doris_key=("topic", "partition", "offset"),
)

PIPELINE_TABLES: tuple[Table, ...] = (OBJECT_META, STATE_META, IMAGE_META)
ALL_TABLES: tuple[Table, ...] = (*PIPELINE_TABLES, INGEST_ERROR)
TABLES_BY_NAME: dict[str, Table] = {t.name: t for t in ALL_TABLES}

# Every column that keys a row in some pipeline table: a value that does not fit one
# of these rejects the message; any other column is cut to fit.
KEY_COLUMNS: frozenset[str] = frozenset(
    name for t in PIPELINE_TABLES for name in (*t.key, *t.doris_key)
)


def tables_for(backend: Backend) -> dict[str, Table]:
    """Every table as ``backend`` holds it, by name."""
    return {t.name: t.for_backend(backend) for t in ALL_TABLES}
