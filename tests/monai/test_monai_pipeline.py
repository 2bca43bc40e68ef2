"""medseg3d networks, losses, transforms and inferer inside unmodified MONAI code (no mocks).

A real ``SupervisedTrainer`` run on NIfTI files read by ``LoadImaged``, a ``CacheDataset``
that caches up to our first random transform, MONAI's ``DeepSupervisionLoss`` around our loss
and our deep-supervision outputs, and a real ``SupervisedEvaluator`` with our
``SlidingWindowInferer`` and MONAI's Dice metric.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.data import CacheDataset, DataLoader, Dataset, decollate_batch
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import MeanDice, from_engine
from monai.losses import DeepSupervisionLoss as MonaiDeepSupervisionLoss
from monai.metrics import DiceMetric
from monai.transforms import (
    AsDiscrete,
    AsDiscreted,
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    Orientationd,
    Spacingd,
)
from monai.transforms.transform import RandomizableTrait, Transform

from medseg3d.inference import SlidingWindowInferer
from medseg3d.losses import DeepSupervisionLoss as OurDeepSupervisionLoss
from medseg3d.losses import DiceCELoss
from medseg3d.metrics import dice as dice_score
from medseg3d.nn import build_model
from medseg3d.transforms import RandFlipd, RandForegroundPatchd, RandGammad, ZScoreNonzerod

PATCH = (16, 16, 16)
SPACING = (2.0, 2.0, 2.0)


def _deterministic() -> list:
    return [
        LoadImaged(keys=["image", "label"], image_only=True),
        EnsureChannelFirstd(keys=["image", "label"]),
        Orientationd(keys=["image", "label"], axcodes="RAS"),
        Spacingd(keys=["image", "label"], pixdim=SPACING, mode=(1, "nearest")),
        ZScoreNonzerod(keys="image"),
    ]


def _training_transforms() -> Compose:
    return Compose(
        [
            *_deterministic(),
            RandForegroundPatchd(["image", "label"], PATCH, foreground_probability=0.5),
            RandFlipd(["image", "label"], prob=0.5),
            RandGammad("image", prob=0.3),
            EnsureTyped(keys="image", dtype=torch.float32),
        ]
    ).set_random_state(seed=0)


def _datalist(folder) -> list[dict]:
    info = json.loads((folder / "dataset.json").read_text())
    return [
        {"image": str(folder / item["image"]), "label": str(folder / item["label"])}
        for item in info["training"]
    ]


def _network(deep_supervision: bool = True):
    torch.manual_seed(0)
    return build_model("unet", 3, 1, 3, features=4, depth=2, deep_supervision=deep_supervision)


def test_cache_dataset_caches_up_to_our_first_random_transform(nifti_dataset):
    transforms = _training_transforms()
    first_random = transforms.get_index_of_first(
        lambda t: isinstance(t, RandomizableTrait) or not isinstance(t, Transform)
    )
    assert isinstance(transforms.transforms[first_random], RandForegroundPatchd)
    assert isinstance(transforms.transforms[first_random - 1], ZScoreNonzerod)

    dataset = CacheDataset(_datalist(nifti_dataset), transforms, cache_rate=1.0, num_workers=0)
    cached = dataset._cache[0]  # what MONAI keeps: the output of the deterministic prefix
    image = cached["image"]
    assert tuple(image.shape) == (1, 18, 18, 20)  # 24x24x20 of 1.5x1.5x2 mm on a 2 mm grid
    foreground = image[image != 0]
    assert abs(float(foreground.mean())) < 1e-4 and abs(float(foreground.std()) - 1) < 1e-2
    assert np.allclose(np.diag(image.affine.numpy())[:3], SPACING)  # RAS, 2 mm
    sample = dataset[0]
    assert tuple(sample["image"].shape) == (1, *PATCH) and sample["image"].dtype == torch.float32
    assert tuple(sample["label"].shape) == (1, *PATCH)


def test_supervised_trainer_with_our_network_loss_and_transforms(nifti_dataset):
    dataset = CacheDataset(_datalist(nifti_dataset), _training_transforms(), num_workers=0)
    loader = DataLoader(dataset, batch_size=2, shuffle=False, num_workers=0)
    network = _network(deep_supervision=True)
    before = [p.detach().clone() for p in network.parameters()]
    # MONAI's DeepSupervisionLoss around our Dice+CE, fed our list of outputs.
    loss_function = MonaiDeepSupervisionLoss(
        DiceCELoss(include_background=False), weight_mode="exp"
    )
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=loader,
        network=network,
        optimizer=torch.optim.Adam(network.parameters(), lr=1e-2),
        loss_function=loss_function,
    )
    trainer.run()
    assert trainer.state.iteration == 2  # 3 cases, batches of 2
    assert np.isfinite(float(trainer.state.output[0]["loss"]))
    assert any(not torch.equal(a, b) for a, b in zip(before, network.parameters()))


def test_monai_and_our_deep_supervision_losses_take_our_outputs():
    network = _network(deep_supervision=True).train()
    outputs = network(torch.randn(2, 1, *PATCH))
    assert isinstance(outputs, list) and [tuple(o.shape[2:]) for o in outputs] == [PATCH, (8,) * 3]
    target = torch.randint(0, 3, (2, 1, *PATCH)).float()  # labels as MONAI loaders give them
    base = DiceCELoss(include_background=False)
    monai_value = MonaiDeepSupervisionLoss(base, weight_mode="exp")(outputs, target)
    ours = OurDeepSupervisionLoss(base, weights=[1.0, 0.5])(outputs, target)
    assert torch.isfinite(monai_value) and torch.isfinite(ours)
    # MONAI: sum of 0.5**level-weighted losses at each level, the target resized nearest-exact.
    half = torch.nn.functional.interpolate(target, size=(8, 8, 8), mode="nearest-exact")
    expected = base(outputs[0], target) + 0.5 * base(outputs[1], half)
    torch.testing.assert_close(monai_value, expected)
    monai_value.backward()
    assert all(p.grad is not None for p in network.parameters() if p.requires_grad)


def test_supervised_evaluator_with_our_inferer_and_dice_metric(nifti_dataset):
    validation = Dataset(_datalist(nifti_dataset)[:2], Compose(_deterministic()))
    loader = DataLoader(validation, batch_size=1, num_workers=0)
    network = _network(deep_supervision=True)
    inferer = SlidingWindowInferer(PATCH, overlap=0.25, batch_size=2)
    post = Compose(
        [
            AsDiscreted(keys="pred", argmax=True, to_onehot=3),
            AsDiscreted(keys="label", to_onehot=3),
        ]
    )
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=loader,
        network=network,
        inferer=inferer,
        postprocessing=post,
        key_val_metric={
            "mean_dice": MeanDice(
                include_background=False, output_transform=from_engine(["pred", "label"])
            )
        },
    )
    evaluator.run()
    mean_dice = evaluator.state.metrics["mean_dice"]
    assert 0.0 <= mean_dice <= 1.0
    assert inferer.last_stats is not None and inferer.last_stats.windows > 0

    # The same inferer output scored by DiceMetric directly agrees with medseg3d.metrics.dice.
    batch = next(iter(loader))
    network.eval()  # one tensor out, not the deep-supervision list
    with torch.no_grad():
        logits = inferer(batch["image"], network)
    assert tuple(logits.shape) == (1, 3, *batch["image"].shape[2:])
    labels = logits.argmax(1, keepdim=True)
    onehot = AsDiscrete(to_onehot=3)
    metric = DiceMetric(include_background=False, reduction="none", ignore_empty=False)
    metric(
        [onehot(p) for p in decollate_batch(labels)],
        [onehot(y) for y in decollate_batch(batch["label"])],
    )
    monai_dice = metric.aggregate().numpy()[0]
    ours = [
        dice_score(labels[0, 0].numpy() == k, batch["label"][0, 0].numpy() == k) for k in (1, 2)
    ]
    np.testing.assert_allclose(monai_dice, ours, atol=1e-6)


@pytest.mark.parametrize("output", ["probabilities", "labels"])
def test_inferer_outputs_feed_monai_post_transforms(output):
    network = _network(deep_supervision=False).eval()
    image = torch.randn(1, 1, 20, 24, 18)
    inferer = SlidingWindowInferer(PATCH, overlap=0.5, output=output)
    with torch.no_grad():
        result = inferer(image, network)
    channels = 3 if output == "probabilities" else 1
    assert tuple(result.shape) == (1, channels, 20, 24, 18)
    if output == "probabilities":
        torch.testing.assert_close(result.sum(1), torch.ones(1, 20, 24, 18), atol=1e-4, rtol=0)
