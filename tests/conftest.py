"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest

from vecq_hw.data import find_root
from vecq_hw.errors import DatasetError


@pytest.fixture(scope="session")
def mnist():
    """The MNIST files (../shared/datasets or VECQ_HW_DATA) must be there: a test that needs them
    fails with the reason, it is never skipped. Modules that load data define their own."""
    try:
        find_root("mnist")
    except DatasetError as e:
        pytest.fail(f"MNIST files not found: {e}")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run much faster on one torch thread than on several on a shared machine."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
