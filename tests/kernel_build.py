"""Build and run a g++ sweep of our kernels against hls4ml's ap_types (tests of hls_templates/nnet_vecq_*.h)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import hls4ml

from vecq_hw.hls.layers import TEMPLATE_DIR

AP_TYPES = Path(hls4ml.__file__).parent / "templates" / "vivado" / "ap_types"
NNET_UTILS = Path(hls4ml.__file__).parent / "templates" / "vivado" / "nnet_utils"


def compile_and_run(src: Path, exe: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    """Build a kernel sweep against hls4ml's ap_types and our header, run it, require 0 mismatches."""
    build = subprocess.run(["g++", "-std=c++11", "-O0", f"-I{AP_TYPES}", f"-I{NNET_UTILS}",
                            f"-I{TEMPLATE_DIR}", str(src), "-o", str(exe)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=timeout)
    assert "MISMATCHES: 0" in run.stdout, run.stdout[-3000:]
    assert run.returncode == 0
    return run
