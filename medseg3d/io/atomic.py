"""Atomic writes: a crash, ``kill -9`` or power loss never leaves a half-written output.

Write to a temporary file in the destination folder, flush it to disk, then ``os.replace`` it
onto the final name (atomic on POSIX and Windows within one file system).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

TEMP_MARK = ".medseg3d-tmp-"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    ``suffix`` (default: the full suffix of ``path``, e.g. ``.nii.gz``) is kept so that writers
    that choose their format by extension still work. On error the temporary file is removed
    and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".gz") else path.suffix
    handle, temp_name = tempfile.mkstemp(
        prefix=TEMP_MARK + path.stem, suffix=suffix, dir=path.parent
    )
    os.close(handle)
    temp = Path(temp_name)
    try:
        yield temp
        _fsync(temp)
        os.replace(temp, path)
        _fsync_dir(path.parent)
    finally:
        if temp.exists():
            temp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as temp:
        temp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete temporary files left by an interrupted run in ``folder``; returns how many."""
    count = 0
    for temp in Path(folder).glob(f"{TEMP_MARK}*"):
        with contextlib.suppress(OSError):
            temp.unlink()
            count += 1
    return count


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
