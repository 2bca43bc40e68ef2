"""medseg3d parts in a plain MONAI pipeline: MONAI loads, trains and evaluates; medseg3d supplies
the network, the loss, the augmentation and the sliding-window inferer.

    python examples/monai_pipeline.py --data sample_data/ct_dataset --epochs 20

Nothing here is a medseg3d wrapper around MONAI: ``LoadImaged``/``Orientationd``/``Spacingd``,
``CacheDataset``, ``SupervisedTrainer``, ``SupervisedEvaluator``, ``DeepSupervisionLoss`` and
``MeanDice`` are MONAI's own; the spacing and intensity normalisation come from the medseg3d plan
of the dataset. See docs/monai.md.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from monai.data import CacheDataset, DataLoader, Dataset, load_decathlon_datalist
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import MeanDice, from_engine
from monai.losses import DeepSupervisionLoss
from monai.transforms import (
    AsDiscreted,
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    Orientationd,
    Spacingd,
)
from monai.utils import set_determinism

from medseg3d.data import load_dataset, plan_dataset
from medseg3d.inference import SlidingWindowInferer
from medseg3d.losses import DiceCELoss
from medseg3d.monai import PlanNormalized
from medseg3d.nn import build_model
from medseg3d.transforms import build_training_transforms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("sample_data/ct_dataset"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--patch-size", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    set_determinism(seed=0)
    device = torch.device(args.device)

    plan = plan_dataset(load_dataset(args.data))  # target spacing, normalisation, labels
    num_classes = plan.num_classes
    keys = ["image", "label"]
    deterministic = [
        LoadImaged(keys, image_only=True),
        EnsureChannelFirstd(keys),
        Orientationd(keys, axcodes="RAS"),
        Spacingd(keys, pixdim=plan.target_spacing, mode=(1, "nearest")),
        PlanNormalized("image", plan.normalization),
        EnsureTyped("image", dtype=torch.float32),
    ]
    patch = [args.patch_size] * 3
    augmentation = build_training_transforms(3, patch, elastic_prob=0.0, seed=0)
    datalist = load_decathlon_datalist(
        os.fspath(args.data / "dataset.json"), True, "training", os.fspath(args.data)
    )
    train_data, val_data = datalist[:-1], datalist[-1:]

    # CacheDataset keeps the output of the deterministic steps; augmentation runs every epoch.
    train_set = CacheDataset(train_data, Compose([*deterministic, augmentation]), num_workers=0)
    val_set = Dataset(val_data, Compose(deterministic))
    network = build_model(
        "unet", 3, plan.num_channels, num_classes,
        features=args.features, depth=args.depth, deep_supervision=True,
    ).to(device)  # fmt: skip

    evaluator = SupervisedEvaluator(
        device=device,
        val_data_loader=DataLoader(val_set, batch_size=1, num_workers=0),
        network=network,
        inferer=SlidingWindowInferer(patch, overlap=0.5, batch_size=4),
        postprocessing=AsDiscreted(keys, argmax=(True, False), to_onehot=num_classes),
        key_val_metric={
            "mean_dice": MeanDice(
                include_background=False, output_transform=from_engine(["pred", "label"])
            )
        },
    )
    trainer = SupervisedTrainer(
        device=device,
        max_epochs=args.epochs,
        train_data_loader=DataLoader(train_set, batch_size=2, shuffle=True, num_workers=0),
        network=network,
        optimizer=torch.optim.AdamW(network.parameters(), lr=1e-3, weight_decay=3e-5),
        loss_function=DeepSupervisionLoss(DiceCELoss(include_background=False), weight_mode="exp"),
    )
    trainer.run()
    evaluator.run()
    print(f"trained {trainer.state.iteration} iterations; "
          f"validation mean Dice {evaluator.state.metrics['mean_dice']:.3f} "
          f"({', '.join(name for name, value in plan.labels.items() if value)})")  # fmt: skip


if __name__ == "__main__":
    main()
