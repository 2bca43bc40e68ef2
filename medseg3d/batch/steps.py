"""Per-case steps shared by the local and the Ray backend: skip check, one whole case, cleanup.

Every function here returns a :class:`~medseg3d.batch.report.CaseResult` instead of raising for
a problem with the case, so one bad case never stops a batch.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from medseg3d.batch.cases import BatchCase
from medseg3d.batch.outputs import check_output
from medseg3d.batch.report import CaseResult, error_text

logger = logging.getLogger(__name__)


def skip_result(case: BatchCase, out_dir: str | os.PathLike, preparer) -> CaseResult | None:
    """A ``skipped`` result when the case's output exists and is valid, else None.

    ``preparer``: the run's :class:`~medseg3d.batch.engine.Preparer` (its ``labels``,
    ``uncertainty``, ``dicom_seg`` and ``allow_irregular`` say what a finished case has).
    An output that exists but is not valid (unreadable, other grid) is logged and recomputed;
    so is one without its uncertainty map when ``uncertainty`` maps are asked for, or (for a
    DICOM case) without a complete DICOM SEG of its series when ``dicom_seg`` is. The skipped
    row carries the grid and label volumes measured on the existing output.
    """
    clock = time.perf_counter()
    labels: Mapping[str, int] = preparer.labels
    uncertainty, dicom_seg = preparer.uncertainty, preparer.dicom_seg
    output = case.output_path(out_dir)
    check = check_output(output, case, resampled=preparer.allow_irregular)
    if check.valid and uncertainty:
        reason = _uncertainty_problem(output, check.labels.shape)
        if reason:
            check = type(check)(False, reason)
    if check.valid and dicom_seg and case.dicom:
        reason = _dicom_seg_problem(output, check.labels.shape)
        if reason:
            check = type(check)(False, reason)
    if not check.valid:
        if check.reason != "missing":
            logger.warning("case %s: existing output is recomputed: %s", case.case_id, check.reason)
        return None
    return CaseResult(
        case_id=case.case_id,
        status="skipped",
        input=case.input_text,
        output=str(output),
        seconds=time.perf_counter() - clock,
        shape=check.labels.shape,
        spacing=check.spacing,
        volumes_ml=volumes_ml(check.labels, check.spacing, labels),
    )


def _uncertainty_problem(output: Path, shape: tuple[int, ...]) -> str:
    """Why the uncertainty map beside ``output`` does not count ("" when it does)."""
    import nibabel as nib

    from medseg3d.batch.engine import uncertainty_path

    path = uncertainty_path(output)
    if not path.is_file():
        return f"its uncertainty map {path.name} is missing"
    try:
        found = tuple(nib.load(str(path)).shape)
    except Exception as error:  # noqa: BLE001 - nibabel raises many types for a corrupt file
        return f"its uncertainty map is unreadable ({type(error).__name__})"
    if found != tuple(shape):
        return f"its uncertainty map has shape {found}, the mask {tuple(shape)}"
    return ""


def _dicom_seg_problem(output: Path, shape: tuple[int, ...]) -> str:
    """Why the DICOM SEG beside ``output`` does not count ("" when it does): it must read
    completely and be a Segmentation of the mask's rows and columns."""
    import pydicom

    from medseg3d.batch.engine import dicom_seg_path

    path = dicom_seg_path(output)
    if not path.is_file():
        return f"its DICOM SEG {path.name} is missing"
    try:
        seg = pydicom.dcmread(path)
        frames = seg.pixel_array  # decodes every frame: a truncated file fails here
    except Exception as error:  # noqa: BLE001 - pydicom raises many types for a corrupt file
        return f"its DICOM SEG is unreadable ({type(error).__name__})"
    if seg.get("Modality") != "SEG" or frames.shape[-2:] != (shape[1], shape[0]):
        return f"its DICOM SEG {path.name} is not a segmentation of this mask's grid"
    return ""


def failed_result(case: BatchCase, out_dir: str | os.PathLike, error: BaseException, seconds=None):
    """A ``failed`` result with the error as one line (also logged, with the case id only)."""
    message = error_text(error)
    logger.warning("case %s failed: %s", case.case_id, message)
    return CaseResult(
        case_id=case.case_id,
        status="failed",
        input=case.input_text,
        output="",
        error=message,
        seconds=seconds,
    )


def done_result(case: BatchCase, finished) -> CaseResult:
    """A ``done`` result from a :class:`~medseg3d.batch.engine.FinishedCase`."""
    return CaseResult(
        case_id=case.case_id,
        status="done",
        input=case.input_text,
        output=str(finished.output),
        seconds=sum(finished.seconds.values()),
        shape=finished.shape,
        spacing=finished.spacing,
        volumes_ml=finished.volumes_ml,
    )


def skip_or_prepare(preparer, case: BatchCase, out_dir: str | os.PathLike, overwrite: bool):
    """Stage 1 of the pipeline, for a worker thread or process: a ``skipped`` result for a valid
    existing output, a ``failed`` result for a case that cannot be read, or the
    :class:`~medseg3d.batch.engine.PreparedCase`. Never raises for the case's own problems."""
    clock = time.perf_counter()
    try:
        if not overwrite:
            skipped = skip_result(case, out_dir, preparer)
            if skipped is not None:
                return skipped
        return preparer.prepare(case)
    except Exception as error:  # noqa: BLE001 - failure isolation: any error fails this case only
        return failed_result(case, out_dir, error, time.perf_counter() - clock)


def init_worker_process(threads: int = 1, log_level: int = logging.WARNING) -> None:
    """Initializer of reader processes: few torch threads, so readers leave the CPU to the model;
    Ctrl-C ignored (the parent stops the batch and the pool; a terminal sends SIGINT to the whole
    process group, which would print a traceback per reader); log lines formatted as the
    parent's."""
    import signal

    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(max(1, threads))


def process_case(
    engine,
    case: BatchCase,
    out_dir: str | os.PathLike,
    *,
    overwrite: bool,
    infer_lock=None,
) -> CaseResult:
    """Skip check, then read, infer and write one case in this thread; never raises for the
    case's own problems (returns a ``failed`` result). ``infer_lock`` (a ``threading.Lock``)
    serialises only the inference when several threads share one engine, so one case is read
    or written while another one is inferred."""
    clock = time.perf_counter()
    try:
        if not overwrite:
            skipped = skip_result(case, out_dir, engine.preparer)
            if skipped is not None:
                return skipped
        prepared = engine.prepare(case)
        if infer_lock is None:
            indices = engine.infer(prepared)
        else:
            with infer_lock:
                indices = engine.infer(prepared)
        finished = engine.finish(prepared, indices, case.output_path(out_dir))
        return done_result(case, finished)
    except Exception as error:  # noqa: BLE001 - failure isolation: any error fails this case only
        from medseg3d.batch.engine import free_memory, is_out_of_memory

        if is_out_of_memory(error):
            free_memory(engine.device)
        return failed_result(case, out_dir, error, time.perf_counter() - clock)


def discard_stale_output(result: CaseResult, case: BatchCase, out_dir) -> CaseResult:
    """With ``--overwrite`` a failed case must not leave the previous run's mask behind (a later
    run would skip it as done, a script globbing the folder would take it): remove it and its
    side files, and say so in the error."""
    from medseg3d.batch.engine import dicom_seg_path, uncertainty_path

    output = case.output_path(out_dir)
    removed = False
    for path in (output, uncertainty_path(output), dicom_seg_path(output)):
        try:
            path.unlink()
            removed = True
        except FileNotFoundError:
            pass
        except OSError as error:
            logger.warning("case %s: could not remove the stale %s: %s", case.case_id, path, error)
    if removed:
        result.error = f"{result.error} (its previous output was removed: --overwrite)"
    return result


def volumes_ml(
    labels: np.ndarray, spacing: Iterable[float], names: Mapping[str, int]
) -> dict[str, float]:
    """Volume (mL) of each foreground label of ``names`` in ``labels`` with ``spacing`` (mm)."""
    from medseg3d.inference.postprocess import label_volumes

    measured = label_volumes(np.asarray(labels), tuple(spacing), names)
    return {name: entry["volume_ml"] for name, entry in measured.items()}
