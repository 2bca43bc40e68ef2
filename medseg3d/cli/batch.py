"""``medseg3d batch``: segment a folder or manifest of scans; resumable and failure-isolated."""

from __future__ import annotations

import argparse
import signal
import sys

HELP = "segment many scans (folder or CSV/JSON manifest); resumable, one bad case never stops it"

EPILOG = """\
exit codes: 0 every case done or skipped; 3 at least one case failed (listed in the report);
1 the batch could not start (bad input, manifest or model; nothing was computed).
Rerun the same command after a crash or kill to resume: valid outputs are skipped."""


def _patch_size(text: str) -> list[int]:
    try:
        return [int(part) for part in text.replace("x", ",").split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give N or N,N,N voxels") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "-i",
        "--input",
        required=True,
        metavar="INPUT",
        help="folder (NIfTI/MHA/NRRD files and DICOM series, found recursively) or a manifest "
        "(.csv/.json: case_id, input, optional series_uid and output)",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT_DIR",
        help="output folder (<case_id>.nii.gz, report.csv, report.json)",
    )
    parser.add_argument(
        "-m",
        "--model",
        required=True,
        action="append",
        metavar="MODEL_DIR",
        help="model folder; repeat for an ensemble (class probabilities averaged, e.g. the folds "
        "of a cross-validation)",
    )
    parser.add_argument(
        "--model-weights",
        type=float,
        nargs="+",
        metavar="W",
        help="ensemble: one weight per -m, in order (normalised to sum 1; default equal)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="local: threads reading/preprocessing ahead of the model (default 2); "
        "ray: number of model replicas (default one per GPU, else one per CPU)",
    )
    parser.add_argument(
        "--worker-type",
        choices=("thread", "process"),
        default="thread",
        help="local: readers as threads (default) or processes (a crash of a native reader on a "
        "malformed file then fails only that case)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:<index>")
    parser.add_argument(
        "--overwrite", action="store_true", help="recompute cases whose output exists"
    )
    parser.add_argument(
        "--shard",
        metavar="I/N",
        help="process only shard I of N (0-based, e.g. --shard $SLURM_ARRAY_TASK_ID/8); "
        "the report is then report-shard<I>of<N>.csv",
    )
    parser.add_argument(
        "--backend", choices=("local", "ray"), default="local", help="where cases run"
    )
    parser.add_argument(
        "--address",
        help="ray: cluster address (e.g. auto or ray://head:10001); default: a local Ray instance",
    )
    parser.add_argument(
        "--overlap", type=float, help="sliding-window overlap in [0, 1) (default: the model's)"
    )
    parser.add_argument("--batch-size", type=int, default=4, help="patches per forward pass")
    parser.add_argument(
        "--patch-size", type=_patch_size, help="inference patch in voxels, e.g. 128 or 96,160,160"
    )
    parser.add_argument(
        "--tta", action="store_true", help="test-time augmentation: average over mirrored inputs"
    )
    parser.add_argument(
        "--largest-component", action="store_true", help="keep the largest component per class"
    )
    parser.add_argument("--fill-holes", action="store_true", help="fill enclosed holes per class")
    parser.add_argument(
        "--save-uncertainty",
        action="store_true",
        help="also write <case>_uncertainty.nii.gz (float32, same grid) beside each mask: the "
        "disagreement of the ensemble's models, or of the mirrored passes with --tta",
    )
    parser.add_argument(
        "--uncertainty",
        choices=("entropy", "variance"),
        default="entropy",
        help="entropy of the mean probabilities in [0, 1] (default), or the variance across "
        "models/passes",
    )
    parser.add_argument(
        "--allow-irregular",
        action="store_true",
        help="read DICOM stacks with missing slices, uneven gaps or gantry tilt by resampling "
        "them onto a regular grid (their masks are on that grid)",
    )
    parser.add_argument(
        "--dicom-seg",
        action="store_true",
        help="also write <case>_seg.dcm beside the mask of each DICOM case: a DICOM SEG "
        "(highdicom) referencing the source series, one segment per label",
    )
    parser.add_argument(
        "--accumulate-dtype",
        choices=("float32", "float16"),
        default="float32",
        help="ensemble: precision of the running probability sums (float16: half the memory)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="check the input and list the cases; compute nothing"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from medseg3d.batch import collect_cases, parse_shard, run_batch
    from medseg3d.inference.model_folder import read_model_yaml

    shard = parse_shard(args.shard) if args.shard else None
    if args.dry_run:
        channels = int(read_model_yaml(args.model[0])["model"]["in_channels"])
        cases = collect_cases(args.input, out_dir=args.output, channels=channels, shard=shard)
        for case in cases:
            print(f"{case.case_id}\t{case.input_text}\t{case.output_name}")
        print(f"{len(cases)} case(s); nothing computed (--dry-run)")
        return 0

    options = {
        "overlap": args.overlap,
        "batch_size": args.batch_size,
        "tta": args.tta,
        "patch_size": args.patch_size,
        "largest_component": args.largest_component,
        "fill_holes": args.fill_holes,
        "weights": args.model_weights,
        "uncertainty": args.uncertainty if args.save_uncertainty else None,
        "dicom_seg": True if args.dicom_seg else None,
        "allow_irregular": True if args.allow_irregular else None,
        "accumulate_dtype": args.accumulate_dtype if len(args.model) > 1 else None,
    }
    options = {key: value for key, value in options.items() if value is not None}

    def on_start(cases, info) -> None:
        where = f" (shard {info['shard']})" if info.get("shard") else ""
        print(
            f"{len(cases)} case(s){where} -> {args.output}; backend {info['backend']}, "
            f"device {info['device']}",
            flush=True,
        )

    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _interrupt)  # Slurm/k8s stop: finish writes, close the report
    try:
        summary = run_batch(
            args.input,
            args.output,
            args.model if len(args.model) > 1 else args.model[0],
            backend=args.backend,
            device=args.device,
            workers=args.workers,
            overwrite=args.overwrite,
            shard=shard,
            address=args.address,
            progress=not args.no_progress,
            worker_type=args.worker_type,
            options=options,
            on_start=on_start,
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    counts = summary.counts
    print(
        f"done {counts['done']}, skipped {counts['skipped']}, failed {counts['failed']} "
        f"of {counts['total']} in {summary.seconds:.1f} s; report: {summary.report_csv}"
    )
    if summary.failed_cases:
        shown = ", ".join(summary.failed_cases[:10])
        more = len(summary.failed_cases) - 10
        print(
            f"failed: {shown}{f' and {more} more' if more > 0 else ''} (errors in the report)",
            file=sys.stderr,
        )
    return summary.exit_code


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
