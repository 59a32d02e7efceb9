from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Tiny networks on a shared CPU: one thread avoids OpenMP oversubscription (10x slower when loaded)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
