"""Regenerate the committed sample data (deterministic; a few seconds).

    python sample_data/generate.py                # writes next to this file
    python sample_data/generate.py --output DIR   # somewhere else

Writes ``ct_dataset/`` (MSD layout: 6 training cases, 1 held-out case with its label) and
``dicom_oblique/`` (one oblique CT series) plus ``dicom_oblique_label.nii.gz``. The recipes live
in :mod:`medseg3d.data.sample`, so ``medseg3d demo`` can generate the same data anywhere.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from medseg3d.data.sample import write_sample_dataset, write_sample_dicom

HERE = Path(__file__).resolve().parent


def generate(output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    for name in ("ct_dataset", "dicom_oblique"):  # stale files from older recipes must go
        if (output / name).exists():
            shutil.rmtree(output / name)
    write_sample_dataset(output / "ct_dataset")
    write_sample_dicom(output / "dicom_oblique")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output", type=Path, default=HERE, help="folder to write into (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    generate(args.output)
    print(f"sample data written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
