"""``medseg3d evaluate --pred PRED --gt GT [-o report.csv]``: score predictions against references.

PRED and GT are two label files, or two folders whose files are matched by case name
(``liver_007_seg.nii.gz`` matches ``liver_007.nii.gz``). Per case and label: Dice, IoU, HD95 and
ASD (mm), volumes (mL); a summary (mean, median, std per label) is printed. A prediction on
another grid than its reference is an error, never silently resampled.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from medseg3d.errors import (
    ConfigError,
    InputFileError,
    MedsegError,
)
from medseg3d.io.atomic import atomic_write_text
from medseg3d.metrics.pairing import check_same_grid, match_cases

HELP = "score predicted label maps against references: Dice, IoU, HD95, ASD, volumes"

COLUMNS = (
    "case",
    "label",
    "value",
    "dice",
    "iou",
    "hd95_mm",
    "asd_mm",
    "volume_pred_ml",
    "volume_gt_ml",
    "volume_diff_ml",
    "volume_rel_diff",
    "voxels_pred",
    "voxels_gt",
    "prediction",
    "reference",
)
_METRIC_COLUMNS = {"hd95_mm": "hd95", "asd_mm": "asd"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, help="predicted label map, or a folder of them")
    parser.add_argument("--gt", required=True, help="reference label map, or a folder of them")
    parser.add_argument(
        "-o", "--output", metavar="CSV", help="write per-case, per-label metrics as CSV"
    )
    parser.add_argument(
        "--json", metavar="FILE", help="write the summary and per-case metrics as JSON"
    )
    parser.add_argument(
        "--labels",
        help="labels to score as name=value[,name=value…] (default: from -m, a dataset.json next "
        "to GT, or every non-zero value found)",
    )
    parser.add_argument(
        "-m", "--model", metavar="MODEL_DIR", help="take label names from this model folder"
    )
    parser.add_argument(
        "--empty-distance",
        help="HD95/ASD in mm when exactly one mask is empty: a number or 'diagonal' "
        "(default: undefined, left out of the summary and counted)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-3,
        help="largest grid difference (mm, at the volume corners) accepted between a prediction "
        "and its reference (default 0.001)",
    )


def run(args: argparse.Namespace) -> int:
    from medseg3d.io import load_volume
    from medseg3d.metrics import aggregate, evaluate_case

    pairs = match_cases(Path(args.pred), Path(args.gt))
    empty_distance = _empty_distance(args.empty_distance)
    names = _label_names(args, Path(args.gt))
    single = len(pairs) == 1 and Path(args.pred).is_file()
    results: dict[str, dict[str, dict[str, Any]]] = {}
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for case, (pred_path, gt_path) in pairs.items():
        try:
            pred, gt = load_volume(pred_path), load_volume(gt_path)
            check_same_grid(pred, gt, pred_path, gt_path, args.tolerance)
            labels = names or _present_labels(pred, gt)
            if not labels:
                labels = {"foreground": 1}
            result = evaluate_case(pred, gt, labels, empty_distance=empty_distance)
        except MedsegError as error:
            if single:
                raise
            problems.append(f"{case}: {error}")
            continue
        results[case] = result
        for name, metrics in result.items():
            rows.append(_row(case, name, labels[name], metrics, pred_path, gt_path))
    if not results:
        for problem in problems:
            print(f"medseg3d: error: {problem}", file=sys.stderr)
        raise InputFileError(f"none of the {len(pairs)} case(s) could be evaluated")

    summary = aggregate(results)
    if args.output:
        atomic_write_text(args.output, _csv(rows))
    if args.json:
        document = {"summary": summary, "cases": results, "problems": problems}
        atomic_write_text(args.json, json.dumps(document, indent=2, default=_json_default) + "\n")
    if len(results) <= 20:
        print(_case_table(rows))
        print()
    print(_summary_table(summary))
    for path in (args.output, args.json):
        if path:
            print(f"wrote {path}")
    if problems:
        for problem in problems:
            print(f"medseg3d: error: {problem}", file=sys.stderr)
        print(
            f"medseg3d: error: {len(problems)} of {len(pairs)} case(s) could not be evaluated",
            file=sys.stderr,
        )
        return 1
    return 0


# --- labels ---------------------------------------------------------------------------------
def _label_names(args: argparse.Namespace, gt: Path) -> dict[str, int] | None:
    if args.labels:
        return _parse_labels(args.labels)
    if args.model:
        from medseg3d.inference.model_folder import read_model_yaml

        labels = read_model_yaml(args.model)["labels"]
        return {name: int(value) for name, value in labels.items() if int(value) != 0}
    folder = gt if gt.is_dir() else gt.parent
    for candidate in (folder / "dataset.json", folder.parent / "dataset.json"):
        if candidate.is_file():
            labels = _dataset_labels(candidate)
            if labels:
                return labels
    return None


def _parse_labels(text: str) -> dict[str, int]:
    labels = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if not value.strip().lstrip("-").isdigit() or not name.strip():
            raise ConfigError(f"--labels {text!r}: write name=value pairs, e.g. liver=1,tumour=2")
        labels[name.strip()] = int(value)
    return labels


def _dataset_labels(path: Path) -> dict[str, int] | None:
    """Labels of an MSD (``{"1": "liver"}``) or nnU-Net v2 (``{"liver": 1}``) dataset.json."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8")).get("labels")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(raw, dict):
        return None
    labels = {}
    for key, value in raw.items():
        if str(key).isdigit():
            labels[str(value)] = int(key)
        elif isinstance(value, int) and not isinstance(value, bool):
            labels[str(key)] = value
    return {name: value for name, value in labels.items() if value != 0} or None


def _present_labels(pred, gt) -> dict[str, int]:
    values = set(np.unique(np.asarray(gt.array)).tolist()) | set(
        np.unique(np.asarray(pred.array)).tolist()
    )
    return {f"label_{int(v)}": int(v) for v in sorted(values) if v != 0}


def _empty_distance(text: str | None) -> float | str | None:
    if text is None or text == "diagonal":
        return text
    try:
        return float(text)
    except ValueError:
        raise ConfigError(
            f"--empty-distance {text!r}: give a distance in mm or 'diagonal'"
        ) from None


# --- output -------------------------------------------------------------------------------------
def _row(case, name, value, metrics, pred_path, gt_path) -> dict[str, Any]:
    row = {
        "case": case,
        "label": name,
        "value": value,
        "prediction": str(pred_path),
        "reference": str(gt_path),
    }
    for column in COLUMNS:
        if column not in row:
            row[column] = metrics.get(_METRIC_COLUMNS.get(column, column))
    return row


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if row[key] is None else _number(row[key]) for key in COLUMNS})
    return buffer.getvalue()


def _number(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _case_table(rows: list[dict[str, Any]]) -> str:
    width = max([len("case")] + [len(row["case"]) for row in rows])
    label_width = max([len("label")] + [len(str(row["label"])) for row in rows])
    lines = [
        f"{'case'.ljust(width)}  {'label'.ljust(label_width)}   dice    iou   hd95 mm  asd mm  pred mL    gt mL"
    ]
    for row in rows:
        lines.append(
            f"{row['case'].ljust(width)}  {str(row['label']).ljust(label_width)}  {_fmt(row['dice']):>5}  "
            f"{_fmt(row['iou']):>5}  {_fmt(row['hd95_mm'], 2):>8}  {_fmt(row['asd_mm'], 2):>6}  "
            f"{_fmt(row['volume_pred_ml'], 2):>7}  {_fmt(row['volume_gt_ml'], 2):>7}"
        )
    return "\n".join(lines)


def _summary_table(summary: dict[str, Any]) -> str:
    lines = [f"summary over {summary['n_cases']} case(s): mean / median / std"]
    labels = summary["labels"]
    width = max([len("label")] + [len(name) for name in labels])
    lines.append(
        f"{'label'.ljust(width)}  {'dice':^20}  {'iou':^20}  {'hd95 mm':^20}  {'asd mm':^20}"
    )
    for name, metrics in labels.items():
        cells = []
        for metric in ("dice", "iou", "hd95", "asd"):
            stats = metrics[metric]
            digits = 3 if metric in ("dice", "iou") else 2
            cell = f"{_fmt(stats['mean'], digits)} / {_fmt(stats['median'], digits)} / {_fmt(stats['std'], digits)}"
            if stats["n_excluded"]:
                cell += f" ({stats['n_excluded']} undef.)"
            cells.append(cell.center(20))
        lines.append(f"{name.ljust(width)}  " + "  ".join(cells))
    mean = summary["mean"]
    lines.append(
        f"{'mean'.ljust(width)}  dice {_fmt(mean['dice'])}  iou {_fmt(mean['iou'])}  hd95 {_fmt(mean['hd95'], 2)} mm  asd {_fmt(mean['asd'], 2)} mm"
    )
    return "\n".join(lines)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
