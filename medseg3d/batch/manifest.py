"""Manifests: the list of cases in a CSV or JSON file, for archives that are not one tidy folder.

CSV (a header row is required; column names are case-insensitive)::

    case_id,input,series_uid,output
    p001,/archive/p001/ct.nii.gz,,
    p002,/archive/p002/dicom,1.2.840.113619.2.55.3.604688119,p002_liver.nii.gz
    p003,/archive/p003/t2.nii.gz;/archive/p003/adc.nii.gz,,

JSON: a list of objects with the same keys (or ``{"cases": [...]}``); ``input`` may be a list of
channel files. Relative input paths are relative to the manifest's folder; ``output`` is relative
to the output folder (default ``<case_id>.nii.gz``); ``series_uid`` picks one series of a DICOM
folder. Every problem is collected and reported at once by :func:`~medseg3d.batch.cases.check_cases`.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from medseg3d.batch.cases import BatchCase, CaseList, volume_suffix
from medseg3d.errors import BatchInputError

MANIFEST_SUFFIXES = (".csv", ".json")
#: Accepted column names for each field (first is the documented one).
COLUMNS = {
    "case_id": ("case_id", "id", "case"),
    "input": ("input", "image", "path", "input_path"),
    "series_uid": ("series_uid", "series", "series_instance_uid"),
    "output": ("output", "output_name"),
}


def is_manifest(path: str | os.PathLike) -> bool:
    path = Path(path)
    return path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES


def read_manifest(path: str | os.PathLike) -> CaseList:
    """The cases listed in a CSV or JSON manifest, with every problem found while parsing."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise BatchInputError(f"cannot read the manifest ({error})", path=path) from None
    if path.suffix.lower() == ".json":
        rows, problems = _json_rows(text)
    else:
        rows, problems = _csv_rows(text)
    cases = []
    for where, row in rows:
        case = _case(row, where, path.parent, problems)
        if case is not None:
            cases.append(case)
    if not cases and not problems:
        problems.append("the manifest lists no cases")
    return CaseList(cases, path, problems)


def _csv_rows(text: str) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    reader = csv.DictReader(text.splitlines())
    fields = [name.strip().lower() for name in (reader.fieldnames or [])]
    mapping, problems = _columns(fields)
    if problems:
        return [], problems
    rows = []
    for number, raw in enumerate(reader, start=2):
        values = {key.strip().lower(): (value or "").strip() for key, value in raw.items() if key}
        if not any(values.values()):
            continue
        row = {field: values.get(column, "") for field, column in mapping.items()}
        row["input"] = [part.strip() for part in row.get("input", "").split(";") if part.strip()]
        rows.append((f"line {number}", row))
    return rows, []


def _json_rows(text: str) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        return [], [f"not valid JSON ({error})"]
    if isinstance(document, dict):
        document = document.get("cases")
    if not isinstance(document, list):
        return [], ['expected a list of cases or {"cases": [...]}']
    rows, problems = [], []
    for index, item in enumerate(document):
        where = f"entry {index}"
        if not isinstance(item, dict):
            problems.append(f"{where}: expected an object with case_id and input")
            continue
        lowered = {str(key).lower(): value for key, value in item.items()}
        row = {}
        for field, names in COLUMNS.items():
            value = next((lowered[name] for name in names if name in lowered), None)
            row[field] = value
        inputs = row["input"]
        if isinstance(inputs, str):
            inputs = [part.strip() for part in inputs.split(";") if part.strip()]
        elif not isinstance(inputs, list) or not all(isinstance(p, str) for p in inputs):
            inputs = []
        row["input"] = inputs
        for key in ("case_id", "series_uid", "output"):
            row[key] = "" if row[key] is None else str(row[key]).strip()
        rows.append((where, row))
    return rows, problems


def _columns(fields: list[str]) -> tuple[dict[str, str], list[str]]:
    mapping, problems = {}, []
    for field, names in COLUMNS.items():
        column = next((name for name in names if name in fields), None)
        if column is not None:
            mapping[field] = column
        elif field in ("case_id", "input"):
            problems.append(
                f"no {field!r} column (header has: {', '.join(fields) or 'nothing'}); "
                "columns are case_id, input, series_uid (optional), output (optional)"
            )
    return mapping, problems


def _case(row: dict[str, Any], where: str, base: Path, problems: list[str]) -> BatchCase | None:
    case_id = row.get("case_id") or ""
    inputs = row.get("input") or []
    missing = [name for name, value in (("case_id", case_id), ("input", inputs)) if not value]
    if missing:
        problems.append(f"{where}: {' and '.join(missing)} missing")
        return None
    paths = tuple(_resolve(value, base) for value in inputs)
    series = row.get("series_uid") or None
    dicom = len(paths) == 1 and (
        paths[0].is_dir() or series is not None or volume_suffix(paths[0].name) is None
    )
    return BatchCase(case_id, paths, series=series, output=row.get("output") or None, dicom=dicom)


def _resolve(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path
