"""What every medseg3d network shares: option checks, input-size checks, the common attributes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medseg3d.errors import ConfigError, ShapeError
from medseg3d.nn import layers
from medseg3d.nn.blocks.conv import PADDINGS
from medseg3d.nn.blocks.upsample import UPSAMPLE_MODES
from medseg3d.nn.sizes import VALID_SHRINK, check_input_size, is_valid_input_size


def feature_widths(features: int | Sequence[int], depth: int) -> list[int]:
    """Channel widths per level, ``depth + 1`` of them: ``32 -> [32, 64, 128, 256, 512]``."""
    if isinstance(features, bool) or not isinstance(features, (int, Sequence)):
        raise ConfigError(f"features must be an integer or a list of integers, got {features!r}")
    if isinstance(features, int):
        widths = [features * 2**level for level in range(depth + 1)]
    else:
        widths = list(features)
        if len(widths) != depth + 1:
            raise ConfigError(
                f"features lists one width per level, depth + 1 = {depth + 1} of them; "
                f"got {len(widths)}: {widths}"
            )
    if not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths):
        raise ConfigError(f"features must be positive integers, got {features!r}")
    return widths


class SegmentationNetwork(nn.Module):
    """Base of all medseg3d networks: validated common options and the input-size contract.

    Attributes: ``spatial_dims``, ``in_channels``, ``out_channels``, ``depth``, ``features``
    (widths per level), ``size_divisor`` (``2**depth``), ``padding``, ``deep_supervision``.
    """

    #: voxels one block removes from each spatial size with padding="valid"
    valid_shrink = VALID_SHRINK

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        depth: int,
        features: int | Sequence[int],
        dropout: float,
        upsample: str,
        padding: str,
        deep_supervision: bool,
    ):
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        for key, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key} must be a positive integer, got {value!r}")
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 8:
            raise ConfigError(
                f"depth (number of down-samplings) must be an integer 1..8, got {depth!r}"
            )
        if upsample not in UPSAMPLE_MODES:
            raise ConfigError(
                f"unknown upsample {upsample!r}; choose one of: {', '.join(UPSAMPLE_MODES)}"
            )
        if padding not in PADDINGS:
            raise ConfigError(f"unknown padding {padding!r}; choose one of: {', '.join(PADDINGS)}")
        if not isinstance(deep_supervision, bool):
            raise ConfigError(f"deep_supervision must be true or false, got {deep_supervision!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
            raise ConfigError(f"dropout must be a number in [0, 1), got {dropout!r}")
        layers.dropout(spatial_dims, dropout)  # validates the range
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.depth = depth
        self.features = feature_widths(features, depth)
        self.size_divisor = 2**depth
        self.padding = padding
        self.deep_supervision = deep_supervision
        self.name = type(self).__name__

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`ShapeError` for a tensor this network cannot take (rank, channels, size)."""
        if x.dim() != self.spatial_dims + 2:
            raise ShapeError(
                f"{self.name} expects (B, {self.in_channels}, *spatial) with {self.spatial_dims} "
                f"spatial dims, got a tensor of shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ShapeError(
                f"{self.name} expects {self.in_channels} input channel(s), got {x.shape[1]} "
                f"(input shape {tuple(x.shape)})"
            )
        spatial = tuple(x.shape[2:])
        options = {"model": self.name, "shrink": self.valid_shrink}
        if any(isinstance(size, torch.SymInt) for size in spatial):  # torch.export, dynamic
            check_input_size(spatial, self.depth, self.padding, **options)
            return
        one_voxel = self.padding == "same" and all(s == self.size_divisor for s in spatial)
        if not one_voxel and all(
            is_valid_input_size(s, self.depth, self.padding, self.valid_shrink) for s in spatial
        ):
            return
        # A one-voxel bottleneck breaks instance norm (and batch norm on a batch of one).
        minimum = 2 * self.size_divisor
        failing = layers.norm_failing_on_one_voxel(self._bottleneck(), x.shape[0])
        check_input_size(
            spatial, self.depth, self.padding, suggest_at_least=minimum if failing else 1, **options
        )
        if one_voxel and failing:
            raise ShapeError(
                f"input spatial size {spatial} is too small for {self.name} (depth {self.depth}): "
                f"its bottleneck would be one voxel, which {failing} cannot normalise; make at "
                f"least one spatial size {minimum} (2 * 2**depth) or more"
            )

    def _bottleneck(self) -> nn.Module:
        """The deepest encoder block, the one that sees a single voxel when every size is
        ``2**depth`` (the whole network where there is no :class:`Encoder` ``encoder``)."""
        stages = getattr(getattr(self, "encoder", None), "stages", None)
        return stages[-1] if stages else self

    def output_size(self, input_size: Sequence[int]) -> tuple[int, ...]:
        """Spatial size of the logits for ``input_size`` (equal to it with same padding)."""
        from medseg3d.nn.sizes import valid_output_size

        return tuple(
            valid_output_size(
                tuple(input_size), self.depth, padding=self.padding, shrink=self.valid_shrink
            )
        )

    def num_parameters(self, trainable_only: bool = True) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)
