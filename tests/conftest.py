"""Fixtures shared by several test modules."""

from __future__ import annotations

import os

import pytest

from vecq_hw.cli import OPENMP_ENV
from vecq_hw.data import find_root
from vecq_hw.errors import DatasetError

# what `vecq-hw` sets for itself, here before any test module loads torch (and with it libgomp,
# which reads it once): OpenMP threads that wait sleep instead of spinning on the shared cores
for _key, _value in OPENMP_ENV.items():
    os.environ.setdefault(_key, _value)


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
