"""Rewrite a ``NeedTransfer`` file in place to an uncompressed transfer syntax.

Upstream's receiver marks a file ``NeedTransfer`` when the site's viewer cannot
display its transfer syntax, and its consumer rewrites the file (GDCM) before reading
it. This does the same with pydicom and the pylibjpeg plugins, which decode more of
pydicom's test files than python-gdcm does (docs/upstream.md, Compatibility):

- idempotent: a file already in the target syntax, or in one the viewer displays,
  is left as it is, so a re-run finds it done and skips;
- atomic: the new file is written next to the old one, fsynced, then renamed over
  it (and the directory fsynced), so a reader sees the old file or the new one;
- bounded: the work runs in a forked child that is killed after ``timeout_s``;
- safe to fail: a file that cannot be decoded stays untouched and the caller stores
  its rows with a warning. Messages name no patient data.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

# The decoders pydicom finds through pylibjpeg's plugin registry are imported here so
# that a missing plugin fails loudly at start-up instead of turning every NeedTransfer
# file of its syntax into a "cannot decode" warning.
import libjpeg  # noqa: F401  JPEG baseline/extended/lossless, JPEG-LS
import openjpeg  # noqa: F401  JPEG 2000
import pydicom
import pylibjpeg  # noqa: F401  the plugin registry pydicom asks
import rle  # noqa: F401  RLE Lossless
from pydicom.uid import UID

# Uncompressed syntaxes this module can write.
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
TARGETS = frozenset({IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN})


@dataclass(frozen=True)
class Transcoding:
    """What a batch does with ``NeedTransfer`` files (from the settings)."""

    target: str = EXPLICIT_VR_LITTLE_ENDIAN
    viewer_syntaxes: frozenset[str] = frozenset()
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"transcoding target must be one of {sorted(TARGETS)}")


@dataclass(frozen=True)
class Result:
    """``done``: rewritten now; ``kept``: already displayable, untouched;
    ``failed``: could not be rewritten, untouched (``detail`` says why)."""

    outcome: str
    source_syntax: str | None = None
    detail: str = ""


def file_syntax(path: str) -> str | None:
    """The transfer syntax in a Part-10 file's meta header (the rest is not read)."""
    try:
        meta = pydicom.filereader.read_file_meta_info(path)
    except Exception:
        return None
    ts = meta.get("TransferSyntaxUID")
    return str(ts).strip() if ts else None


def _temp_path(path: str) -> str:
    head, tail = os.path.split(path)
    return os.path.join(head, f".{tail}.wado-transcode-{os.getpid()}.tmp")


def _rewrite(path: str, temp: str, target: str) -> None:
    """Decode every frame and write the dataset in ``target`` to ``temp``, then rename."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            # pixel data to native (Explicit VR Little Endian); the SOP Instance UID is
            # kept: the file is the same instance, and every key names it
            ds.decompress(generate_instance_uid=False)
        ds.file_meta.TransferSyntaxUID = UID(target)
        mode = os.stat(path).st_mode & 0o7777
        with open(temp, "wb") as fp:
            ds.save_as(fp, enforce_file_format=True)
            fp.flush()
            os.fsync(fp.fileno())
        os.chmod(temp, mode)
    os.replace(temp, path)
    dir_fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _child(path: str, temp: str, target: str, conn) -> None:
    try:
        _rewrite(path, temp, target)
        conn.send(("done", ""))
    except Exception as exc:
        conn.send(("failed", f"cannot decode or write: {type(exc).__name__}"))
    finally:
        conn.close()


def transcode_in_place(path: str, policy: Transcoding) -> Result:
    """Bring the file at ``path`` (already checked to lie under a storage root) to
    ``policy.target``, unless it is there already or the viewer displays its syntax."""
    source = file_syntax(path)
    if source is None:
        return Result("failed", None, "no transfer syntax in the file meta")
    if source == policy.target or source in policy.viewer_syntaxes:
        return Result("kept", source)
    temp = _temp_path(path)
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(path, temp, policy.target, child), daemon=True)
    proc.start()
    child.close()
    outcome, detail = "failed", "the transcoding process ended early"
    try:
        if parent.poll(policy.timeout_s):
            outcome, detail = parent.recv()
        else:
            outcome, detail = "failed", f"not done within {policy.timeout_s:g} s"
    except EOFError:  # the child died without a word (killed, out of memory)
        pass
    finally:
        parent.close()
        if proc.is_alive():
            proc.kill()
        proc.join()
        if outcome != "done":
            Path(temp).unlink(missing_ok=True)
    return Result(outcome, source, detail)
