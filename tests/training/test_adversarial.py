"""The adversarial term: a discriminator that learns, exact resume with it on, and convergence."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medseg3d.data import make_ellipsoid_case
from medseg3d.nn.discriminator import MaskDiscriminator
from medseg3d.training.adversarial import AdversarialTerm, one_hot
from medseg3d.training.checkpoint import load_checkpoint
from medseg3d.training.config import build_config
from medseg3d.training.run import train
from tests.training.conftest import TINY


def _pairs(seed: int, count: int = 8):
    """Real one-hot masks vs. blurred, noisy softmax predictions of the same 2D ellipsoids."""
    images, labels = [], []
    for index in range(count):
        image, label = make_ellipsoid_case((32, 32), seed=seed * 100 + index, num_classes=2)
        images.append(torch.from_numpy(image.array[None]).float())
        labels.append(torch.from_numpy(label.array[None].astype("int64")))
    image, label = torch.stack(images), torch.stack(labels)
    real = one_hot(label, 3)
    generator = torch.Generator().manual_seed(seed)
    logits = 4 * F.avg_pool2d(real, 5, stride=1, padding=2) + torch.randn(real.shape, generator=generator)
    return image, real, torch.softmax(logits, dim=1)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_discriminator_shapes(spatial_dims):
    discriminator = MaskDiscriminator(spatial_dims, 1, 3, features=4, stages=3)
    shape = (2, 1) + (16,) * spatial_dims
    logits = discriminator(torch.randn(shape), torch.rand((2, 3) + (16,) * spatial_dims))
    assert logits.shape == (2,)


def test_discriminator_learns_to_tell_real_from_predicted_masks():
    torch.manual_seed(0)
    term = AdversarialTerm(
        MaskDiscriminator(2, 1, 3, features=8, stages=3),
        num_classes=3, weight=0.1, lr=1e-3, start_iteration=0, device=torch.device("cpu"),
    )
    for step in range(40):
        image, real, fake = _pairs(step % 5)
        term.discriminator_step(image, real, fake)
    term.discriminator.eval()
    image, real, fake = _pairs(seed=99)
    with torch.no_grad():
        correct = (term.discriminator(image, real) > 0).sum() + (term.discriminator(image, fake) <= 0).sum()
    assert correct.item() / (2 * len(image)) > 0.9


def test_generator_term_pushes_predictions_towards_real_masks():
    term = AdversarialTerm(
        MaskDiscriminator(2, 1, 3, features=8, stages=3),
        num_classes=3, weight=1.0, lr=1e-3, start_iteration=5, device=torch.device("cpu"),
    )
    image, real, fake = _pairs(0)
    logits = torch.log(fake).requires_grad_(True)
    assert term.generator_loss(image, None, logits, iteration=4) is None  # not started yet
    loss = term.generator_loss(image, None, [logits], iteration=5)
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert all(p.grad is None for p in term.discriminator.parameters())  # D is not trained by G's loss


def _config(*overrides):
    return build_config(overrides=[
        *TINY, "data.patch_size=16", "data.batch_size=2", "adversarial.enabled=true",
        "adversarial.features=4", *overrides,
    ])


def test_resume_is_exact_with_the_adversarial_term(tmp_path):
    from tests.training.conftest import make_ellipsoid_dataset

    data = make_ellipsoid_dataset(tmp_path / "data", cases=3, shape=(24, 24, 24))
    config = _config("training.iterations=4")
    train(data, tmp_path / "straight", config, progress=False)
    train(data, tmp_path / "split", config, progress=False, stop_after=2)
    train(data, tmp_path / "split", config, progress=False, resume=True)
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["term"]["discriminator"]:
        assert torch.equal(a["term"]["discriminator"][key], b["term"]["discriminator"][key]), key
    assert "d_loss" in a["history"][-1] and "seg_loss" in a["history"][-1]
