"""The real-file corpus: DICOM files shipped in the pydicom and pydicom-data wheels."""

from __future__ import annotations

import os
from pathlib import Path

import data_store  # the pydicom-data wheel
from pydicom.data import get_charset_files, get_testdata_file


def corpus_files() -> list[Path]:
    """Every file of both corpora, offline."""
    pydicom_dir = Path(get_testdata_file("CT_small.dcm", download=False)).parent
    extra = Path(os.path.dirname(data_store.__file__)) / "data"
    files = {p for d in (pydicom_dir, extra) for p in d.iterdir() if p.is_file()}
    files |= {Path(p) for p in get_charset_files("*")}
    return sorted(f for f in files if not f.name.endswith((".py", ".pyc", ".txt", ".json")))
