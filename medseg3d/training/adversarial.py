"""The optional adversarial term (SegAN / Luc et al. 2016), switched on with ``adversarial.enabled``.

Each iteration, after the segmentation network's forward pass:

1. generator: the segmentation loss gets ``adversarial.weight * BCE(D(image, softmax), real)``,
   pushing predictions to look like ground-truth masks to the discriminator ``D``;
2. the network's optimizer step;
3. discriminator: one step of its own optimizer on ``BCE(D(image, one_hot(label)), real) +
   BCE(D(image, softmax.detach()), fake)``.

``D``, its optimizer and its grad scaler are part of the checkpoint, so ``--resume`` stays exact.
Mixed precision on CUDA follows ``training.amp`` as for the network.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
import torch.nn.functional as F

from medseg3d.nn.discriminator import MaskDiscriminator
from medseg3d.training.trainer import amp_settings


def full_resolution(output: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    return output[0] if isinstance(output, (list, tuple)) else output


def one_hot(label: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(B, 1, *spatial)`` integer labels -> ``(B, num_classes, *spatial)`` float one-hot."""
    return F.one_hot(label[:, 0].long(), num_classes).movedim(-1, 1).float()


class AdversarialTerm:
    """Owns the discriminator, its optimizer and scaler; plugs into :class:`Trainer` as a term."""

    def __init__(
        self,
        discriminator: MaskDiscriminator,
        *,
        num_classes: int,
        weight: float,
        lr: float,
        start_iteration: int,
        device: torch.device,
        amp: str = "off",
    ):
        self.discriminator = discriminator.to(device)
        self.num_classes = num_classes
        self.weight = float(weight)
        self.start_iteration = int(start_iteration)
        self.device = device
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=(0.5, 0.999))
        self.autocast_dtype, use_scaler = amp_settings(device, amp)
        self.scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)

    @classmethod
    def from_config(cls, config: dict[str, Any], plan, patch_size, device: torch.device) -> AdversarialTerm:
        """The term for ``config``; up to 4 stride-2 stages, leaving >= 4 voxels per axis."""
        section = config["adversarial"]
        stages = max(1, min(4, int(math.log2(min(patch_size))) - 2))
        discriminator = MaskDiscriminator(
            plan.spatial_dims, plan.num_channels, plan.num_classes, features=section["features"], stages=stages
        )
        return cls(
            discriminator,
            num_classes=plan.num_classes,
            weight=section["weight"],
            lr=section["lr"],
            start_iteration=section["start_iteration"],
            device=device,
            amp=config["training"]["amp"],
        )

    def active(self, iteration: int) -> bool:
        return iteration >= self.start_iteration

    def generator_loss(self, image, label, output, iteration: int) -> torch.Tensor | None:
        if not self.active(iteration) or self.weight == 0:
            return None
        probabilities = torch.softmax(full_resolution(output).float(), dim=1)
        self.discriminator.requires_grad_(False)
        try:
            logits = self.discriminator(image, probabilities)
        finally:
            self.discriminator.requires_grad_(True)
        fooled = F.binary_cross_entropy_with_logits(logits.float(), torch.ones_like(logits, dtype=torch.float32))
        return self.weight * fooled

    def after_step(self, image, label, output, iteration: int) -> dict[str, float]:
        if not self.active(iteration):
            return {}
        with torch.no_grad():
            fake = torch.softmax(full_resolution(output).detach().float(), dim=1)
        real = one_hot(label, self.num_classes)
        loss, accuracy = self.discriminator_step(image.detach(), real, fake)
        return {"d_loss": loss, "d_accuracy": accuracy}

    def discriminator_step(self, image, real: torch.Tensor, fake: torch.Tensor) -> tuple[float, float]:
        """One optimizer step of the discriminator; returns its loss and accuracy."""
        self.discriminator.train()
        self.optimizer.zero_grad(set_to_none=True)
        autocast = (
            torch.autocast(self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with autocast:
            logits_real = self.discriminator(image, real).float()
            logits_fake = self.discriminator(image, fake).float()
        loss = F.binary_cross_entropy_with_logits(
            logits_real, torch.ones_like(logits_real)
        ) + F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake))
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        correct = (logits_real > 0).float().sum() + (logits_fake <= 0).float().sum()
        accuracy = float(correct) / (2 * logits_real.numel())
        return float(loss.detach()), accuracy

    def state_dict(self) -> dict[str, Any]:
        return {
            "discriminator": self.discriminator.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
