"""``LOSSES``: config names -> loss classes, and :func:`build_loss`."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from medseg3d.errors import ConfigError
from medseg3d.registry import Registry

LOSSES: Registry[type[nn.Module]] = Registry("loss")


def loss_options(name: str) -> list[str]:
    """The option names the loss ``name`` accepts (its keyword arguments)."""
    signature = inspect.signature(LOSSES.get(name).__init__)
    return sorted(
        p.name
        for p in signature.parameters.values()
        if p.name != "self" and p.kind is p.KEYWORD_ONLY
    )


def build_loss(name: str, **options: Any) -> nn.Module:
    """Build the loss registered as ``name`` (see ``LOSSES.names()``) with its ``options``.

    >>> build_loss("dice_ce", include_background=False, lambda_ce=0.5)

    Raises :class:`ConfigError` naming an unknown loss, or an unknown option together with the
    allowed ones, or a bad option value.
    """
    cls = LOSSES.get(name)
    allowed = loss_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for loss {name!r}; allowed: {', '.join(allowed)}"
        )
    return cls(**options)
