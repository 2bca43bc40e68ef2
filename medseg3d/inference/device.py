"""Device selection for inference: ``auto``, ``cpu``, ``cuda`` or ``cuda:<index>``.

``auto`` picks the first CUDA device when one is present and the CPU otherwise;
:func:`describe_device` says in words which device was chosen, so the command line can print it.
A device that is asked for by name but is not there is an error, never a silent fallback.
"""

from __future__ import annotations

import logging
import re

import torch

from medseg3d.errors import ConfigError

logger = logging.getLogger(__name__)

DEVICE_CHOICES = "auto, cpu, cuda or cuda:<index>"
_PATTERN = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")


def select_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The ``torch.device`` for ``spec`` (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``…).

    Raises :class:`ConfigError` for an unknown name, for CUDA on a machine without it and for a
    CUDA index that does not exist.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = "auto" if spec is None else str(spec).strip().lower()
    match = _PATTERN.match(text)
    if match is None or (match.group(1) != "cuda" and match.group(2) is not None):
        raise ConfigError(f"--device {spec!r} is not a device; use {DEVICE_CHOICES}")
    kind, index = match.group(1), match.group(2)
    if kind == "auto":
        device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
        logger.debug("device auto -> %s", describe_device(device))
        return device
    if kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"--device {spec}: CUDA is not available on this machine "
            "(no GPU or a CPU-only torch build); use --device cpu or --device auto"
        )
    count = torch.cuda.device_count()
    position = int(index) if index is not None else 0
    if position >= count:
        raise ConfigError(
            f"--device {spec}: there is no CUDA device {position} "
            f"({count} present: cuda:0..cuda:{count - 1})"
        )
    return torch.device("cuda", position)


def describe_device(device: torch.device | str) -> str:
    """``"cuda:0 (NVIDIA H100, 80 GB)"`` or ``"cpu (2 threads)"``: for logs and reports."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        properties = torch.cuda.get_device_properties(index)
        memory_gb = properties.total_memory / 1024**3
        return f"cuda:{index} ({properties.name}, {memory_gb:.0f} GB)"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)
