"""The HLS back end: integer model -> hls4ml project with our low-bit kernels; g++ C simulation.

    write_project(model, out_dir, HlsOptions(...), expected=(x_mantissa, y_mantissa)) -> Path
    build_hls_model(model, out_dir, HlsOptions(...)) -> compiled hls4ml ModelGraph (predict / trace)
    csim(prj_dir, jobs=None, opt='-O3', timeout=None, progress=False) -> CsimResult (resumable)
    build(prj_dir) / predict(prj_dir, x_mantissa, trace=False) -> Prediction: the C simulation on
        the caller's inputs (outputs, and every layer's with HlsOptions(trace=True))
    weight_copy_differences(prj_dir): where the synthesised weight tables differ from the C-simulated
    register_hls_layer(layer_class, config_template, function_template, headers) -> a kernel of one's own

Names load lazily: ``from vecq_hw.hls.options import HlsOptions`` (the CLI's defaults) does not
import hls4ml; nor do the per-kind mappings (:mod:`.mappings`), the folding rules and the
pre-synthesis estimate of the design (``vecq_hw.hls.estimate``: estimate, fit, parts).
"""

from ..lazy import lazy_names

# eager and cheap (no hls4ml); also keeps ``vecq_hw.hls.csim`` the function, not the submodule
from . import mappings_alq  # noqa: F401  (registers the mappings of ALQ's native kinds)
from . import mappings_pq  # noqa: F401  (registers the mappings of the PQ kinds)
from . import mappings_gnn  # noqa: F401  (registers the mappings of the graph kinds: node_dense, gcn_aggregate)
from .csim import CsimError, CsimResult, csim

_EXPORTS = {
    "HlsOptions": ".options", "build_graph": ".convert", "check_pinned": ".convert", "layer_list": ".convert",
    "build_hls_model": ".project",
    "hls_description": ".project", "write_project": ".project", "write_test_data": ".project",
    "register_hls_layer": ".registration", "unregister_hls_layer": ".registration",
    "Prediction": ".csim_predict", "build": ".csim_predict", "predict": ".csim_predict",
    "weight_copy_differences": ".csim_predict",
}

__all__ = sorted(set(_EXPORTS) | {"CsimError", "CsimResult", "csim"})

__getattr__ = lazy_names(__name__, _EXPORTS)
