"""Segment every scan of a folder, resumably, with a per-case report.

    python examples/batch_folder.py --model runs/example_train/model \
        --input sample_data/ct_dataset/imagesTs --out runs/batch

The same as ``medseg3d batch -i INPUT -o OUT -m MODEL``. A second run skips every case whose
output is already there and valid (so an interrupted night run just continues); a case that
fails is reported in ``report.csv`` and does not stop the others.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from medseg3d.batch.api import run_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="model folder")
    parser.add_argument("--input", type=Path, default=Path("sample_data/ct_dataset/imagesTs"))
    parser.add_argument("--out", type=Path, default=Path("runs/batch"))
    parser.add_argument("--workers", type=int, default=2, help="reader threads")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    args = parser.parse_args()

    for attempt in ("first run", "second run (resumes: nothing left to do)"):
        summary = run_batch(
            args.input, args.out, args.model, device=args.device, workers=args.workers
        )
        print(f"{attempt}: {summary.counts} in {summary.seconds:.1f} s")
    with open(summary.report_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            print(f"  {row.get('case_id')}: {row.get('status')} -> {row.get('output')}")
    raise SystemExit(summary.exit_code)


if __name__ == "__main__":
    main()
