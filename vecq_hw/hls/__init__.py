"""Integer model -> hls4ml project with our low-bit kernels; g++ C simulation.

    write_project(model, out_dir, backend=..., io_type=..., ...) -> Path
    build_hls_model(model, ...) -> compiled hls4ml ModelGraph (predict / trace in process)
    csim(prj_dir, jobs=2, opt='-O1') -> CsimResult
"""

from .convert import build_graph, check_pinned, layer_list
from .csim import CsimError, CsimResult, csim
from .project import build_hls_model, hls_description, write_project, write_test_data

__all__ = ["CsimError", "CsimResult", "build_graph", "build_hls_model", "check_pinned", "csim", "hls_description",
           "layer_list", "write_project", "write_test_data"]
