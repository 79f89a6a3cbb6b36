"""A wheel of the project is complete: every module, the HLS templates and the recipes, and an
installed wheel finds its templates inside itself (not in a checkout that may not exist)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.xdist_group("wheel")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # built from a copy, so the checkout gets no build/ or egg-info droppings; no build
    # isolation: setuptools is already in the environment and nothing is downloaded
    src = out / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("vecq_hw", "hls_templates", "configs"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(out), str(src)], check=True, cwd=out)
    (whl,) = out.glob("vecq_hw-*.whl")
    return whl


def test_wheel_holds_every_module_and_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    want = {p.relative_to(ROOT).as_posix() for p in (ROOT / "vecq_hw").rglob("*.py")}
    want |= {f"vecq_hw/{d}/{p.relative_to(ROOT / d).as_posix()}" for d in ("hls_templates", "configs")
             for p in (ROOT / d).rglob("*") if p.is_file()}  # configs/hardware/ included
    assert want - names == set()
    # the kernels, by name: every header our hls4ml layers register (and the ones they include)
    from vecq_hw.hls.layers import register
    from vecq_hw.hls.registration import registered_headers

    register()
    ours = [p for p in registered_headers() if p.is_relative_to(ROOT / "hls_templates")]
    assert {"nnet_vecq_products.h", "nnet_vecq_dense.h", "nnet_vecq_conv.h"} <= {p.name for p in ours}
    assert {f"vecq_hw/hls_templates/{p.name}" for p in ours} - names == set()
    # pytest finds vecq_hw.testing's fixtures in an installed vecq_hw by its entry point
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[pytest11]\nvecq_hw.testing.plugin = vecq_hw.testing.plugin\n" in text, text


def test_installed_wheel_generates_hls_from_its_own_templates(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    str(wheel)], check=True)
    script = f"""
import pathlib, vecq_hw
from vecq_hw import flow, resources
from vecq_hw.ir.examples import random_mlp
from vecq_hw.hls.project import write_project
from vecq_hw.hls.registration import registered_headers
site = pathlib.Path({str(target)!r}).resolve()
assert pathlib.Path(vecq_hw.__file__).resolve().is_relative_to(site), vecq_hw.__file__
assert resources.TEMPLATE_DIR.is_relative_to(site), resources.TEMPLATE_DIR
assert flow.DEFAULT_RECIPE.is_file() and flow.DEFAULT_RECIPE.is_relative_to(site)
prj = write_project(random_mlp(2, sizes=(4, 3)), {str(tmp_path / "prj")!r})
headers = registered_headers()
assert len(headers) >= 9 and all(h.is_relative_to(resources.TEMPLATE_DIR) for h in headers), headers
for h in headers:
    assert (prj / "firmware" / "nnet_utils" / h.name).read_bytes() == h.read_bytes(), h
print("ok")
"""
    env = dict(os.environ, PYTHONPATH=str(target))
    r = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().endswith("ok")
