"""One intra-op thread for the model tests.

The networks here are tiny (features 4, 16-32 voxel inputs): a second thread buys nothing on them,
and on a shared, loaded CPU two spinning threads per process make them many times slower.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
