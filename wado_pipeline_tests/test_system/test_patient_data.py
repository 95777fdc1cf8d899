"""No patient identifier reaches what Dagster stores or shows: run config, tags, logs,
materialization and check metadata. Checked over the whole corpus the suite uses:
every real file of the pydicom corpora, synthetic studies with non-ASCII names, and the
bad-input corpus. Identifiers are read from the files and messages independently."""

import json
import warnings
from pathlib import Path

import pydicom
import pytest
from dagster import instance_for_test

from wado_pipeline.cli.produce import messages_for_directory
from wado_pipeline_tests.corpus import corpus_files
from wado_pipeline_tests.support import encode, run_range, synthetic_messages
from wado_pipeline_tests.test_system.test_bad_input import build_corpus

pytestmark = pytest.mark.stack
IDENTIFYING = ("PatientID", "PatientName", "PatientBirthDate", "AccessionNumber", "OtherPatientIDs")
MIN_LENGTH = 6  # shorter values ("1", "Anon") also occur as ordinary words and numbers


def identifiers(messages: list[dict]) -> set[str]:
    found = set()
    for m in messages:
        for field in ("patient_id", "accession_number"):
            if isinstance(m.get(field), str):
                found.add(m[field])
        try:
            ds = pydicom.dcmread(m["file_path"], stop_before_pixels=True)
        except Exception:
            continue
        for keyword in IDENTIFYING:
            value = ds.get(keyword)
            if value is not None:
                found.add(str(value))
    return {v.strip() for v in found if len(v.strip()) >= MIN_LENGTH}


def test_no_patient_identifier_in_dagster(settings, produce, storage_root, tmp_path):
    warnings.simplefilter("ignore")  # pydicom warns about the corpus' odd files
    directories = {p.parent for p in corpus_files()}
    real = [m for d in sorted(directories) for m in messages_for_directory(d, storage_root, "T1")]
    synthetic = synthetic_messages(storage_root, 30, seed="phi")
    outside = tmp_path / "outside"
    outside.mkdir()
    bad = build_corpus(storage_root, outside)
    values = [*encode(real), *encode(synthetic), *(v for v, _ in bad)]
    produce(values, partition=0, key=b"corpus")
    secrets = identifiers(real + synthetic)
    for value, _ in bad:  # identifiers inside the bad messages themselves
        try:
            obj = json.loads(value or b"")
        except (ValueError, RecursionError):
            continue
        patient = obj.get("patient_id") if isinstance(obj, dict) else None
        if isinstance(patient, str) and len(patient) >= MIN_LENGTH:
            secrets.add(patient)
    assert len(real) > 100 and len(secrets) > 50

    with instance_for_test() as instance:
        result = run_range(settings, instance, 0, 0, len(values))
        assert result.success
        run = instance.get_run_by_id(result.run_id)
        stored = [json.dumps(run.run_config), json.dumps(run.tags)]
        for entry in instance.all_logs(result.run_id):
            stored.append(entry.message or "")
            if entry.dagster_event is not None:
                stored.append(str(entry.dagster_event.event_specific_data))
                stored.append(entry.dagster_event.message or "")
    text = "\n".join(stored)
    leaked = sorted(s for s in secrets if s in text)
    assert not leaked, f"{len(leaked)} identifier(s) stored by Dagster, e.g. {leaked[:3]}"
    assert Path(real[0]["file_path"]).exists()
