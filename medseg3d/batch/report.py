"""The batch report: ``report.csv`` and ``report.json`` in the output folder, true at every moment.

Both files are rewritten atomically (temporary file + rename) each time a case finishes, so a
batch that is killed half-way leaves a report of exactly the cases that finished (for very large
batches the rewrite is throttled to every few seconds; the outputs themselves are always the
source of truth for resuming). One row per case::

    case_id, status (done | skipped | failed), input, output, error, seconds,
    shape (e.g. 512x512x120), spacing (mm, e.g. 0.78x0.78x2.5), volume_ml_<label> per label

A batch that stopped early (Ctrl-C, SIGTERM, full disk) ends its CSV with one ``not run`` row per
case it never attempted (``report.json``: the list ``not_run``).

Nothing that identifies the patient goes into the report: only the case id, the paths the user
gave, the error message, the grid and the measured volumes. Error messages may name a DICOM
series by its UID and description (e.g. "3 DICOM series found: ..."), because that is what a
manifest's ``series_uid`` column needs; patient names, IDs and birth dates are never read into
them.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from medseg3d.io.atomic import atomic_write_text

logger = logging.getLogger(__name__)

REPORT_FORMAT = "medseg3d-batch-report"
REPORT_VERSION = 1
STATUSES = ("done", "skipped", "failed")
BASE_COLUMNS = ("case_id", "status", "input", "output", "error", "seconds", "shape", "spacing")
#: Rows above which report rewrites are throttled to one per ``THROTTLE_SECONDS``.
THROTTLE_ROWS = 2000
THROTTLE_SECONDS = 5.0
MAX_ERROR_CHARS = 500


@dataclass
class CaseResult:
    """The outcome of one case (also what a Ray worker sends back; plain data only).

    ``seconds`` is the wall time this run spent on the case; ``shape`` is the output grid in
    voxels, ``spacing`` its voxel size in mm, ``volumes_ml`` the volume of each foreground label
    in millilitres.
    """

    case_id: str
    status: str
    input: str = ""
    output: str = ""
    error: str = ""
    seconds: float | None = None
    shape: tuple[int, ...] | None = None
    spacing: tuple[float, ...] | None = None
    volumes_ml: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        self.error = " ".join(str(self.error).split())[:MAX_ERROR_CHARS]
        if self.shape is not None:
            self.shape = tuple(int(v) for v in self.shape)
        if self.spacing is not None:
            self.spacing = tuple(float(v) for v in self.spacing)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["shape"] = list(self.shape) if self.shape is not None else None
        data["spacing"] = list(self.spacing) if self.spacing is not None else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CaseResult:
        known = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
        return cls(**known)


def error_text(error: BaseException) -> str:
    """One line for the report: a medseg3d error's own message, otherwise ``Type: message``."""
    from medseg3d.errors import MedsegError

    if isinstance(error, MedsegError):
        return str(error)
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


class BatchReport:
    """Collects :class:`CaseResult` rows (thread-safe) and keeps ``<name>.csv`` / ``.json``
    in ``folder`` up to date.

    Rows are listed in the order of ``case_ids`` (the batch's case order), whatever the order in
    which cases finish. ``info`` (model, device, backend…) is stored in the JSON.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        case_ids: Sequence[str],
        labels: Iterable[str] = (),
        name: str = "report",
        info: Mapping[str, Any] | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.csv_path = self.folder / f"{name}.csv"
        self.json_path = self.folder / f"{name}.json"
        self.labels = list(labels)
        self.info = dict(info or {})
        self._order = {case_id: index for index, case_id in enumerate(case_ids)}
        self._results: dict[str, CaseResult] = {}
        self._lock = threading.Lock()
        self._last_write = 0.0
        self._started = _now()
        self.finished = False
        #: the last error writing the report files (None once a write succeeds again)
        self.write_error: OSError | None = None

    # --- collecting --------------------------------------------------------------------------
    def add(self, result: CaseResult) -> None:
        """Record a finished case and rewrite the report files."""
        with self._lock:
            self._results[result.case_id] = result
            self._write(force=len(self._results) <= THROTTLE_ROWS)

    def close(self, **info: Any) -> None:
        """Mark the batch finished (or stopped), store ``info`` and write the final report."""
        with self._lock:
            self.info.update(info)
            self.finished = True
            self._write(force=True)

    def flush(self) -> None:
        with self._lock:
            self._write(force=True)

    @property
    def results(self) -> list[CaseResult]:
        with self._lock:
            return self._ordered()

    def counts(self) -> dict[str, int]:
        with self._lock:
            counts = {status: 0 for status in STATUSES}
            for result in self._results.values():
                counts[result.status] += 1
            counts["total"] = len(self._order)
            counts["pending"] = len(self._order) - len(self._results)
            return counts

    # --- writing -----------------------------------------------------------------------------
    def _ordered(self) -> list[CaseResult]:
        end = len(self._order)
        return sorted(self._results.values(), key=lambda r: self._order.get(r.case_id, end))

    def _write(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_write < THROTTLE_SECONDS:
            return
        rows = self._ordered()
        counts = {status: sum(r.status == status for r in rows) for status in STATUSES}
        counts["total"] = len(self._order)
        counts["pending"] = len(self._order) - len(rows)
        # a stopped batch lists the cases it never ran, so the CSV alone tells what is missing
        not_run = [c for c in self._order if c not in self._results] if self.finished else []
        document = {
            "format": REPORT_FORMAT,
            "version": REPORT_VERSION,
            "started": self._started,
            "updated": _now(),
            "finished": self.finished,
            "counts": counts,
            "labels": self.labels,
            **_plain(self.info),
            "cases": [row.to_dict() for row in rows],
        }
        if not_run:
            document["not_run"] = not_run
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.csv_path, render_csv(rows, self.labels, not_run=not_run))
            atomic_write_text(self.json_path, json.dumps(document, indent=1) + "\n")
        except OSError as error:  # full disk, quota, share gone: keep the rows, retry next time
            if self.write_error is None:
                logger.error(
                    "the report cannot be written (%s); it is kept in memory and written again "
                    "with the next case",
                    error.strerror or error,
                )
            self.write_error = error
            return
        self.write_error = None
        self._last_write = now


def render_csv(
    rows: Sequence[CaseResult], labels: Sequence[str], *, not_run: Sequence[str] = ()
) -> str:
    """The CSV text of ``rows``: :data:`BASE_COLUMNS` then ``volume_ml_<label>`` per label; the
    ids in ``not_run`` (a stopped batch's cases never attempted) follow with status
    ``not run``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*BASE_COLUMNS, *(f"volume_ml_{label}" for label in labels)])
    for row in rows:
        writer.writerow(
            [
                row.case_id,
                row.status,
                row.input,
                row.output,
                row.error,
                "" if row.seconds is None else f"{row.seconds:.3f}",
                "" if row.shape is None else "x".join(str(v) for v in row.shape),
                "" if row.spacing is None else "x".join(f"{v:.6g}" for v in row.spacing),
                *(_volume(row, label) for label in labels),
            ]
        )
    for case_id in not_run:
        writer.writerow([case_id, "not run", *[""] * (len(BASE_COLUMNS) - 2 + len(labels))])
    return buffer.getvalue()


def read_report(path: str | os.PathLike) -> dict[str, Any]:
    """A report JSON as a dict, with ``cases`` as :class:`CaseResult` objects."""
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    document["cases"] = [CaseResult.from_dict(case) for case in document.get("cases", [])]
    return document


def _volume(row: CaseResult, label: str) -> str:
    value = row.volumes_ml.get(label)
    return "" if value is None else f"{value:.4f}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
