"""DDL for each backend, pinned by golden files and checked against the data-model doc."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parents[1] / "golden"

# Every column of the data-model doc (../shared/docs/data-model.md), typed from the doc.
DOC_COLUMNS = {
    "dicom_object_meta": """trace_id worker_node_id tenant_id patient_id study_uid series_uid
        sop_uid file_size file_path transfer_syntax_uid number_of_frames created_time
        series_uid_hash study_uid_hash accession_number target_ts study_date transfer_status
        source_ip source_ae""",
    "dicom_state_meta": """tenant_id patient_id study_uid series_uid study_uid_hash
        series_uid_hash study_date_origin patient_name patient_sex patient_birth_date
        patient_birth_time patient_age patient_size patient_weight pregnancy_status study_date
        study_time accession_number study_id study_description modality series_number
        series_date series_time series_description body_part_examined protocol_name
        series_related_instances created_time updated_time""",
    "dicom_image_meta": """tenant_id patient_id study_uid series_uid sop_uid study_uid_hash
        series_uid_hash study_date_origin content_date content_time instance_number image_type
        image_orientation_patient image_position_patient slice_thickness spacing_between_slices
        slice_location samples_per_pixel photometric_interpretation width columns
        bits_allocated bits_stored high_bit pixel_representation rescale_intercept
        rescale_slope rescale_type window_center window_width transfer_syntax_uid
        pixel_data_location thumbnail_location sop_class_uid image_status space_size
        created_time updated_time""",
}

POSTGRES_LACKS = ("dicom_image_meta", "study_date_origin")


def print_ddl(backend: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WADO_DORIS_")}
    return subprocess.run(
        [sys.executable, "-m", "wado_pipeline.cli", "init-db", "--print-ddl", backend],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout


@pytest.mark.parametrize("backend", ["doris", "postgres", "mariadb"])
def test_ddl_equals_golden_file(backend):
    assert print_ddl(backend) == (GOLDEN / f"{backend}.sql").read_text()


def _tables(ddl: str) -> dict[str, str]:
    parts = re.split(r"CREATE TABLE IF NOT EXISTS `?(\w+)`? \(", ddl)[1:]
    return dict(zip(parts[::2], parts[1::2], strict=True))


def test_doris_ddl_clauses_and_columns():
    tables = _tables(print_ddl("doris"))
    assert set(tables) == set(DOC_COLUMNS)
    for name, body in tables.items():
        columns = re.findall(r"^  `(\w+)` ", body, flags=re.M)
        assert columns == [c for c in columns if c in DOC_COLUMNS[name].split()]
        assert set(columns) == set(DOC_COLUMNS[name].split()), name
        assert '"enable_unique_key_merge_on_write" = "true"' in body
        assert re.search(r"DISTRIBUTED BY HASH\(`\w+`\) BUCKETS 8", body)
        assert '"replication_num" = "1"' in body
        assert "PRIMARY KEY" not in body and "STRING NOT NULL" not in body
        key = re.search(r"UNIQUE KEY\(([^)]*)\)", body).group(1).replace("`", "").split(", ")
        assert columns[: len(key)] == key, "key columns come first"
        if name != "dicom_object_meta":
            assert '"function_column.sequence_col" = "updated_time"' in body
            assert "`created_time` DATETIME(6) NOT NULL" in body
    assert (
        tables["dicom_state_meta"].count(
            "UNIQUE KEY(`tenant_id`, `patient_id`, `study_uid`, `series_uid`)"
        )
        == 1
    )
    assert "`patient_name` VARCHAR(64) NULL" in tables["dicom_state_meta"]
    assert "`patient_birth_time` VARCHAR(16) NULL" in tables["dicom_state_meta"]


def test_doris_settings_reach_the_ddl():
    env = {**os.environ, "WADO_DORIS_BUCKETS": "16", "WADO_DORIS_REPLICATION_NUM": "3"}
    out = subprocess.run(
        [sys.executable, "-m", "wado_pipeline.cli", "init-db", "--print-ddl", "doris"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    assert out.count("BUCKETS 16") == 3 and out.count('"replication_num" = "3"') == 3


@pytest.mark.parametrize("backend", ["postgres", "mariadb"])
def test_sql_ddl_has_every_doc_column(backend):
    tables = _tables(print_ddl(backend))
    for name, cols in DOC_COLUMNS.items():
        body = tables[name]
        for c in cols.split():
            # the doc: a site's PostgreSQL image table has no study_date_origin
            present = not (backend == "postgres" and (name, c) == POSTGRES_LACKS)
            found = re.search(rf"^\s+`?{c}`? ", body, flags=re.M) is not None
            assert found == present, (backend, name, c)


def test_routine_load_mode_also_prints_the_jobs_a_site_needs():
    """Pinned by golden text: the tables, then one job per table from its topic."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WADO_")}
    out = subprocess.run(
        [sys.executable, "-m", "wado_pipeline.cli", "init-db", "--print-ddl", "doris"],
        capture_output=True,
        text=True,
        check=True,
        env={**env, "WADO_DORIS_LOAD": "routine_load"},
    ).stdout
    assert out == (GOLDEN / "doris_routine_load.sql").read_text()
    jobs = dict(re.findall(r"ON `(\w+)`.*?\"kafka_topic\" = \"(\w+)\"", out, flags=re.S))
    assert jobs == {
        "dicom_object_meta": "log_queue",
        "dicom_state_meta": "dicom_state_queue",
        "dicom_image_meta": "dicom_image_queue",
    }
    assert print_ddl("doris") in out and "ROUTINE LOAD" not in print_ddl("doris")
