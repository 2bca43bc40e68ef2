"""Finding the cases in a folder: volume files, nnU-Net channel files, DICOM series.

Walked recursively (linked folders followed, loops visited once; hidden entries and the output
folder skipped). A volume file's id is its relative path without the extension, ``/`` -> ``_``
(``p01/ct.nii.gz`` -> ``p01_ct``); a DICOM series' id is the relative path of the folder holding
its files, with ``_s<number>`` when that folder holds several series; copies of one series in
several folders are one case each. Ids that would collide get a hash of their relative path.
Header fields that identify the patient are never used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from medseg3d.batch.cases import VOLUME_SUFFIXES, BatchCase, CaseList, safe_id, volume_suffix

logger = logging.getLogger(__name__)

_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
_SKIPPED_NAMES = ("DICOMDIR",)
#: Endings of files that are certainly not DICOM (DICOM files may have any name, often none).
_NOT_DICOM = (
    ".txt",
    ".csv",
    ".json",
    ".xml",
    ".yaml",
    ".yml",
    ".md",
    ".html",
    ".pdf",
    ".png",
    ".jpg",
    ".jpeg",
    ".gif",
    ".bmp",
    ".tif",
    ".tiff",
    ".zip",
    ".gz",
    ".tar",
    ".7z",
    ".npy",
    ".npz",
    ".pt",
    ".pth",
    ".py",
    ".sh",
    ".log",
    ".lock",
    ".raw",
    ".zraw",
    ".img",
    ".hdr",
    ".bval",
    ".bvec",
    ".nii",
    ".mat",
    ".h5",
    ".hdf5",
    ".exe",
    ".dll",
    ".ini",
    ".db",
)


def discover_cases(
    folder: str | os.PathLike,
    *,
    channels: int | None = None,
    exclude: Iterable[str | os.PathLike] = (),
    workers: int = 4,
) -> CaseList:
    """Every volume file and DICOM series under ``folder`` (recursive), in path order.

    ``channels`` (the model's input channels) decides how nnU-Net channel files are grouped:
    with ``channels > 1`` the files ``CASE_0000 … CASE_<channels-1>`` form one case; otherwise
    each file is a case and a ``_0000`` suffix is dropped from its id. Folders in ``exclude``
    (e.g. the output folder) and hidden files are skipped. DICOM headers are read (pixels are
    not) by ``workers`` threads.
    """
    root = Path(folder).expanduser()
    excluded = {Path(path).expanduser().resolve() for path in exclude}
    volumes: list[Path] = []
    others: list[Path] = []
    visited: set[str] = set()
    for current, dirs, names in os.walk(root, followlinks=True):  # linked study folders count
        real = os.path.realpath(current)
        if real in visited:  # a link loop, or a folder reached twice through links
            dirs[:] = []
            continue
        visited.add(real)
        here = Path(current)
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and (here / d).resolve() not in excluded
        )
        for name in sorted(names):
            if name.startswith(".") or name.upper() in _SKIPPED_NAMES:
                continue
            path = here / name
            (volumes if volume_suffix(name) else others).append(path)
    problems: list[str] = []
    cases = _volume_cases(volumes, root, channels, problems)
    cases += _dicom_cases(others, root, workers)
    cases = _distinct_ids(cases, root)
    if not cases:
        problems.append(
            f"no volume files ({', '.join(VOLUME_SUFFIXES)}) or DICOM series found "
            "(searched recursively)"
        )
    return CaseList(cases, root, problems)


def _distinct_ids(cases: list[BatchCase], root: Path) -> list[BatchCase]:
    """Cases whose ids would collide (``a b/ct`` and ``a_b/ct``; ``scan`` beside ``scan_0000``)
    each get a short hash of their relative input path appended, so a folder never fails to
    start over names; ids that do not collide are unchanged."""
    counts = Counter(case.case_id for case in cases)
    result = []
    for case in cases:
        if counts[case.case_id] > 1:
            where = ";".join(_relative(path, root) for path in case.inputs) + (case.series or "")
            digest = hashlib.sha1(where.encode("utf-8")).hexdigest()[:8]
            logger.warning(
                "case id %s is ambiguous; using %s_%s", case.case_id, case.case_id, digest
            )
            case = dataclasses.replace(case, case_id=f"{case.case_id}_{digest}")
        result.append(case)
    return result


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _stem(path: Path, root: Path) -> str:
    relative = path.relative_to(root).as_posix()
    return relative[: -len(volume_suffix(path.name) or "")]


def _volume_cases(
    paths: list[Path], root: Path, channels: int | None, problems: list[str]
) -> list[BatchCase]:
    if channels is not None and channels > 1:
        groups: dict[str, dict[int, Path]] = defaultdict(dict)
        for path in paths:
            match = _CHANNEL.match(_stem(path, root))
            if match is None:
                problems.append(
                    f"{path.relative_to(root)}: the model takes {channels} channels, so input "
                    "files must be named CASE_0000…, one per channel (nnU-Net naming)"
                )
                continue
            groups[match["case"]][int(match["channel"])] = path
        cases = []
        for stem, files in sorted(groups.items()):
            if sorted(files) != list(range(channels)):
                found = ", ".join(f"{index:04d}" for index in sorted(files))
                problems.append(
                    f"{stem}: channel files {found} found, the model needs _0000 to "
                    f"_{channels - 1:04d}"
                )
                continue
            cases.append(BatchCase(safe_id(stem), tuple(files[i] for i in range(channels))))
        return cases
    cases = []
    for path in paths:
        stem = _stem(path, root)
        match = _CHANNEL.match(stem)
        if match is not None and match["channel"] == "0000":
            stem = match["case"]
        cases.append(BatchCase(safe_id(stem), (path,)))
    return cases


def _dicom_cases(paths: list[Path], root: Path, workers: int) -> list[BatchCase]:
    from medseg3d.io.dicom_series import looks_like_dicom, read_header

    candidates = [
        path
        for path in paths
        if looks_like_dicom(path) or not path.name.lower().endswith(_NOT_DICOM)
    ]
    if not candidates:
        return []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        headers = list(pool.map(read_header, candidates))
    series: dict[str, dict] = {}
    for path, header in zip(candidates, headers):
        if header is None:
            continue
        uid = str(header.SeriesInstanceUID)
        entry = series.setdefault(uid, {"files": [], "number": header.get("SeriesNumber")})
        entry["files"].append((path, str(header.get("SOPInstanceUID", path))))
    by_folder: dict[Path, list[tuple[str, dict]]] = defaultdict(list)
    for uid, entry in series.items():
        for files in _copies(entry["files"]):
            folder = Path(os.path.commonpath([str(path.parent) for path in files]))
            by_folder[folder].append((uid, entry))
    cases = []
    for folder, members in sorted(by_folder.items()):
        relative = folder.relative_to(root).as_posix()
        base = safe_id(root.name if relative == "." else relative)
        numbers = [_series_number(entry) for _, entry in members]
        unique_numbers = None not in numbers and len(set(numbers)) == len(numbers)
        for (uid, _entry), number in sorted(
            zip(members, numbers), key=lambda item: (item[1] is None, item[1] or 0, item[0][0])
        ):
            if len(members) == 1:
                case_id = base
            elif unique_numbers:
                case_id = f"{base}_s{number}"
            else:
                case_id = f"{base}_{hashlib.sha1(uid.encode()).hexdigest()[:8]}"
            cases.append(BatchCase(case_id, (folder,), series=uid, dicom=True))
    return cases


def _copies(files: list[tuple[Path, str]]) -> list[list[Path]]:
    """The files of one series as one group, or one group per folder when the same instances
    (SOP Instance UIDs) appear in several folders: copies of a study, each its own case.
    A series split over several folders without repeated instances stays one case."""
    folders: dict[Path, list[tuple[Path, str]]] = defaultdict(list)
    for path, instance in files:
        folders[path.parent].append((path, instance))
    seen = Counter(instance for members in folders.values() for instance in {i for _, i in members})
    if len(folders) > 1 and any(count > 1 for count in seen.values()):
        return [[path for path, _ in members] for _, members in sorted(folders.items())]
    return [[path for path, _ in files]]


def _series_number(entry: dict) -> int | None:
    try:
        return int(entry["number"])
    except (TypeError, ValueError):
        return None
