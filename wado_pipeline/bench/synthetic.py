"""Synthetic DICOM studies and the store messages the receiver would publish.

Used by the tests (one generator for every pitfall), ``wado-pipeline produce
--synthetic`` and the benchmark. Files are laid out as the receiver stores them:
``<root>/<tenant>/<study>/<series>/<sop>.dcm``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import config as pydicom_config
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from wado_pipeline.core.dicom.receiver import store_message

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
SOP_CLASS = {"CT": CT_IMAGE_STORAGE, "MR": MR_IMAGE_STORAGE}


def uid(*parts: object) -> str:
    """A deterministic UID from the given parts (same parts, same UID)."""
    return generate_uid(entropy_srcs=[str(p) for p in parts])


@dataclass
class InstanceSpec:
    """What one synthetic instance should contain."""

    patient_id: str = "PAT0001"
    patient_name: str = "Doe^Jane"
    study_uid: str = field(default_factory=lambda: uid("study", uuid.uuid4()))
    series_uid: str = field(default_factory=lambda: uid("series", uuid.uuid4()))
    sop_uid: str = field(default_factory=lambda: uid("sop", uuid.uuid4()))
    modality: str = "CT"
    instance_number: int = 1
    rows: int = 128
    columns: int = 128
    study_date: str = "20240115"
    charset: str = "ISO_IR 192"
    # keyword -> value, applied with pydicom's normal setters
    attributes: dict[str, Any] = field(default_factory=dict)
    # (group, element) -> (VR, raw value): written as is, bypassing validation
    raw: dict[tuple[int, int], tuple[str, Any]] = field(default_factory=dict)
    # keywords to delete after everything else (missing required attributes)
    remove: tuple[str, ...] = ()


def build_dataset(spec: InstanceSpec) -> Dataset:
    """An in-memory CT/MR instance with realistic header values and zero pixels."""
    meta = FileMetaDataset()
    sop_class = SOP_CLASS.get(spec.modality, CT_IMAGE_STORAGE)
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = spec.sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.10.1461.1"
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = spec.charset
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = spec.sop_uid
    ds.StudyDate = spec.study_date
    ds.SeriesDate = spec.study_date
    ds.ContentDate = spec.study_date
    ds.StudyTime = "083015.250000"
    ds.SeriesTime = "083512"
    ds.ContentTime = "083513.5"
    ds.AccessionNumber = "ACC" + spec.patient_id[-6:]
    ds.Modality = spec.modality
    ds.StudyDescription = f"{spec.modality} study"
    ds.SeriesDescription = f"{spec.modality} series"
    ds.ProtocolName = f"{spec.modality} protocol"
    ds.PatientName = spec.patient_name
    ds.PatientID = spec.patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.PatientAge = "054Y"
    ds.PatientSize = "1.68"
    ds.PatientWeight = "61.5"
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = "1.25"
    ds.SpacingBetweenSlices = "1.25"
    ds.StudyInstanceUID = spec.study_uid
    ds.SeriesInstanceUID = spec.series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 2
    ds.InstanceNumber = spec.instance_number
    z = -100.0 + 1.25 * spec.instance_number
    ds.ImagePositionPatient = ["-125.000000", "-125.000000", f"{z:.6f}"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.SliceLocation = f"{z:.3f}"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = spec.rows
    ds.Columns = spec.columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = ["40", "400"]
    ds.WindowWidth = ["400", "1500"]
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    for keyword, value in spec.attributes.items():
        setattr(ds, keyword, value)
    ds.PixelData = bytes(spec.rows * spec.columns * 2)
    for (group, elem), (vr, value) in spec.raw.items():
        # Raw bytes, written exactly as given: how broken modalities send them.
        raw = value if isinstance(value, bytes) else str(value).encode()
        if len(raw) % 2:
            raw += b"\0" if vr == "UI" else b" "
        tag = Tag(group, elem)
        ds._dict[tag] = RawDataElement(tag, vr, len(raw), raw, 0, False, True)
    for keyword in spec.remove:
        if keyword in ds:
            delattr(ds, keyword)
    return ds


def write_dataset(ds: Dataset, path: Path) -> int:
    """Write a Part-10 file (with preamble); return its size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with pydicom_config.disable_value_validation():
        ds.save_as(path, enforce_file_format=True)
    return path.stat().st_size


def storage_path(root: Path, tenant_id: str, spec: InstanceSpec) -> Path:
    return root / tenant_id / spec.study_uid / spec.series_uid / f"{spec.sop_uid}.dcm"


PATIENTS = (
    ("PAT1001", "Müller^Jürgen", "ISO_IR 192"),
    ("PAT1002", "Yamada^Tarou=山田^太郎=やまだ^たろう", "ISO_IR 192"),
    ("PAT1003", "Wang^XiaoDong=王^小东", "ISO_IR 192"),
    ("PAT1004", "Smith^John", "ISO_IR 100"),
    ("PAT1005", "Dupont^Amélie", "ISO_IR 192"),
)


def synthetic_archive(
    root: Path, tenant_id: str, n_instances: int, *, seed: str = "demo", rows: int = 256
) -> Iterator[tuple[Path, Dataset, dict[str, Any]]]:
    """Write ``n_instances`` files across patients, CT and MR series; yield each
    file with its dataset and store message. Deterministic for a given seed."""
    # series of tens to hundreds of instances, as CT and MR studies have
    lengths = (60, 24, 180, 40, 120, 300)
    bounds, total = [], 0
    while total < n_instances:
        total += lengths[len(bounds) % len(lengths)]
        bounds.append(total)
    series_no = 0
    for i in range(n_instances):
        while i >= bounds[series_no]:
            series_no += 1
        first = bounds[series_no - 1] if series_no else 0
        patient_id, name, charset = PATIENTS[series_no % len(PATIENTS)]
        modality = "CT" if series_no % 2 == 0 else "MR"
        study_no = series_no // 2
        spec = InstanceSpec(
            patient_id=patient_id,
            patient_name=name,
            study_uid=uid(seed, "study", study_no),
            series_uid=uid(seed, "series", series_no),
            sop_uid=uid(seed, "sop", i),
            modality=modality,
            instance_number=i - first + 1,
            rows=rows,
            columns=rows,
            charset=charset,
        )
        ds = build_dataset(spec)
        path = storage_path(root, tenant_id, spec)
        write_dataset(ds, path)
        yield path, ds, store_message(path, ds, tenant_id, trace_id=str(uuid.uuid4()))
