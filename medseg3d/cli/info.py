"""``medseg3d info PATH [PATH ...]``: a compact report on volumes and DICOM folders.

For each path: shape, dtype, spacing (mm), orientation codes, intensity range, modality and, for
DICOM, the series found. A folder with several series lists them all (and exits non-zero unless
``--series`` picks one). ``--json`` prints one JSON object per line instead.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from medseg3d.errors import MedsegError, MultipleSeriesError
from medseg3d.io.geometry import obliquity_degrees

HELP = "show shape, spacing, orientation, intensity range and DICOM series of volumes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="volume file or DICOM folder")
    parser.add_argument(
        "--series", help="DICOM series to read (UID, UID suffix, number or description)"
    )
    parser.add_argument(
        "--allow-irregular",
        action="store_true",
        help="read DICOM stacks with missing slices, uneven gaps or gantry tilt by resampling",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per path")


def describe(volume) -> dict:
    """The facts ``info`` reports about a loaded Volume (JSON-serialisable)."""
    array = volume.array
    finite = array[np.isfinite(array)] if np.issubdtype(array.dtype, np.floating) else array
    facts = {
        "path": volume.source,
        "format": volume.meta.get("format"),
        "shape": list(volume.spatial_shape),
        "channels": volume.num_channels,
        "dtype": str(array.dtype),
        "spacing_mm": [round(s, 6) for s in volume.spacing],
        "orientation": "".join(volume.orientation),
        "origin_mm": [round(float(v), 4) for v in volume.affine[:3, 3]],
        "affine": [[round(float(v), 6) for v in row] for row in volume.affine],
        "obliquity_deg": round(obliquity_degrees(volume.affine), 3),
        "min": float(finite.min()) if finite.size else None,
        "max": float(finite.max()) if finite.size else None,
        "mean": float(finite.mean()) if finite.size else None,
        "modality": volume.meta.get("modality"),
    }
    if volume.meta.get("format") == "dicom":
        facts["series_uid"] = volume.meta.get("series_uid")
        facts["series_description"] = volume.meta.get("series_description")
        if volume.meta.get("regularized"):
            facts["regularized"] = volume.meta["regularized"]
    if volume.meta.get("is_label"):
        facts["is_label"] = True
    if volume.meta.get("format") == "nifti":
        sform_code, qform_code = volume.meta.get("nifti_codes", (0, 0))
        facts["nifti_sform_code"], facts["nifti_qform_code"] = int(sform_code), int(qform_code)
        if volume.meta.get("nifti_qform"):
            facts["nifti_qform_differs"] = True
    return facts


def _text(facts: dict) -> str:
    spacing = " x ".join(f"{s:.4g}" for s in facts["spacing_mm"])
    shape = " x ".join(map(str, facts["shape"]))
    channels = f" x {facts['channels']} channels" if facts["channels"] > 1 else ""
    lines = [
        f"{facts['path']}",
        f"  format       {facts['format']}{' (label map)' if facts.get('is_label') else ''}",
        f"  shape        {shape}{channels} ({facts['dtype']})",
        f"  spacing      {spacing} mm",
        f"  orientation  {facts['orientation']}   origin {tuple(facts['origin_mm'])} mm (RAS)"
        + (
            f", oblique by {facts['obliquity_deg']:.3g} deg"
            if facts["obliquity_deg"] > 1e-3
            else ""
        ),
        "  affine       " + "\n               ".join(_row(row) for row in facts["affine"][:3]),
        f"  intensity    {facts['min']:.6g} .. {facts['max']:.6g} (mean {facts['mean']:.6g})"
        if facts["min"] is not None
        else "  intensity    (empty)",
        f"  modality     {facts['modality'] or 'unknown'}",
    ]
    if facts.get("series_uid"):
        lines.append(
            f"  series       {facts['series_uid']} ({facts['series_description'] or 'no description'})"
        )
    if facts.get("regularized"):
        lines.append(f"  resampled    {facts['regularized']}")
    if "nifti_sform_code" in facts:
        codes = f"sform code {facts['nifti_sform_code']}, qform code {facts['nifti_qform_code']}"
        if facts.get("nifti_qform_differs"):
            codes += " (the qform differs from the sform: ITK-based tools use the qform)"
        lines.append(f"  nifti        {codes}")
    return "\n".join(lines)


def _row(row: list[float]) -> str:
    return "[" + " ".join(f"{v:>10.4f}" for v in row) + "]"


def _list_series(path: str, json_output: bool) -> None:
    from medseg3d.io import list_dicom_series

    series = list_dicom_series(path)
    if json_output:
        print(
            json.dumps(
                {
                    "path": path,
                    "series": [
                        {
                            "uid": s.uid,
                            "description": s.description,
                            "modality": s.modality,
                            "number": s.number,
                            "slices": s.num_frames,
                        }
                        for s in series
                    ],
                }
            )
        )
        return
    print(f"{path}: {len(series)} DICOM series")
    for info in series:
        number = "-" if info.number is None else info.number
        print(
            f"  #{number:<4} {info.modality or '?':<3} {info.num_frames:>5} slices  {info.description or '(no description)'}  {info.uid}"
        )


def run(args: argparse.Namespace) -> int:
    from medseg3d.io import load_volume

    failures = 0
    for path in args.paths:
        try:
            volume = load_volume(path, series=args.series, allow_irregular=args.allow_irregular)
        except MultipleSeriesError as error:
            _list_series(path, args.json)
            print(f"medseg3d: error: {error}", file=sys.stderr)
            failures += 1
            continue
        except MedsegError as error:
            if len(args.paths) == 1:
                raise
            print(f"medseg3d: error: {error}", file=sys.stderr)
            failures += 1
            continue
        facts = describe(volume)
        print(json.dumps(facts) if args.json else _text(facts))
    return 1 if failures else 0
