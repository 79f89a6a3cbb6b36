"""pytest plugin: built projects as fixtures, shared by every test of a session (and, through
pytest's cache folder, by later sessions), so an HLS project is compiled once per model and
options, and an RTL project Verilated once.

Installed with vecq_hw it loads by itself (entry point ``pytest11``); in a checkout, or to be
explicit, list it in the root ``conftest.py``: ``pytest_plugins = ["vecq_hw.testing.plugin"]``.

    vecq_check(model_dir, inputs, backends=..., ...)   vecq_hw.testing.check with the session's cache
    vecq_hls_project(model_dir, **hls_options) -> Path a C-simulation-built HLS project (trace=True)
    vecq_rtl_project(model_dir, **rtl_options) -> Path a Verilated RTL project
    vecq_cache                                         the ProjectCache behind them

The cache folder: ``--vecq-cache DIR``, else ``$VECQ_HW_TEST_CACHE``, else
``.pytest_cache/d/vecq_hw``. A project's key is the content of the model folder, the options
and the toolkit's sources, so nothing stale is ever reused. A fixture whose tool is not
installed skips the test, naming the tool.
"""

from __future__ import annotations

import functools
import os

import pytest

from .cache import ProjectCache, ToolMissing
from .check import check

CACHE_ENV = "VECQ_HW_TEST_CACHE"


def pytest_addoption(parser):
    parser.getgroup("vecq_hw").addoption(
        "--vecq-cache", default=None, metavar="DIR",
        help=f"where vecq_hw's fixtures keep built HLS/RTL projects (default: ${CACHE_ENV}, else "
             ".pytest_cache/d/vecq_hw)")


@pytest.fixture(scope="session")
def vecq_cache(request, tmp_path_factory) -> ProjectCache:
    root = request.config.getoption("--vecq-cache") or os.environ.get(CACHE_ENV)
    if root is None:
        pytest_cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
        root = pytest_cache.mkdir("vecq_hw") if pytest_cache else tmp_path_factory.mktemp("vecq_hw")
    return ProjectCache(root)


def _skipping_missing_tools(make):
    @functools.wraps(make)
    def wrapper(*args, **kwargs):
        try:
            return make(*args, **kwargs)
        except ToolMissing as exc:
            pytest.skip(str(exc))
    return wrapper


@pytest.fixture(scope="session")
def vecq_hls_project(vecq_cache):
    """``vecq_hls_project(model_dir, options=None, **hls_options) -> Path``."""
    return _skipping_missing_tools(vecq_cache.hls)


@pytest.fixture(scope="session")
def vecq_rtl_project(vecq_cache):
    """``vecq_rtl_project(model_dir, options=None, **rtl_options) -> Path``."""
    return _skipping_missing_tools(vecq_cache.rtl)


@pytest.fixture(scope="session")
def vecq_check(vecq_cache):
    """``vecq_check(model_dir, inputs, backends=("sim", "csim", "rtlsim"), ...)``: see
    :func:`vecq_hw.testing.check`."""
    return functools.partial(check, cache=vecq_cache)
