"""``medseg3d predict -i INPUT -o OUTPUT -m MODEL_DIR``: segment one scan with a trained model.

The label map is written on the input's exact grid (same shape and affine), so it lines up with
the scan in 3D Slicer, ITK-SNAP or any PACS viewer. ``-m`` repeated makes an ensemble: the
models' class probabilities are averaged (optionally weighted) before the argmax;
``--save-uncertainty`` writes a map of their disagreement beside the mask.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from medseg3d.errors import ConfigError, FileNotFoundMedsegError, OutputError
from medseg3d.io.atomic import atomic_write_text, ensure_writable_folder

HELP = "segment a scan (NIfTI, DICOM series, MHA/NRRD) with a trained model folder"

FORMATS = ("auto", "nifti", "mha", "nrrd", "dicom-seg")
_LABEL_SUFFIXES = {"nifti": ".nii.gz", "mha": ".mha", "nrrd": ".nrrd", "dicom-seg": ".dcm"}
_INPUT_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr", ".dcm")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-i",
        "--input",
        required=True,
        action="append",
        metavar="INPUT",
        help="NIfTI/MHA/NRRD file or DICOM series folder; repeat for models with several "
        "input channels (in the model's channel order)",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        help="output file (format from the extension), or a folder (then <case>_seg.nii.gz)",
    )
    parser.add_argument(
        "-m",
        "--model",
        required=True,
        action="append",
        metavar="MODEL_DIR",
        help="model folder; repeat for an ensemble (class probabilities averaged, e.g. the folds "
        "of a cross-validation or different architectures with the same labels)",
    )
    parser.add_argument(
        "--model-weights",
        type=float,
        nargs="+",
        metavar="W",
        help="ensemble: one weight per -m, in order, e.g. 0.7 0.3 (normalised; default equal)",
    )
    parser.add_argument(
        "--series",
        help="DICOM series when the folder holds several (UID, series number or description)",
    )
    parser.add_argument(
        "--allow-irregular",
        action="store_true",
        help="read a DICOM stack with missing slices, uneven gaps or gantry tilt by resampling "
        "it onto a regular grid; the mask is written on that grid (NIfTI only)",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="auto",
        help="output format; dicom-seg writes a DICOM SEG referencing the source series "
        "(DICOM input only). Default: from the output extension",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:<index>")
    parser.add_argument(
        "--overlap", type=float, help="sliding-window overlap in [0, 1) (default: the model's)"
    )
    parser.add_argument("--batch-size", type=int, default=4, help="patches per forward pass")
    parser.add_argument(
        "--patch-size",
        type=_size,
        help="inference patch in voxels, e.g. 128 or 96,160,160 (a multiple of the network's divisor)",
    )
    parser.add_argument(
        "--tta", action="store_true", help="test-time augmentation: average over mirrored inputs"
    )
    parser.add_argument(
        "--largest-component", action="store_true", help="keep the largest component per class"
    )
    parser.add_argument("--fill-holes", action="store_true", help="fill enclosed holes per class")
    parser.add_argument(
        "--probabilities",
        action="store_true",
        help="also save class probabilities (float32, one channel per class) as <output>_probabilities",
    )
    parser.add_argument(
        "--save-uncertainty",
        action="store_true",
        help="also save a voxel-wise uncertainty map (float32, same grid) beside the mask as "
        "<case>_uncertainty.nii.gz: the disagreement of the ensemble's models, or of the "
        "mirrored passes with --tta",
    )
    parser.add_argument(
        "--uncertainty",
        choices=("entropy", "variance"),
        default="entropy",
        help="entropy of the mean probabilities, normalised to [0, 1] (default), or the mean "
        "over classes of the variance across models/passes",
    )
    parser.add_argument(
        "--accumulate-dtype",
        choices=("float32", "float16"),
        default="float32",
        help="ensemble: precision of the running probability sums (float16: half the memory)",
    )
    parser.add_argument(
        "--preview", metavar="PNG", help="also write a picture of three slices with the mask"
    )
    parser.add_argument(
        "--json", metavar="FILE", help="write label volumes, timing and device as JSON"
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar over the windows (default: when stderr is a terminal)",
    )


def run(args: argparse.Namespace) -> int:
    from medseg3d.inference.predictor import Predictor

    inputs = [Path(path) for path in args.input]
    for path in inputs:
        if not path.exists():
            raise FileNotFoundMedsegError(
                "input does not exist; give a NIfTI/MHA/NRRD file or a DICOM folder", path=path
            )
    case = case_name(inputs[0])
    output_format, output = _output_path(str(args.output), case, args.format)
    _check_output(output, inputs)
    if (
        output_format == "dicom-seg"
        and not inputs[0].is_dir()
        and not inputs[0].name.lower().endswith(".dcm")
    ):
        raise ConfigError(f"--format dicom-seg needs a DICOM input, got {inputs[0]}")
    if args.preview and not str(args.preview).lower().endswith(".png"):
        raise ConfigError(f"--preview {args.preview}: the preview is a PNG; name it .png")
    extra_outputs = []
    probabilities_path = (
        _sibling(output, "_probabilities", ".nii.gz") if args.probabilities else None
    )
    uncertainty_path = uncertainty_sibling(output) if args.save_uncertainty else None
    for path in (
        probabilities_path,
        uncertainty_path,
        Path(args.preview) if args.preview else None,
        Path(args.json) if args.json else None,
    ):
        if path is not None:
            _check_output(path, inputs)
            extra_outputs.append(path)

    predictor = Predictor(
        args.model if len(args.model) > 1 else args.model[0],
        weights=args.model_weights,
        accumulate_dtype=args.accumulate_dtype,
        device=args.device,
        overlap=args.overlap,
        batch_size=args.batch_size,
        tta=args.tta,
        patch_size=args.patch_size,
        progress=sys.stderr.isatty() if args.progress is None else args.progress,
        largest_component=args.largest_component,
        fill_holes=args.fill_holes,
    )
    for index, member in enumerate(predictor.members):
        weight = f", weight {member.weight:.3g}" if predictor.is_ensemble else ""
        print(f"model  {member.path} ({predictor.describe_model(index)}{weight})")
    print(f"device {predictor.device_description}")
    source = inputs[0] if len(inputs) == 1 else inputs
    result = predictor.predict_case(
        source,
        series=args.series,
        allow_irregular=args.allow_irregular,
        probabilities=args.probabilities,
        uncertainty=args.uncertainty if args.save_uncertainty else None,
    )
    written = result.save(
        output,
        format=output_format,
        probabilities_path=probabilities_path,
        uncertainty_path=uncertainty_path,
        preview_path=args.preview,
        title=case,
    )
    print(f"input  {', '.join(map(str, inputs))}  shape {result.labels.spatial_shape}")
    for path in written:
        print(f"wrote  {path}")
    print(_volume_table(result.volumes))
    seconds = result.seconds
    print(
        f"time   {seconds['total']:.1f} s (inference {seconds['inference']:.1f} s) on {predictor.device_description}"
    )
    if args.json:
        report = {
            "case": case,
            "input": [str(path) for path in inputs],
            "output": str(output),
            "files": [str(path) for path in written],
            "model": str(predictor.model_dir)
            if not predictor.is_ensemble
            else [str(path) for path in predictor.model_dirs],
            "device": predictor.device_description,
            "settings": predictor.settings()
            | {"uncertainty": args.uncertainty if args.save_uncertainty else None},
            "labels": result.volumes,
            "seconds": {key: round(value, 4) for key, value in seconds.items()},
        }
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
        print(f"wrote  {args.json}")
    return 0


def case_name(path: Path) -> str:
    """``/data/liver_007.nii.gz`` -> ``liver_007``; a DICOM folder -> its folder name."""
    name = path.resolve().name if path.is_dir() else path.name
    lower = name.lower()
    for suffix in _INPUT_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _output_path(raw: str, case: str, requested: str) -> tuple[str, Path]:
    """The output format and file for ``-o raw``: a folder (existing, ending in ``/``, or without
    an extension) gets ``<case>_seg.<ext>``; a file name must have a writable extension."""
    output = Path(raw)
    is_folder = output.is_dir() or raw.endswith(("/", os.sep)) or not output.suffix
    if is_folder:
        output_format = "nifti" if requested == "auto" else requested
        return output_format, output / f"{case}_seg{_LABEL_SUFFIXES[output_format]}"
    found = _suffix_format(output)
    if found is None:
        raise ConfigError(
            f"-o {output}: unknown extension; use .nii.gz, .nii, .mha, .nrrd or .dcm (DICOM SEG), "
            "or give a folder"
        )
    if requested not in ("auto", found):
        raise ConfigError(
            f"--format {requested} does not match the output extension of {output} ({found})"
        )
    return found, output


def uncertainty_sibling(output: Path) -> Path:
    """The uncertainty map beside the mask: ``<case>_seg.nii.gz`` -> ``<case>_uncertainty.nii.gz``,
    ``mask.mha`` -> ``mask_uncertainty.nii.gz`` (always NIfTI, float32)."""
    path = _sibling(output, "", "")
    stem = path.name[: -len("_seg")] if path.name.endswith("_seg") else path.name
    return path.with_name(f"{stem}_uncertainty.nii.gz")


def _suffix_format(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith((".nii.gz", ".nii")):
        return "nifti"
    if name.endswith(".mha"):
        return "mha"
    if name.endswith(".nrrd"):
        return "nrrd"
    if name.endswith(".dcm"):
        return "dicom-seg"
    return None


def _sibling(path: Path, tag: str, suffix: str) -> Path:
    name = path.name
    for ending in (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr", ".dcm"):
        if name.lower().endswith(ending):
            name = name[: -len(ending)]
            break
    return path.with_name(name + tag + suffix)


def _check_output(output: Path, inputs: list[Path]) -> None:
    """Refuse an output that is an input, lies inside an input folder, or is a folder."""
    target = output.resolve()
    for source in inputs:
        source = source.resolve()
        if target == source or (source.is_dir() and source in target.parents):
            raise OutputError(
                f"output {output} would overwrite or write into the input {source}; choose another -o",
                path=output,
            )
    if target.is_dir():
        raise OutputError("is a folder; give a file name", path=output)
    ensure_writable_folder(output.parent)  # before the model runs, not after


def _volume_table(volumes: dict[str, dict[str, float]]) -> str:
    if not volumes:
        return "no labels"
    width = max(len(name) for name in volumes)
    lines = [f"{'label'.ljust(width)}  value   volume (mL)   voxels"]
    for name, entry in volumes.items():
        lines.append(
            f"{name.ljust(width)}  {entry['value']:>5}  {entry['volume_ml']:>12.2f}  {entry['voxels']:>7}"
        )
    return "\n".join(lines)


def _size(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.replace("x", ",").split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 128 or 96,160,160") from None
    if not values or any(value <= 0 for value in values):
        raise argparse.ArgumentTypeError(f"{text!r}: sizes must be positive integers")
    return values
