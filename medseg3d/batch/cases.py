"""What a batch works on: cases found in a folder or listed in a manifest, checked up front.

A *case* is one scan to segment: one volume file (NIfTI, MHA/NRRD), several channel files of one
scan (nnU-Net naming ``CASE_0000.nii.gz``, ``CASE_0001.nii.gz``…), or one DICOM series. Each case
has a stable id (the same folder gives the same ids on every run), from which its output name
``<case_id>.nii.gz`` is derived.

* :func:`~medseg3d.batch.discover.discover_cases` walks a folder recursively. A volume file's id is its path relative to
  the folder without the extension, ``/`` replaced by ``_`` (``p01/ct.nii.gz`` -> ``p01_ct``); a
  DICOM series' id is the relative path of the folder holding its files, with a ``_s<number>``
  suffix when that folder holds several series. Header fields that identify the patient are
  never used.
* :func:`read_manifest` reads a CSV or JSON manifest (``case_id``, ``input``, optional
  ``series_uid`` and ``output``).
* :func:`check_cases` reports every problem (duplicate ids, missing files, clashing outputs,
  wrong channel counts) at once, before anything is computed.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from medseg3d.errors import BatchInputError

logger = logging.getLogger(__name__)

#: File endings read as one volume each (longest first, so ``.nii.gz`` wins over ``.gz``).
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")
#: File endings an output may have (what ``save_volume`` writes).
OUTPUT_SUFFIXES = (".nii.gz", ".nii")
DEFAULT_OUTPUT_SUFFIX = ".nii.gz"
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


@dataclass(frozen=True)
class BatchCase:
    """One scan to segment.

    Attributes:
        case_id: stable identifier, used for the output name and in the report.
        inputs: one path per channel file, or one DICOM folder (or file) for a series.
        series: SeriesInstanceUID (or number/description) picking a series in a DICOM folder;
            used to read the scan, never written to the report.
        output: output file name relative to the output folder (default ``<case_id>.nii.gz``).
        dicom: True when the input is a DICOM series.
    """

    case_id: str
    inputs: tuple[Path, ...]
    series: str | None = None
    output: str | None = None
    dicom: bool = False

    @property
    def input_text(self) -> str:
        """The input path(s) as given, ``;``-separated for several channel files."""
        return ";".join(str(path) for path in self.inputs)

    @property
    def output_name(self) -> str:
        """The output path relative to the output folder, normalised (``./a//b.nii.gz`` ->
        ``a/b.nii.gz``), so two spellings of one file are seen as the same output."""
        if not self.output:
            return f"{self.case_id}{DEFAULT_OUTPUT_SUFFIX}"
        return posixpath.normpath(self.output.replace("\\", "/"))

    def output_path(self, out_dir: str | os.PathLike) -> Path:
        return Path(out_dir) / self.output_name


@dataclass
class CaseList:
    """Cases and the problems found while collecting them (reported together by
    :func:`check_cases`)."""

    cases: list[BatchCase]
    source: Path
    problems: list[str] = field(default_factory=list)


def volume_suffix(name: str) -> str | None:
    lower = name.lower()
    return next((suffix for suffix in VOLUME_SUFFIXES if lower.endswith(suffix)), None)


def safe_id(text: str) -> str:
    """``text`` as a file-name-safe id: path separators and unsafe characters become ``_``."""
    return _UNSAFE.sub("_", text.replace("/", "_")).strip("_.") or "case"


# --- checks --------------------------------------------------------------------------------------
def check_cases(
    case_list: CaseList,
    *,
    channels: int | None = None,
    check_files: bool = True,
) -> list[BatchCase]:
    """The cases, or :class:`BatchInputError` listing every problem found at once: problems met
    while collecting, duplicate case ids, duplicate or unsafe output names, missing input
    files, a channel count that does not fit the model (``channels``)."""
    problems = list(case_list.problems)
    cases = case_list.cases
    for case_id, count in sorted(Counter(case.case_id for case in cases).items()):
        if count > 1:
            inputs = "; ".join(c.input_text for c in cases if c.case_id == case_id)
            problems.append(f"case id {case_id!r} appears {count} times ({inputs})")
    # case-insensitive: on macOS / Windows shares A.nii.gz and a.nii.gz are one file
    writers: dict[str, set[str]] = {}
    for case in cases:
        writers.setdefault(case.output_name.lower(), set()).add(case.case_id)
    for name, ids in sorted(writers.items()):
        if len(ids) > 1:
            problems.append(
                f"output {name!r} is written by {len(ids)} cases ({', '.join(sorted(ids))}); "
                "give distinct outputs"
            )
    for case in cases:
        problems += _output_problems(case)
        if check_files:
            problems += [
                f"case {case.case_id!r}: input {path} does not exist"
                for path in case.inputs
                if not path.exists()
            ]
        if channels is not None and not case.dicom and len(case.inputs) not in (1, channels):
            problems.append(
                f"case {case.case_id!r}: {len(case.inputs)} input files, the model takes "
                f"{channels} channels (one file per channel, or one multi-channel file)"
            )
    if problems:
        raise BatchInputError(_dedupe(problems), path=case_list.source)
    return cases


def _output_problems(case: BatchCase) -> list[str]:
    name = case.output_name
    if not case.case_id or case.case_id in (".", "..") or "/" in case.case_id:
        return [f"case id {case.case_id!r} is not usable as a file name"]
    parts = Path(name).parts
    if Path(name).is_absolute() or ".." in parts or not parts:
        return [f"case {case.case_id!r}: output {name!r} must be a path inside the output folder"]
    if not name.lower().endswith(OUTPUT_SUFFIXES):
        return [f"case {case.case_id!r}: output {name!r} must end with .nii.gz or .nii"]
    return []


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
