"""Atomic writes: what a crash leaves behind is never taken for an output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest

from medseg3d.io.atomic import (
    TEMP_MARK,
    atomic_path,
    remove_own_temporaries,
    remove_stale_temporaries,
    temporaries,
)

WRITER = """
import sys, time
from medseg3d.io.atomic import atomic_path
with atomic_path(sys.argv[1]) as temp:
    with open(temp, "wb") as handle:
        handle.write(b"partial")
        handle.flush()
        print("writing", flush=True)
        time.sleep(60)
"""


def test_success_renames_onto_the_name_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "mask.nii.gz"
    with atomic_path(target) as temp:
        assert temp.name == "mask.nii.gz" and temp.parent != tmp_path  # writers see the suffix
        nib.save(nib.Nifti1Image(np.ones((2, 3, 4), np.uint8), np.eye(4)), str(temp))
    assert np.asarray(nib.load(str(target)).dataobj).sum() == 24
    assert [p.name for p in tmp_path.iterdir()] == ["mask.nii.gz"]


def test_an_error_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "report.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as temp:
        temp.write_text("new, half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old" and not temporaries(tmp_path)


def test_a_writer_killed_mid_write_leaves_no_file_that_looks_like_an_output(tmp_path):
    target = tmp_path / "case1.nii.gz"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout.readline().strip() == "writing"
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    assert not target.exists()
    assert list(tmp_path.glob("*.nii.gz")) == []  # pathlib's glob also sees hidden names
    (leftover,) = temporaries(tmp_path)
    assert leftover.is_dir() and leftover.name.startswith(TEMP_MARK + "case1.nii.gz-")
    assert remove_own_temporaries([tmp_path / "case10.nii.gz"]) == 0  # not that one's
    assert remove_own_temporaries([target]) == 1 and not temporaries(tmp_path)


def test_stale_cleanup_can_spare_a_write_in_progress(tmp_path):
    with atomic_path(tmp_path / "a.npy") as in_progress:
        in_progress.write_bytes(b"x")
        old = tmp_path / f"{TEMP_MARK}b.npy-abcdefgh"
        old.mkdir()
        os.utime(old, (time.time() - 7200, time.time() - 7200))
        assert remove_stale_temporaries(tmp_path, older_than=3600) == 1
        assert in_progress.exists() and not old.exists()
    assert (tmp_path / "a.npy").read_bytes() == b"x"
