"""Fixtures for I/O tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from io_helpers import pydicom_test_files  # noqa: E402


@pytest.fixture(scope="session")
def pydicom_files() -> Path:
    return pydicom_test_files()
