"""Atomic writes: a crash, ``kill -9`` or power loss never leaves a half-written output.

Each write goes to a file with the destination's own name inside a fresh hidden folder beside
the destination (``.medseg3d-tmp-<name>-XXXXXXXX/<name>``); the file is flushed to disk and
``os.replace``-d onto the final name (atomic within one file system), then the folder is
removed. So:

- writers that choose their format by extension (nibabel, SimpleITK, pydicom, matplotlib)
  see the real extension;
- what an interrupted write leaves behind is a hidden *folder*: ``glob("*.nii.gz")`` on the
  output folder, a viewer opening the folder, or a later batch never mistakes a partial file
  for an output;
- a resumed run can tell exactly which destination a leftover belonged to (its folder name
  starts with the destination's name) and remove only its own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from medseg3d.errors import OutputError

TEMP_MARK = ".medseg3d-tmp-"
_RANDOM_CHARS = 8  # what tempfile.mkdtemp appends to the prefix


def ensure_writable_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` (and its parents) and make sure a file can be written in it, or raise
    :class:`~medseg3d.errors.OutputError` with the reason (a file in the way, read-only share,
    permissions, full disk). Commands call it before any long computation."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        blocker = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            reason = f"{blocker} is a file, not a folder"
        raise OutputError(
            f"cannot write here ({reason}); choose another output", path=folder
        ) from None
    return folder


def temporary_path(path: str | os.PathLike, *, suffix: str | None = None) -> Path:
    """Create the hidden folder for one write of ``path`` and return the file path inside it.

    The file itself does not exist yet. ``suffix`` replaces the destination's extension for
    the temporary file only (for writers that need a particular one).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f"{TEMP_MARK}{path.name}-", dir=path.parent))
    except OSError as error:
        raise OutputError(
            f"cannot write here ({error.strerror or type(error).__name__}); choose another output",
            path=path,
        ) from error
    name = path.name
    if suffix is not None:
        name = name[: len(name) - len(_full_suffix(path))] + suffix
    return folder / name


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed onto ``path``.

    On error the temporary is removed and ``path`` is untouched.
    """
    path = Path(path)
    temp = temporary_path(path, suffix=suffix)
    try:
        yield temp
        _fsync(temp)
        os.replace(temp, path)
        _fsync_dir(path.parent)
    finally:
        shutil.rmtree(temp.parent, ignore_errors=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as temp:
        temp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def temporaries(folder: str | os.PathLike) -> list[Path]:
    """What interrupted writes left in ``folder`` (empty when every write finished)."""
    try:
        return sorted(Path(folder).glob(f"{TEMP_MARK}*"))
    except OSError:
        return []


def remove_stale_temporaries(folder: str | os.PathLike, *, older_than: float | None = None) -> int:
    """Delete what interrupted writes left in ``folder``; returns how many were removed.

    ``older_than`` (seconds) spares temporaries touched more recently, i.e. the writes in
    progress of another process sharing the folder.
    """
    now = time.time()
    count = 0
    for temp in temporaries(folder):
        with contextlib.suppress(OSError):
            if older_than is not None and now - temp.stat().st_mtime <= older_than:
                continue
            _remove(temp)
            count += 1
    return count


def remove_own_temporaries(paths: Iterable[str | os.PathLike]) -> int:
    """Delete the leftovers of interrupted writes of exactly these destination ``paths``.

    Only temporaries made for these destinations are removed, so processes writing other
    files into the same folder at the same time never lose a write in progress.
    Returns how many were removed.
    """
    wanted: dict[Path, set[str]] = {}
    for path in map(Path, paths):
        wanted.setdefault(path.parent, set()).add(path.name)
    removed = 0
    for folder, names in wanted.items():
        for temp in temporaries(folder):
            owner = temp.name[len(TEMP_MARK) : len(temp.name) - _RANDOM_CHARS - 1]
            if owner in names and temp.name[len(TEMP_MARK) + len(owner)] == "-":
                with contextlib.suppress(OSError):
                    _remove(temp)
                    removed += 1
    return removed


def _remove(temp: Path) -> None:
    if temp.is_dir() and not temp.is_symlink():
        shutil.rmtree(temp)
    else:  # a file left by an older version, which wrote temporaries beside the output
        temp.unlink()


def _full_suffix(path: Path) -> str:
    return "".join(path.suffixes[-2:]) if path.name.endswith(".gz") else path.suffix


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError), open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
