"""The tour of the whole toolkit on this CPU in a few minutes (``make demo`` / ``medseg3d demo``).

1. data: the committed sample CT dataset (``sample_data/ct_dataset``) or, when the package runs
   outside the repository, the same dataset generated from its deterministic recipe;
2. training: a small 3D U-Net through exactly the code path of ``medseg3d train``;
3. inference: the held-out, larger scan segmented with sliding windows by a ``Predictor`` (the
   code path of ``medseg3d predict``), written on the scan's exact grid;
4. evaluation: Dice, IoU, HD95, ASD and volumes against the held-out label;
5. outputs in ``OUT``: the mask, a preview PNG and a metrics JSON.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg3d.errors import OutputError
from medseg3d.io import load_volume
from medseg3d.io.atomic import atomic_write_text

logger = logging.getLogger(__name__)

REPO_SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "ct_dataset"
MARKER = ".medseg3d-demo"

#: A small 3D U-Net and a schedule that reach a mean Dice > 0.85 in a few CPU minutes.
DEMO_OVERRIDES = (
    "model.name=unet",
    "model.features=8",
    "model.depth=3",
    # data.patch_size: the plan's (48 x 48 x 40 at 7 x 7 x 6 mm): nearly the whole training field of view
    "data.batch_size=2",
    "data.num_folds=3",
    "data.num_workers=0",
    "optimizer.lr=0.003",
    "training.iterations=300",
    "training.validate_every=100",
    "training.checkpoint_every=100",
)


@dataclass
class DemoResult:
    out_dir: Path
    mask: Path
    preview: Path
    metrics: Path
    mean_dice: float
    summary: dict[str, Any]


def run_demo(
    out_dir: str | os.PathLike = "demo_output",
    *,
    data_dir: str | os.PathLike | None = None,
    iterations: int | None = None,
    device: str = "auto",
    progress: bool = True,
) -> DemoResult:
    """Train, segment, evaluate; returns where everything was written and the mean Dice."""
    from medseg3d.data import load_dataset
    from medseg3d.inference.predictor import Predictor
    from medseg3d.metrics import evaluate_case
    from medseg3d.training.config import build_config
    from medseg3d.training.run import train

    started = time.perf_counter()
    out_dir = _prepare(Path(out_dir))
    data_dir = Path(data_dir) if data_dir else _sample_dataset(out_dir)
    overrides = [*DEMO_OVERRIDES, f"training.device={device}"]
    if iterations is not None:
        overrides.append(f"training.iterations={iterations}")
    config = build_config(overrides=overrides)

    logger.info("training a small 3D U-Net on %s", data_dir)
    result = train(data_dir, out_dir / "run", config, progress=progress)
    trained = time.perf_counter()

    spec = load_dataset(data_dir)
    test_case = spec.test_cases[0] if getattr(spec, "test_cases", None) else None
    image_path, label_path = _held_out(data_dir, test_case)
    predictor = Predictor(result.model_dir, device=device, progress=progress)
    prediction = predictor.predict_case(image_path)
    mask_path = out_dir / f"{_case_name(image_path)}_seg.nii.gz"
    preview_path = out_dir / "preview.png"
    prediction.save(mask_path, preview_path=preview_path, title=f"{_case_name(image_path)}: medseg3d demo")

    truth = load_volume(label_path)
    labels = {name: value for name, value in prediction.names.items() if value != 0}
    scores = evaluate_case(prediction.labels, truth, labels)
    mean_dice = sum(scores[name]["dice"] for name in labels) / len(labels)
    summary = {
        "case": _case_name(image_path),
        "input": str(image_path),
        "mask": str(mask_path),
        "mean_dice": mean_dice,
        "labels": scores,
        "volumes": prediction.volumes,
        "best_validation_dice": result.best_score,
        "device": prediction.device,
        "seconds": {
            "training": round(trained - started, 2),
            "prediction": round(sum(prediction.seconds.values()), 2),
            "total": round(time.perf_counter() - started, 2),
        },
        "model_dir": str(result.model_dir),
    }
    metrics_path = out_dir / "metrics.json"
    atomic_write_text(metrics_path, json.dumps(summary, indent=2, default=_plain) + "\n")
    return DemoResult(out_dir, mask_path, preview_path, metrics_path, mean_dice, summary)


def _prepare(out_dir: Path) -> Path:
    """An empty demo folder; a previous demo's output (marked) is replaced, anything else refused."""
    if out_dir.exists() and any(out_dir.iterdir()):
        if not (out_dir / MARKER).exists():
            raise OutputError("exists and is not a previous demo output; choose another --out", path=out_dir)
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MARKER).write_text("written by medseg3d demo; replaced by the next run\n")
    return out_dir


def _sample_dataset(out_dir: Path) -> Path:
    if (REPO_SAMPLE / "dataset.json").is_file():
        return REPO_SAMPLE
    from medseg3d.data import write_sample_dataset

    logger.info("generating the sample dataset into %s", out_dir / "data")
    return write_sample_dataset(out_dir / "data")


def _held_out(data_dir: Path, test_case) -> tuple[Path, Path]:
    images = sorted((data_dir / "imagesTs").glob("*.nii.gz"))
    for image in images:
        label = data_dir / "labelsTs" / image.name
        if label.is_file():
            return image, label
    raise OutputError("the demo needs a held-out case with its label in imagesTs/ and labelsTs/", path=data_dir)


def _case_name(path: Path) -> str:
    return path.name.removesuffix(".gz").removesuffix(".nii")


def _plain(value):
    return float(value) if hasattr(value, "__float__") else str(value)
