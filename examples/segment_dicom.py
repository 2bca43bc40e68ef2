"""Segment a DICOM study with a trained model; write NIfTI, a DICOM SEG and a preview.

    python examples/segment_dicom.py --model runs/example_train/model \
        --dicom sample_data/dicom_oblique --out runs/dicom_seg

The folder is read as one series (several series: pick one with ``--series UID``; ``medseg3d
info FOLDER`` lists them). The slices are ordered by position, the geometry (also an oblique
one) comes from ImagePositionPatient / ImageOrientationPatient, and the mask is written on the
scan's exact grid: it lines up over the scan in 3D Slicer. See docs/geometry.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medseg3d.inference.predictor import Predictor
from medseg3d.io import load_volume


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="model folder")
    parser.add_argument("--dicom", type=Path, default=Path("sample_data/dicom_oblique"))
    parser.add_argument("--out", type=Path, default=Path("runs/dicom_seg"))
    parser.add_argument("--series", help="SeriesInstanceUID when the folder holds several")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    args = parser.parse_args()

    scan = load_volume(args.dicom, series=args.series)
    spacing = " x ".join(f"{s:.2f}" for s in scan.spacing)
    print(f"read {args.dicom}: {scan.spatial_shape} voxels of {spacing} mm, "
          f"orientation {''.join(scan.orientation)}")  # fmt: skip

    predictor = Predictor(args.model, device=args.device)
    result = predictor.predict_case(scan)
    args.out.mkdir(parents=True, exist_ok=True)
    written = result.save(args.out / "segmentation.nii.gz", preview_path=args.out / "preview.png")
    written += result.save(args.out / "segmentation_seg.dcm", format="dicom-seg")
    for name, volume in result.volumes.items():
        print(f"{name}: {volume['volume_ml']:.1f} mL ({int(volume['voxels'])} voxels)")
    for path in written:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
