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
