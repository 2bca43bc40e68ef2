"""The local backend: one model, reading ahead in worker threads, writing in the background.

::

    worker threads (N)        this thread (the model)        writer thread(s)
    skip check / read /  -->  sliding-window inference  -->  restore, post-process,
    preprocess case k+1..k+N  of case k                      atomic write, report row

At most ``workers + 1`` prepared cases wait in memory, and at most ``writers + 1`` results wait
to be written, so memory stays bounded however long the batch. The time this thread spends
waiting for a prepared case (or for a free writer) is the model's idle time, reported as
``idle_share``.

Failure isolation: an exception in any stage (corrupt file, wrong modality, out of memory) fails
that case only; it is recorded in the report and the batch goes on. A crash or ``kill -9`` of the
whole process loses only the cases in flight: outputs are atomic, and the next run skips every
case whose output exists and is valid.
"""

from __future__ import annotations

import errno
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    BrokenExecutor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from dataclasses import dataclass, field
from pathlib import Path

from medseg3d.batch.cases import BatchCase
from medseg3d.batch.engine import free_memory, is_out_of_memory
from medseg3d.batch.report import BatchReport, CaseResult
from medseg3d.batch.steps import (
    discard_stale_output,
    done_result,
    failed_result,
    init_worker_process,
    skip_or_prepare,
)
from medseg3d.errors import ConfigError, OutputError
from medseg3d.io.atomic import remove_own_temporaries

logger = logging.getLogger(__name__)

#: Exit code of a batch in which at least one case failed (0: every case done or skipped).
EXIT_CASES_FAILED = 3
WORKER_TYPES = ("thread", "process")


@dataclass
class BatchSummary:
    """Counts per status, wall time (s), model busy/idle time (s), and the report files."""

    counts: dict[str, int]
    seconds: float
    report_csv: Path
    report_json: Path
    model_seconds: float = 0.0
    idle_seconds: float = 0.0
    failed_cases: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_CASES_FAILED if self.counts.get("failed") else 0

    @property
    def idle_share(self) -> float:
        """Share of the model's time spent waiting for input or output (0..1)."""
        total = self.model_seconds + self.idle_seconds
        return self.idle_seconds / total if total > 0 else 0.0

    @property
    def cases_per_minute(self) -> float:
        processed = self.counts.get("done", 0) + self.counts.get("failed", 0)
        return 60.0 * processed / self.seconds if self.seconds > 0 else 0.0


class Progress:
    """A tqdm bar over cases (ETA, counts per status), or nothing when disabled."""

    def __init__(self, total: int, enabled: bool, description: str = "batch"):
        self.bar = None
        self.counts = {"done": 0, "skipped": 0, "failed": 0}
        self._lock = threading.Lock()
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="case", desc=description, dynamic_ncols=True)

    def update(self, result: CaseResult) -> None:
        with self._lock:
            self.counts[result.status] += 1
            if self.bar is not None:
                self.bar.set_postfix(self.counts, refresh=False)
                self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class ReaderPool:
    """Stage 1 in worker threads or processes, with crash isolation for processes.

    When a reader process dies (a segfault in a native reader, the kernel's OOM killer), every
    case then in flight in that pool gets a second try, each alone in a fresh one-process pool,
    so only the case that really crashes the reader is failed.
    """

    def __init__(self, preparer, out_dir: Path, overwrite: bool, workers: int, worker_type: str):
        if worker_type not in WORKER_TYPES:
            raise ConfigError(
                f"--worker-type {worker_type!r} is not one of {', '.join(WORKER_TYPES)}"
            )
        self.preparer, self.out_dir, self.overwrite = preparer, out_dir, overwrite
        self.workers, self.worker_type = workers, worker_type
        self.pool = self._new_pool(workers)
        self.quarantine: dict[Future, ProcessPoolExecutor] = {}

    def _new_pool(self, workers: int):
        if self.worker_type == "thread":
            return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="medseg3d-read")
        return ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=init_worker_process,
            initargs=(1, logging.getLogger("medseg3d").getEffectiveLevel()),
        )

    def submit(self, case: BatchCase, *, retry: bool = False) -> Future:
        if retry:
            alone = self._new_pool(1)
            future = alone.submit(
                skip_or_prepare, self.preparer, case, self.out_dir, self.overwrite
            )
            self.quarantine[future] = alone
            return future
        try:
            return self.pool.submit(
                skip_or_prepare, self.preparer, case, self.out_dir, self.overwrite
            )
        except BrokenExecutor:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self._new_pool(self.workers)
            return self.pool.submit(
                skip_or_prepare, self.preparer, case, self.out_dir, self.overwrite
            )

    def result(self, future: Future, case: BatchCase):
        """The stage's result; None when the reader died and the case gets its second try."""
        alone = self.quarantine.pop(future, None)
        try:
            return future.result()
        except BrokenExecutor as error:
            if alone is None:
                logger.warning("case %s: reader process died; retrying it alone", case.case_id)
                return None
            crash = RuntimeError(
                "the reader process died on this case, twice (a crash in a native reader, or "
                f"killed for memory): {type(error).__name__}"
            )
            return failed_result(case, self.out_dir, crash)
        except Exception as error:  # noqa: BLE001 - e.g. a result that could not be sent back
            return failed_result(case, self.out_dir, error)
        finally:
            if alone is not None:
                alone.shutdown(wait=False)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        for alone in self.quarantine.values():
            alone.shutdown(wait=True, cancel_futures=True)


def prepare_output_folder(cases: Sequence[BatchCase], out_dir: Path, report: BatchReport) -> None:
    """Create the output folders and remove temporaries an interrupted run left for these
    cases' outputs and this report (never those of another shard running beside us)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = [case.output_path(out_dir) for case in cases]
    for folder in {path.parent for path in outputs}:
        folder.mkdir(parents=True, exist_ok=True)
    from medseg3d.batch.engine import dicom_seg_path, uncertainty_path

    sidecars = [side(path) for path in outputs for side in (uncertainty_path, dicom_seg_path)]
    removed = remove_own_temporaries([*outputs, *sidecars, report.csv_path, report.json_path])
    if removed:
        logger.info("removed %d temporary file(s) left by an interrupted run", removed)


#: errno values that mean "the output storage takes nothing more": every next case would fail too.
STORAGE_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def storage_error(error: BaseException) -> OSError | None:
    """The full-disk / quota / file-size error behind ``error`` (its cause chain), or None."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OSError) and error.errno in STORAGE_FULL:
            return error
        error = error.__cause__ or error.__context__
        seen += 1
    return None


def raise_storage_full(error: OSError, out_dir: Path, report: BatchReport) -> None:
    """Stop the batch: the output storage is full. The cases written so far stay valid and a
    rerun (after freeing space) resumes with the rest."""
    counts = report.counts()
    raise OutputError(
        f"the output storage is full ({error.strerror or error}); stopped with "
        f"{counts['done'] + counts['skipped']} case(s) done and {counts['pending']} not run; "
        "free space (or raise the quota) and rerun the same command to resume",
        path=out_dir,
    ) from None


def run_local(
    engine,
    cases: Sequence[BatchCase],
    out_dir: str | os.PathLike,
    report: BatchReport,
    *,
    workers: int = 2,
    writers: int = 1,
    overwrite: bool = False,
    progress: bool = False,
    worker_type: str = "thread",
    on_result: Callable[[CaseResult], None] | None = None,
) -> BatchSummary:
    """Segment ``cases`` with ``engine`` (a :class:`~medseg3d.batch.engine.CaseEngine`) into
    ``out_dir``, recording every case in ``report``.

    ``workers`` threads (``worker_type="thread"``) or processes (``"process"``: a crash of a
    native reader, e.g. a segfault on a malformed DICOM file, then fails only that case) read
    and preprocess ahead and check existing outputs; ``writers`` threads restore and write. Returns a :class:`BatchSummary`; ``summary.exit_code`` is
    :data:`EXIT_CASES_FAILED` when any case failed. ``KeyboardInterrupt`` (Ctrl-C, SIGTERM via
    the CLI) stops the batch after the writes in progress, with the report up to date.
    """
    out_dir = Path(out_dir)
    workers, writers = max(1, int(workers)), max(1, int(writers))
    prepare_output_folder(cases, out_dir, report)
    bar = Progress(len(cases), progress)
    start = time.perf_counter()
    model_seconds = idle_seconds = 0.0

    by_id = {case.case_id: case for case in cases}

    def record(result: CaseResult) -> None:
        if overwrite and result.status == "failed":
            result = discard_stale_output(result, by_id[result.case_id], out_dir)
        report.add(result)
        bar.update(result)
        if on_result is not None:
            on_result(result)

    storage_full: list[OSError] = []  # set by a writer: stop instead of failing every case

    def write(prepared, indices) -> None:
        case = prepared.case
        clock = time.perf_counter()
        try:
            finished = engine.finish(prepared, indices, case.output_path(out_dir))
            result = done_result(case, finished)
        except Exception as error:  # noqa: BLE001 - failure isolation
            seconds = sum(prepared.seconds.values()) + time.perf_counter() - clock
            result = failed_result(case, out_dir, error, seconds)
            full = storage_error(error)
            if full is not None:
                storage_full.append(full)
        record(result)

    readers = ReaderPool(engine.preparer, out_dir, overwrite, workers, worker_type)
    writer_pool = ThreadPoolExecutor(max_workers=writers, thread_name_prefix="medseg3d-write")
    queue = list(cases)
    loading: dict[Future, BatchCase] = {}
    writing: set[Future] = set()
    try:
        while (queue or loading) and not storage_full:
            while queue and len(loading) < workers + 1:
                case = queue.pop(0)
                loading[readers.submit(case)] = case
            clock = time.perf_counter()
            done, _ = wait(set(loading), return_when=FIRST_COMPLETED)
            idle_seconds += time.perf_counter() - clock
            for future in done:
                case = loading.pop(future)
                item = readers.result(future, case)
                if item is None:  # its reader process died: retried once in a fresh pool
                    loading[readers.submit(case, retry=True)] = case
                    continue
                if isinstance(item, CaseResult):
                    record(item)
                    continue
                clock = time.perf_counter()
                try:
                    indices = engine.infer(item)
                except Exception as error:  # noqa: BLE001 - failure isolation (incl. OOM)
                    if is_out_of_memory(error):
                        free_memory(engine.device)
                    record(failed_result(item.case, out_dir, error, sum(item.seconds.values())))
                    continue
                finally:
                    model_seconds += time.perf_counter() - clock
                clock = time.perf_counter()
                while len(writing) > writers:
                    finished, writing = wait(writing, return_when=FIRST_COMPLETED)
                    for written in finished:
                        written.result()
                idle_seconds += time.perf_counter() - clock
                writing.add(writer_pool.submit(write, item, indices))
                del item, indices
        for written in writing:
            written.result()
        if storage_full:
            raise_storage_full(storage_full[0], out_dir, report)
    finally:
        for future in loading:
            future.cancel()
        readers.shutdown()
        writer_pool.shutdown(wait=True)
        bar.close()
        seconds = time.perf_counter() - start
        counts = report.counts()
        report.close(
            seconds=round(seconds, 3),
            model_seconds=round(model_seconds, 3),
            idle_seconds=round(idle_seconds, 3),
            interrupted=counts["pending"] > 0,
        )
    return BatchSummary(
        counts=report.counts(),
        seconds=seconds,
        report_csv=report.csv_path,
        report_json=report.json_path,
        model_seconds=model_seconds,
        idle_seconds=idle_seconds,
        failed_cases=[r.case_id for r in report.results if r.status == "failed"],
    )
