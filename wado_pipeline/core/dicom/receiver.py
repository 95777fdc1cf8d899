"""What the DICOM receiver publishes for a file it stored: the store message, and where
it puts the file (``<root>/<tenant>/<YYYYMMDD>/<study>/<series>/<sop>.dcm``), in the
upstream receiver's own format (upstream.md): ``accession_number`` null when the tag
is absent or longer than 16, ``created_time`` with 9 fraction digits,
``worker_node_id`` ``DICOM_STORE_SCP``, and ``NeedTransfer`` for a syntax the site's
viewer does not display.

Used by ``wado-pipeline produce`` to publish files as the receiver would (a demo, or a
backfill of an existing archive), and by the development tooling.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from wado_pipeline.core.dicom.seahash import uid_hash

WORKER_NODE_ID = "DICOM_STORE_SCP"
ACCESSION_MAX = 16  # longer accession numbers are sent as null
# The transfer syntaxes upstream's viewer displays (its default
# ``cornerstonejs_supported_transfer_syntax``): others arrive as NeedTransfer.
VIEWER_TRANSFER_SYNTAXES = ",".join(
    "1.2.840.10008." + s
    for s in [
        "1.2",
        "1.2.1",
        "1.2.2",
        "1.2.1.99",
        "1.2.5",
        "1.2.4.50",
        "1.2.4.51",
        "1.2.4.57",
        "1.2.4.70",
        "1.2.4.80",
        "1.2.4.81",
        "1.2.4.90",
        "1.2.4.91",
        "1.2.4.92",
    ]
)
VIEWER_SYNTAXES = frozenset(VIEWER_TRANSFER_SYNTAXES.split(","))


def receiver_layout(root: Path, tenant: str, ds: Dataset) -> Path:
    """Where the receiver stores a file: ``<root>/<tenant>/<YYYYMMDD>/<study>/<series>/
    <sop>.dcm``, the date being the study date (or today's when it has none)."""
    day = str(ds.get("StudyDate", "") or "").strip() or datetime.now().strftime("%Y%m%d")
    return (
        root
        / tenant
        / day
        / str(ds.StudyInstanceUID)
        / str(ds.SeriesInstanceUID)
        / f"{ds.SOPInstanceUID}.dcm"
    )


def _frames(ds: Dataset) -> int:
    try:
        return int(str(ds.get("NumberOfFrames", 1) or 1))
    except ValueError:
        return 1  # the receiver reports 1 for a malformed NumberOfFrames


def store_message(
    path: Path,
    ds: Dataset,
    tenant_id: str,
    *,
    trace_id: str | None = None,
    created_time: datetime | None = None,
    file_size: int | None = None,
    viewer_syntaxes: frozenset[str] = VIEWER_SYNTAXES,
) -> dict[str, Any]:
    """The JSON object the receiver publishes for a stored file."""
    study = str(ds.get("StudyInstanceUID", ""))
    series = str(ds.get("SeriesInstanceUID", ""))
    created = created_time or datetime.now()
    raw_date = str(ds.get("StudyDate", "") or "19000101")
    study_date = (
        f"{raw_date[:4]}-{raw_date[4:6]}-{raw_date[6:8]}" if len(raw_date) == 8 else "1900-01-01"
    )
    accession = ds.get("AccessionNumber")
    accession = None if accession is None else str(accession).strip()
    if accession is not None and len(accession) > ACCESSION_MAX:
        accession = None
    syntax = str(ds.file_meta.TransferSyntaxUID)
    return {
        "trace_id": trace_id or str(uuid.uuid4()),
        "worker_node_id": WORKER_NODE_ID,
        "tenant_id": tenant_id,
        "patient_id": str(ds.get("PatientID", "")),
        "study_uid": study,
        "series_uid": series,
        "sop_uid": str(ds.get("SOPInstanceUID", "")),
        "file_size": file_size if file_size is not None else path.stat().st_size,
        "file_path": str(path),
        "transfer_syntax_uid": syntax,
        "number_of_frames": _frames(ds),
        # chrono's nanosecond form: 9 fraction digits
        "created_time": created.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000",
        "series_uid_hash": uid_hash(series) if series else "",
        "study_uid_hash": uid_hash(study) if study else "",
        "accession_number": accession,
        "target_ts": syntax,
        "study_date": study_date,
        "transfer_status": "NoNeedTransfer" if syntax in viewer_syntaxes else "NeedTransfer",
        "source_ip": "127.0.0.1",
        "source_ae": "MODALITY1",
    }
