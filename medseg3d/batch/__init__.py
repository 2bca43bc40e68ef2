"""``medseg3d batch``: segment an archive of scans, resumable and failure-isolated.

Cases come from a folder (NIfTI files and DICOM series, found recursively) or a CSV/JSON
manifest; the local backend overlaps reading and writing with inference on one model, the Ray
backend spreads cases over model replicas on a cluster. Both skip cases whose output exists and
is valid, record every case (done, skipped, failed with its error) in ``report.csv`` /
``report.json``, and never let one bad case stop the batch.
"""

from medseg3d.batch.api import collect_cases, run_batch
from medseg3d.batch.cases import BatchCase
from medseg3d.batch.discover import discover_cases
from medseg3d.batch.manifest import read_manifest
from medseg3d.batch.report import BatchReport, CaseResult
from medseg3d.batch.runner import EXIT_CASES_FAILED, BatchSummary, run_local
from medseg3d.batch.shards import parse_shard, select_shard

__all__ = [
    "EXIT_CASES_FAILED",
    "BatchCase",
    "BatchReport",
    "BatchSummary",
    "CaseResult",
    "collect_cases",
    "discover_cases",
    "parse_shard",
    "read_manifest",
    "run_batch",
    "run_local",
    "select_shard",
]
