"""``medseg3d convert IN OUT``: DICOM / MHA / NRRD / NIfTI -> NIfTI (or MHA/NRRD), geometry kept.

The output is written atomically (temporary name, then rename) and never over the input.
"""

from __future__ import annotations

import argparse

from medseg3d.errors import OutputError

HELP = "convert a DICOM series, MHA or NRRD volume to NIfTI (.nii.gz) with its exact geometry"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="IN", help="volume file or DICOM folder")
    parser.add_argument(
        "output", metavar="OUT", help="output file: .nii.gz (default format), .nii, .mha or .nrrd"
    )
    parser.add_argument(
        "--series", help="DICOM series to convert (UID, UID suffix, number or description)"
    )
    parser.add_argument(
        "--allow-irregular",
        action="store_true",
        help="convert DICOM stacks with missing slices, uneven gaps or gantry tilt by resampling",
    )
    parser.add_argument(
        "--label", action="store_true", help="store as a label map (integer, NIfTI intent LABEL)"
    )
    parser.add_argument("--dtype", help="storage dtype, e.g. int16, float32, uint8")
    parser.add_argument(
        "--reorient",
        metavar="CODES",
        help="reorient first, e.g. RAS or LPS (voxels permuted, no interpolation)",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from medseg3d.io import load_volume, reorient, save_volume

    source, target = Path(args.input), Path(args.output)
    if target.exists() and source.exists() and target.resolve() == source.resolve():
        raise OutputError(
            "refusing to overwrite the input; choose another output path", path=target
        )
    if (
        source.is_dir()
        and source.resolve() in target.resolve().parents
        and target.suffix.lower() == ".dcm"
    ):
        raise OutputError(
            "refusing to write a .dcm file inside the input DICOM folder", path=target
        )
    volume = load_volume(source, series=args.series, allow_irregular=args.allow_irregular)
    if args.reorient:
        volume = reorient(volume, args.reorient.upper())
    written = save_volume(volume, target, dtype=args.dtype, is_label=True if args.label else None)
    shape = " x ".join(map(str, volume.array.shape))
    spacing = " x ".join(f"{s:.4g}" for s in volume.spacing)
    print(f"wrote {written} ({shape}, {spacing} mm, {''.join(volume.orientation)})")
    return 0
