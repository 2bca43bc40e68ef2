"""One error hierarchy for everything a user can get wrong.

Every user-facing failure raises a :class:`MedsegError` subclass whose message is one line:
the file (or config key) involved, the problem, and where possible the fix. The command line
prints ``medseg3d: error: <message>`` and exits non-zero, without a traceback.
"""

from __future__ import annotations

import os


class MedsegError(Exception):
    """Base class of all medseg3d errors. ``path`` (optional) is prefixed to the message."""

    exit_code = 1

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.message = " ".join(str(message).split())  # always one line
        self.path = None if path is None else str(path)
        super().__init__(self.message if self.path is None else f"{self.path}: {self.message}")


# --- configuration and programming-interface misuse -------------------------------------------
class ConfigError(MedsegError, ValueError):
    """An invalid option, config key or value (names the key and the allowed values)."""


class ShapeError(MedsegError, ValueError):
    """A tensor or array of the wrong shape (e.g. an input size a network cannot take)."""


# --- files and their content -------------------------------------------------------------------
class InputFileError(MedsegError):
    """A problem with an input file or folder."""


class FileNotFoundMedsegError(InputFileError, FileNotFoundError):
    """A path that does not exist."""


class UnreadableFileError(InputFileError):
    """A file that exists but cannot be decoded (truncated, corrupt, wrong format)."""


class DicomError(InputFileError):
    """A DICOM folder or file that cannot be turned into one volume."""


class MultipleSeriesError(DicomError):
    """A DICOM folder holding several series when one was expected."""


class SliceSpacingError(DicomError):
    """Missing slices, non-uniform spacing or a non-orthogonal (tilted) slice stack."""


class InvalidVoxelError(InputFileError):
    """NaN/Inf voxels, or non-integer values where a label map is expected."""


class OutputError(MedsegError):
    """An output that cannot or must not be written (e.g. it would overwrite an input)."""


class CheckpointError(MedsegError):
    """A model folder or checkpoint that is missing, tampered with or of another architecture."""


class DatasetError(MedsegError):
    """A dataset folder with problems; the message lists every problem found."""

    def __init__(self, problems: list[str] | str, path: str | os.PathLike | None = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1:
            text = self.problems[0]
        else:
            text = f"{len(self.problems)} problems: " + "; ".join(self.problems)
        super().__init__(text, path)


class BatchInputError(DatasetError):
    """A batch input folder or manifest with problems (duplicate case ids, missing files, bad
    columns…), found before the batch starts; the message lists every problem found."""
