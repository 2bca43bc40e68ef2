"""``run_batch``: the whole of ``medseg3d batch`` as one function.

>>> summary = run_batch("archive/", "segmentations/", "models/liver", workers=2)
>>> summary.counts            # {'done': 4, 'skipped': 0, 'failed': 1, 'total': 5, 'pending': 0}
>>> summary.exit_code         # 3 when any case failed

Order of work: read the model's description (no weights) -> collect the cases (folder or
manifest) -> check them all, raising one :class:`~medseg3d.errors.BatchInputError` that lists
every problem -> take this shard -> load the model -> run the backend -> report.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from medseg3d.batch.cases import BatchCase, check_cases
from medseg3d.batch.discover import discover_cases
from medseg3d.batch.manifest import is_manifest, read_manifest
from medseg3d.batch.report import BatchReport, CaseResult
from medseg3d.batch.runner import WORKER_TYPES, BatchSummary, run_local
from medseg3d.batch.shards import select_shard
from medseg3d.errors import ConfigError, FileNotFoundMedsegError, OutputError
from medseg3d.io.atomic import ensure_writable_folder

logger = logging.getLogger(__name__)

BACKENDS = ("local", "ray")


def collect_cases(
    source: str | os.PathLike,
    *,
    out_dir: str | os.PathLike | None = None,
    channels: int | None = None,
    shard: tuple[int, int] | None = None,
) -> list[BatchCase]:
    """The checked cases of a folder or manifest (this shard's only, when ``shard=(I, N)``).

    Raises :class:`~medseg3d.errors.BatchInputError` listing every problem at once, before any
    case is processed; the whole input is checked even when only one shard is run.
    """
    source = Path(source).expanduser()
    if not source.exists():
        raise FileNotFoundMedsegError(
            "no such folder or manifest; give a folder of scans or a .csv/.json manifest",
            path=source,
        )
    if source.is_dir():
        exclude = [out_dir] if out_dir is not None else []
        case_list = discover_cases(source, channels=channels, exclude=exclude)
    elif is_manifest(source):
        case_list = read_manifest(source)
    else:
        raise ConfigError(
            f"{source}: -i must be a folder (scanned recursively) or a .csv/.json manifest"
        )
    case_list.cases = [
        BatchCase(
            c.case_id,
            tuple(Path(os.path.abspath(p)) for p in c.inputs),
            c.series,
            c.output,
            c.dicom,
        )
        for c in case_list.cases
    ]
    cases = check_cases(case_list, channels=channels)
    if shard is not None:
        cases = select_shard(cases, *shard)
    return cases


def model_folders(model_dir) -> list[Path]:
    """One model folder, or the folders of an ensemble, as absolute paths."""
    folders = [model_dir] if isinstance(model_dir, (str, os.PathLike)) else list(model_dir)
    if not folders:
        raise ConfigError("no model folder given; pass -m MODEL_DIR (repeat it for an ensemble)")
    return [Path(folder).expanduser().absolute() for folder in folders]


def _model_text(folders: list[Path]) -> str | list[str]:
    return str(folders[0]) if len(folders) == 1 else [str(f) for f in folders]


def report_name(shard: tuple[int, int] | None) -> str:
    """``report``, or ``report-shard<I>of<N>`` so shards sharing a folder never clash."""
    return "report" if shard is None else f"report-shard{shard[0]}of{shard[1]}"


def run_batch(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    model_dir: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    backend: str = "local",
    device: str = "auto",
    workers: int | None = None,
    overwrite: bool = False,
    shard: tuple[int, int] | None = None,
    address: str | None = None,
    progress: bool = False,
    worker_type: str = "thread",
    options: Mapping[str, Any] | None = None,
    on_start: Callable[[list[BatchCase], dict[str, Any]], None] | None = None,
    on_result: Callable[[CaseResult], None] | None = None,
) -> BatchSummary:
    """Segment every case of ``source`` (folder or manifest) into ``out_dir`` with the model in
    ``model_dir`` (or the ensemble of the model folders in a list: their probabilities are
    averaged, as ``medseg3d predict -m A -m B``); writes ``out_dir/report.csv`` and
    ``report.json`` as cases finish.

    Args:
        backend: ``"local"`` (this machine; ``workers`` readers, default 2, threads or with
            ``worker_type="process"`` processes that isolate crashes of native readers) or ``"ray"``
            (``address`` of a cluster, or a local instance; ``workers`` actors, default one per
            GPU or per CPU).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:<i>`` (local backend; Ray actors use the
            GPU Ray gives them).
        overwrite: recompute cases whose output exists and is valid (default: skip them).
        shard: ``(I, N)`` runs only shard I of N (0-based); the report is then
            ``report-shard<I>of<N>.csv``.
        options: ``Predictor`` options: ``weights`` (of an ensemble), ``overlap``,
            ``batch_size``, ``tta``, ``patch_size``, ``largest_component``, ``fill_holes``,
            ``accumulate_dtype``; and ``uncertainty`` (``"entropy"``/``"variance"``: each mask
            gets ``<case>_uncertainty.nii.gz`` beside it; a mask without it is recomputed) and
            ``dicom_seg`` (True: each DICOM case also gets ``<case>_seg.dcm``, a DICOM SEG
            referencing its series; a mask without a complete one is recomputed).
        on_start, on_result: callbacks (the command line prints with them).
    """
    from medseg3d.inference.ensemble import check_members_agree, normalize_weights
    from medseg3d.inference.model_folder import read_model_yaml

    if backend not in BACKENDS:
        raise ConfigError(f"--backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if worker_type not in WORKER_TYPES:
        raise ConfigError(f"--worker-type {worker_type!r} is not one of {', '.join(WORKER_TYPES)}")
    if workers is not None and int(workers) < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    out_dir = Path(out_dir).expanduser().absolute()
    source = Path(source).expanduser().absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError("-o must be a folder, this is a file", path=out_dir)
    model_dirs = model_folders(model_dir)
    descriptions = [read_model_yaml(folder) for folder in model_dirs]
    check_members_agree(list(zip(model_dirs, descriptions)))
    options = dict(options or {})
    normalize_weights(options.get("weights"), len(model_dirs))  # refuse bad weights up front
    description = descriptions[0]
    channels = int(description["model"]["in_channels"])
    cases = collect_cases(source, out_dir=out_dir, channels=channels, shard=shard)
    _refuse_inputs_as_outputs(cases, out_dir)
    labels = {str(k): int(v) for k, v in description["labels"].items()}
    names = [name for name, value in sorted(labels.items(), key=lambda i: i[1]) if value]
    info = {
        "input": str(source),
        "model": _model_text(model_dirs),
        "backend": backend,
        "shard": None if shard is None else f"{shard[0]}/{shard[1]}",
        "overwrite": overwrite,
    }
    report = BatchReport(
        out_dir,
        case_ids=[case.case_id for case in cases],
        labels=names,
        name=report_name(shard),
        info=info,
    )
    with folder_lock(out_dir, report_name(shard)):
        if backend == "ray":
            from medseg3d.batch.ray_backend import run_ray

            if on_start is not None:
                on_start(cases, {**info, "device": "ray workers"})
            return run_ray(
                model_dirs if len(model_dirs) > 1 else model_dirs[0],
                cases,
                out_dir,
                report,
                address=address,
                workers=workers,
                device=device,
                options=options,
                overwrite=overwrite,
                progress=progress,
                on_result=on_result,
            )
        from medseg3d.batch.engine import CaseEngine

        engine = CaseEngine(
            model_dirs if len(model_dirs) > 1 else model_dirs[0], device=device, **options
        )
        report.info.update(settings=engine.settings(), device=engine.device_description)
        if on_start is not None:
            on_start(cases, {**info, "device": engine.device_description})
        return run_local(
            engine,
            cases,
            out_dir,
            report,
            workers=2 if workers is None else workers,
            overwrite=overwrite,
            progress=progress,
            worker_type=worker_type,
            on_result=on_result,
        )


@contextlib.contextmanager
def folder_lock(out_dir: Path, name: str) -> Iterator[None]:
    """Hold ``OUT_DIR/.<name>.lock`` for the run: a second identical batch writing into the same
    folder is refused (shards use distinct report names, so they run side by side). The lock is
    the operating system's (``flock``), so it vanishes with the process, even after ``kill -9``."""
    ensure_writable_folder(out_dir)
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; run one batch per folder
        yield
        return
    path = out_dir / f".{name}.lock"
    with open(path, "a+b", buffering=0) as handle:  # unbuffered: nothing left to fail at close
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().decode("utf-8", "replace").strip() or "another process"
            raise OutputError(
                f"another medseg3d batch ({holder}) is writing into this folder; wait for it, or "
                "give each concurrent run its own --shard",
                path=out_dir,
            ) from None
        with contextlib.suppress(OSError):  # who holds it: a courtesy (a full disk may refuse)
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}".encode())
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _refuse_inputs_as_outputs(cases: list[BatchCase], out_dir: Path) -> None:
    inputs = {path.resolve() for case in cases for path in case.inputs}
    clashes = [case for case in cases if case.output_path(out_dir).resolve() in inputs]
    if clashes:
        names = ", ".join(case.case_id for case in clashes[:5])
        raise OutputError(
            f"outputs would overwrite inputs (cases {names}); choose another output folder",
            path=out_dir,
        )
