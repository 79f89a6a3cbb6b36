"""The HLS mapping of a weighted layer built with distributed arithmetic (:mod:`.da`).

:func:`mapping_for` is :func:`.mappings.mapping_for` with the options: under
``strategy='distributed_arithmetic'`` a dense/conv2d/depthwise layer that :func:`.da.applies`
to gets :class:`DistributedArithmeticMapping`, which keeps its kind's geometry, scale and bias
and replaces the level-table product by the generated ``da_product`` (``VecQDenseDA`` /
``VecQConvDA`` in :mod:`.layers_da`). Its estimate charges da4ml's own LUT estimate of the
adder graph instead of the calibrated per-product model. No hls4ml import here.
"""

from __future__ import annotations

from .. import ir
from ..fixed import FixedType
from . import da
from .costs import LayerEstimate
from .mappings import Mapping
from .mappings import mapping_for as kind_mapping
from .options import HlsOptions


class DistributedArithmeticMapping(Mapping):
    """A dense/conv2d/depthwise layer at R = 1 whose product is da4ml's adder graph."""

    def __init__(self, base: Mapping):
        self.base = base  # the kind's own mapping (geometry, folding facts)
        self.kind = base.kind

    def refuse(self, node, opts):
        return self.base.refuse(node, opts)

    def register_hls(self) -> None:
        register_hls_da()

    def class_name(self, node, opts):
        return "VecQDenseDA" if self.kind == "dense" else "VecQConvDA"

    def types(self, node, opts) -> dict[str, FixedType]:
        layer = node.layer
        return {"result": layer.out_type, "accum": layer.accum_type, "scale": layer.scale_type,
                "bias": layer.bias_type}

    def attrs(self, node, opts):
        layer = node.layer
        return dict(scale_mantissas=layer.scale, scale_frac=layer.scale_type.frac, bias_mantissas=layer.bias,
                    bias_frac=layer.bias_type.frac, reuse_factor=1,
                    vecq_types={"scale": layer.scale_type, "bias": layer.bias_type, "out": layer.out_type},
                    da_product=da.cpp_product(da.kernel(node)), **self.geometry(node))

    def geometry(self, node) -> dict:
        """The conv geometry the kernel reads; a dense layer is a 1 x 1 filter on a 1 x 1 image."""
        if self.kind != "dense":
            return self.base.geometry(node)
        ones = ("in_height", "in_width", "out_height", "out_width", "filt_height", "filt_width", "stride_height",
                "stride_width")
        zeros = ("pad_top", "pad_bottom", "pad_left", "pad_right")
        return dict({k: 1 for k in ones}, **{k: 0 for k in zeros}, n_chan=int(node.in_shapes[0][0]),
                    n_filt=int(node.out_shape[0]))

    def products_per_input(self, node):
        return self.base.products_per_input(node)

    def inputs_per_frame(self, node):
        return self.base.inputs_per_frame(node)

    def estimate(self, node, reuse, io_type) -> LayerEstimate:
        """The kind's estimate at R = 1 with da4ml's LUT estimate of the adder graph as the
        products' cost (one adder graph: conv pixels pass through it one per cycle)."""
        e = self.base.estimate(node, reuse, io_type, adder_graph_luts=da.kernel(node).cost)
        e.adder_graph = True
        return e

    def streams_weights(self, node):
        return False  # no code table: the constants are the adder graph

    def stream_need(self, node):
        return self.base.stream_need(node)

    def stream_buffers(self, e, node):
        self.base.stream_buffers(e, node)  # the same line buffer as the kind's own kernel


def register_hls_da() -> None:
    """Register the DA layers' hls4ml classes and header (idempotent, cheap). Called before every
    graph is built, whatever the strategy (:func:`.convert.layer_list`): a project copies every
    registered header, so its header set must not depend on whether this process built a DA
    project before."""
    from . import layers_da  # hls4ml: only when a graph is built

    layers_da.register()


def mapping_for(node: ir.Node, opts: HlsOptions | None = None) -> Mapping:
    """The mapping that builds ``node`` under ``opts`` (None: the kind's own)."""
    base = kind_mapping(node)
    if opts is not None and da.applies(node, opts):
        return DistributedArithmeticMapping(base)
    return base


def da_layers(model: ir.Model, opts: HlsOptions) -> list[str]:
    """Names of the layers built with distributed arithmetic under ``opts``."""
    return [n.layer.name for n in model.nodes() if da.applies(n, opts)]


__all__ = ["DistributedArithmeticMapping", "da_layers", "mapping_for", "register_hls_da"]
