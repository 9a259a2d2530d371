"""One torch thread for the refinement tests: the sparse random walk's many small products slow down
badly when two intra-op threads compete with other processes for the cores."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
