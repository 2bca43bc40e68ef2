"""A scan's input channels: files (or Volumes) in, one single-channel Volume per model channel.

Shared by :meth:`~medseg3d.inference.predictor.Predictor.read` and ``medseg3d batch``'s reader,
so both accept the same inputs: one file per channel, or one multi-channel (4D) file; a DICOM
folder with ``series`` picking one series.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from medseg3d.errors import ShapeError
from medseg3d.io.volume import Volume

Source = str | os.PathLike | Volume


def read_channels(
    sources: Sequence[Source],
    in_channels: int,
    channel_names: Sequence[str],
    *,
    series: str | None = None,
    allow_irregular: bool = False,
) -> list[Volume]:
    """One single-channel Volume per model input channel; 4D inputs are split into channels.

    Files are read with :func:`medseg3d.io.load_volume` (which refuses NaN/Inf voxels); Volumes
    given directly are checked the same way. Raises :class:`ShapeError` when the number of
    channels is not the model's.
    """
    from medseg3d.io import check_finite, load_volume

    volumes: list[Volume] = []
    for source in sources:
        if isinstance(source, Volume):
            check_finite(source)
            volume = source
        else:
            volume = load_volume(source, series=series, allow_irregular=allow_irregular)
        if volume.has_channels:
            volumes += [volume.with_array(volume.array[..., c]) for c in range(volume.num_channels)]
        else:
            volumes.append(volume)
    if len(volumes) != in_channels:
        raise ShapeError(
            f"the model takes {in_channels} input channel(s) ({', '.join(channel_names)}) but "
            f"{len(volumes)} were given; give one image per channel or a multi-channel (4D) file"
        )
    return volumes
