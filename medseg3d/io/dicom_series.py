"""Find DICOM series in a folder (searched recursively) and pick one.

Files are grouped by SeriesInstanceUID, never by file name. Only image storage files count:
DICOMDIR files, structured reports, RT plans and other objects without pixels are skipped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medseg3d.errors import DicomError, FileNotFoundMedsegError, MultipleSeriesError

logger = logging.getLogger(__name__)

#: Header tags read while scanning (pixels are never read at this stage).
SCAN_TAGS = (
    "SeriesInstanceUID",
    "SeriesDescription",
    "SeriesNumber",
    "Modality",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "StudyInstanceUID",
    "SOPClassUID",
)
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
VOLUME_NAMES = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".nhdr")


@dataclass
class SeriesInfo:
    """One DICOM series found in a folder."""

    uid: str
    description: str = ""
    modality: str = ""
    number: int | None = None
    files: list[Path] = field(default_factory=list)
    num_frames: int = 0
    study_uid: str = ""

    @property
    def num_files(self) -> int:
        return len(self.files)

    def summary(self) -> str:
        """``UID (description, modality, N slices)`` on one line."""
        description = self.description or "no description"
        return f"{self.uid} ({description}, {self.modality or '?'}, {self.num_frames} slices)"


def looks_like_dicom(path: Path) -> bool:
    """True for a file with the DICOM preamble (``DICM`` at byte 128) or a ``.dcm`` name."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            if handle.read(4) == b"DICM":
                return True
    except OSError:
        return False
    return path.suffix.lower() in (".dcm", ".dicom", ".ima")


def read_header(path: Path):
    """The header (no pixels) of a DICOM file, or None when it is not a readable image."""
    import pydicom

    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=True, force=not _has_preamble(path))
    except Exception:  # noqa: BLE001 - any undecodable file is simply "not DICOM"
        return None
    if str(getattr(dataset, "file_meta", {}).get("MediaStorageSOPClassUID", "")) == _DICOMDIR_CLASS:
        return None
    if "SeriesInstanceUID" not in dataset or "Rows" not in dataset:
        return None
    return dataset


def _has_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _candidate_files(folder: Path) -> list[Path]:
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith(".") or name.upper() == "DICOMDIR":
                continue
            files.append(Path(root) / name)
    return files


def list_dicom_series(folder: str | os.PathLike) -> list[SeriesInfo]:
    """All image series under ``folder`` (recursive), sorted by series number then UID.

    Raises :class:`FileNotFoundMedsegError` for a missing folder and :class:`DicomError` for a
    folder that is empty or holds no DICOM image.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundMedsegError("no such folder", path=folder)
    if folder.is_file():
        header = read_header(folder)
        if header is None:
            raise DicomError(_why_not_an_image(folder), path=folder)
        return [_info_from(header, [folder])]
    candidates = _candidate_files(folder)
    if not candidates:
        raise DicomError("folder is empty: expected DICOM files or a volume file", path=folder)
    series: dict[str, SeriesInfo] = {}
    for path in candidates:
        header = read_header(path)
        if header is None:
            continue
        uid = str(header.SeriesInstanceUID)
        if uid not in series:
            series[uid] = _info_from(header, [])
        info = series[uid]
        info.files.append(path)
        info.num_frames += int(header.get("NumberOfFrames", 1) or 1)
    if not series:
        volumes = [p.name for p in candidates if p.name.lower().endswith(VOLUME_NAMES)]
        hint = (
            f"; it holds volume files ({', '.join(volumes[:3])}…): pass one of them"
            if volumes
            else ""
        )
        raise DicomError(
            f"no DICOM image files among the {len(candidates)} files in this folder "
            f"(searched recursively){hint}",
            path=folder,
        )
    return sorted(series.values(), key=lambda s: (s.number is None, s.number or 0, s.uid))


def _why_not_an_image(path: Path) -> str:
    """Why a single file is not a readable DICOM image, as precisely as the header tells."""
    import pydicom

    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=True, force=not _has_preamble(path))
    except Exception:  # noqa: BLE001 - not DICOM at all
        return "not a DICOM file"
    if not any(tag in dataset for tag in ("SOPClassUID", "Modality", "Rows", "StudyInstanceUID")):
        return "not a DICOM file"
    if "Rows" not in dataset:
        kind = str(dataset.get("Modality", "") or "") or "no image"
        return f"a DICOM file without an image ({kind}: a report, structure set or DICOMDIR?)"
    if "SeriesInstanceUID" not in dataset:
        return (
            "a DICOM image without SeriesInstanceUID (removed by an anonymiser?); slices are "
            "grouped by it: restore the tag, or convert the image with another tool"
        )
    return "not a DICOM image file"


def _info_from(header, files: list[Path]) -> SeriesInfo:
    number = header.get("SeriesNumber")
    return SeriesInfo(
        uid=str(header.SeriesInstanceUID),
        description=str(header.get("SeriesDescription", "") or "").strip(),
        modality=str(header.get("Modality", "") or ""),
        number=int(number) if number not in (None, "") else None,
        files=list(files),
        num_frames=sum(int(header.get("NumberOfFrames", 1) or 1) for _ in files),
        study_uid=str(header.get("StudyInstanceUID", "") or ""),
    )


def select_series(
    all_series: Sequence[SeriesInfo], series: str | int | None, folder: str | os.PathLike
) -> SeriesInfo:
    """Pick one series: the only one, or the one named by ``series``.

    ``series`` may be, tried in this order: a full SeriesInstanceUID, a SeriesNumber (the ``#N``
    that ``medseg3d info`` lists), a unique SeriesDescription (case-insensitive), or a unique
    UID suffix of whole components (``0.134`` matches ``1.2.3.0.134``, ``4`` does not).
    """
    listing = "; ".join(s.summary() for s in all_series)
    if series is None:
        if len(all_series) == 1:
            return all_series[0]
        raise MultipleSeriesError(
            f"{len(all_series)} DICOM series found: {listing}. Pick one by UID, number or "
            "description: series= in Python, --series on the command line, or the series_uid "
            "column of a batch manifest",
            path=folder,
        )
    wanted = str(series).strip()
    tests = (
        lambda s: s.uid == wanted,
        lambda s: s.number is not None and str(s.number) == wanted,
        lambda s: s.description.lower() == wanted.lower(),
        lambda s: s.uid.endswith("." + wanted.lstrip(".")),
    )
    for test in tests:
        matches = [s for s in all_series if test(s)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise MultipleSeriesError(
                f"series={wanted!r} matches {len(matches)} series: "
                + "; ".join(s.summary() for s in matches)
                + ". Give the full SeriesInstanceUID",
                path=folder,
            )
    raise DicomError(f"no series matches series={wanted!r}; found: {listing}", path=folder)
