"""How each layer kind of the integer model becomes an hls4ml layer: one mapping object per kind.

A mapping gives, for one :class:`vecq_hw.ir.Node`, the hls4ml class name, the layer-dict fields
and ``types``: every precision of that hls4ml layer, by hls4ml's key ('result', 'accum', ...).
:mod:`.convert` emits exactly those types into the hls4ml config AND checks the finished graph
against the same dict (:func:`.convert.check_pinned`), so what is emitted and what is pinned
cannot drift. Adding a layer kind = one mapping here (+ a class in :mod:`.layers` and a kernel
in ``nnet_vecq.h`` when hls4ml has none that is exact).
"""

from __future__ import annotations

import numpy as np

from .. import ir
from ..errors import VecQError
from ..fixed import FixedType
from .options import HlsOptions
from .folding import check_reuse
from .products import choose_product
from .types import int_type


class Mapping:
    """Base: ``class_name``, ``attrs`` and ``types`` of one node; ``refuse`` what cannot be built."""

    kind = ""

    def refuse(self, node: ir.Node, opts: HlsOptions) -> str | None:
        """Why this node cannot be built exactly with these options (None: it can)."""
        return None

    def class_name(self, node: ir.Node, opts: HlsOptions) -> str:  # pragma: no cover
        raise NotImplementedError

    def attrs(self, node: ir.Node, opts: HlsOptions) -> dict:
        return {}

    def types(self, node: ir.Node, opts: HlsOptions) -> dict[str, FixedType]:
        """Every hls4ml precision of the layer, by key ('result' is the output)."""
        return {"result": node.layer.out_type}


MAPPINGS: dict[str, Mapping] = {}


def register(mapping: Mapping) -> Mapping:
    MAPPINGS[mapping.kind] = mapping
    return mapping


def mapping_for(node: ir.Node) -> Mapping:
    m = MAPPINGS.get(node.layer.kind)
    if m is None:
        raise VecQError(f"layer '{node.layer.name}': kind '{node.layer.kind}' has no HLS implementation")
    return m


class InputMapping(Mapping):
    kind = "input"

    def class_name(self, node, opts):
        return "InputLayer"

    def attrs(self, node, opts):
        return {"input_shape": [int(s) for s in node.layer.shape]}


class _WeightedMapping(Mapping):
    def types(self, node, opts):
        layer = node.layer
        return {"result": layer.out_type, "accum": layer.accum_type,
                "term": choose_product(layer, node.in_types[0]).term, "weight": int_type(layer.bits),
                "scale": layer.scale_type, "bias": layer.bias_type}

    def attrs(self, node, opts):
        layer = node.layer
        product = choose_product(layer, node.in_types[0])
        return dict(
            bits=int(layer.bits), encoding=layer.encoding, multiplier=layer.multiplier,
            product_kind=product.kind, product_config=product.config,
            codes_data=np.asarray(layer.codes, dtype=np.int64),
            scale_mantissas=layer.scale, scale_frac=layer.scale_type.frac,
            bias_mantissas=layer.bias, bias_frac=layer.bias_type.frac,
            vecq_types={"weight": int_type(layer.bits), "scale": layer.scale_type, "bias": layer.bias_type,
                        "out": layer.out_type},
            strategy=opts.strategy, reuse_factor=check_reuse(node, opts.reuse_of(layer.name)),
            **self.geometry(node))

    def geometry(self, node) -> dict:  # pragma: no cover
        raise NotImplementedError


class DenseMapping(_WeightedMapping):
    kind = "dense"

    def class_name(self, node, opts):
        return "VecQDense"

    def geometry(self, node):
        return {"n_in": int(node.in_shapes[0][0]), "n_out": int(node.out_shape[0])}


def _conv_geometry(node) -> dict:
    layer, (h, w, c), out = node.layer, node.in_shapes[0], node.out_shape
    kh, kw = layer.kernel
    pt, pb, pl, pr = (int(p) for p in layer.padding)
    return dict(in_height=int(h), in_width=int(w), n_chan=int(c), out_height=int(out[0]), out_width=int(out[1]),
                n_filt=int(out[2]), filt_height=kh, filt_width=kw, stride_height=int(layer.stride[0]),
                stride_width=int(layer.stride[1]), pad_top=pt, pad_bottom=pb, pad_left=pl, pad_right=pr)


class Conv2DMapping(_WeightedMapping):
    kind = "conv2d"

    def class_name(self, node, opts):
        return "VecQConv2D"

    def geometry(self, node):
        return _conv_geometry(node)


class DepthwiseConv2DMapping(_WeightedMapping):
    kind = "depthwise_conv2d"

    def class_name(self, node, opts):
        return "VecQDepthwiseConv2D"

    def geometry(self, node):
        return _conv_geometry(node)


class ReLUMapping(Mapping):
    kind = "relu"

    def class_name(self, node, opts):
        return "Activation"

    def attrs(self, node, opts):
        return {"activation": "relu"}

    def types(self, node, opts):
        # relu reads no table; hls4ml declares table_t anyway, pinned so nothing is a default
        return {"result": node.layer.out_type, "table": node.layer.out_type}


def pool_accum_type(in_type: FixedType, out_type: FixedType, area: int) -> FixedType:
    """Exact accumulator for hls4ml's average pool: the window sum, with out_type's fractional bits.

    hls4ml computes ``accum_t y = sum; y /= N``; ap_fixed division by an integer keeps the
    dividend's fractional bits, so with frac >= in.frac + log2(N) the mean is exact.
    """
    extra = area.bit_length() - 1
    frac = max(out_type.frac, in_type.frac + extra)
    integer = max(in_type.integer + extra, out_type.integer) + 1
    return FixedType(width=integer + frac, integer=integer, signed=True)


class _PoolMapping(Mapping):
    """hls4ml's pooling when stride == pool size; our ``vecq_pool2d`` otherwise (hls4ml's
    streaming pool asserts stride == size, and one kernel for both io types keeps it simple)."""

    average = False

    @staticmethod
    def ours(node) -> bool:
        return tuple(node.layer.stride) != tuple(node.layer.pool)

    def class_name(self, node, opts):
        if self.ours(node):
            return "VecQPool2D"
        return "AveragePooling2D" if self.average else "MaxPooling2D"

    def _accum(self, node):
        layer, in_type = node.layer, node.in_types[0]
        area = int(layer.pool[0] * layer.pool[1])
        if not self.average:
            return layer.out_type
        if self.ours(node):
            return ir.aligned_sum_type([in_type], count=area)
        return pool_accum_type(in_type, layer.out_type, area)

    def types(self, node, opts):
        return {"result": node.layer.out_type, "accum": self._accum(node)}

    def attrs(self, node, opts):
        layer, (h, w, c), out = node.layer, node.in_shapes[0], node.out_shape
        geo = dict(in_height=int(h), in_width=int(w), out_height=int(out[0]), out_width=int(out[1]),
                   pool_height=int(layer.pool[0]), pool_width=int(layer.pool[1]),
                   stride_height=int(layer.stride[0]), stride_width=int(layer.stride[1]))
        if self.ours(node):
            area = int(layer.pool[0] * layer.pool[1])
            return dict(geo, n_chan=int(c), average=int(self.average), log2_area=area.bit_length() - 1,
                        vecq_out_type=layer.out_type)
        return dict(geo, data_format="channels_last", n_filt=int(c), pad_top=0, pad_bottom=0, pad_left=0,
                    pad_right=0, count_pad=False)


class MaxPoolMapping(_PoolMapping):
    kind = "maxpool2d"


class AvgPoolMapping(_PoolMapping):
    kind = "avgpool2d"
    average = True


class GlobalAvgPoolMapping(Mapping):
    kind = "global_avg_pool"

    def class_name(self, node, opts):
        return "VecQGlobalAvgPool2D"

    def types(self, node, opts):
        layer = node.layer
        return {"result": layer.out_type, "accum": layer.sum_type(node.in_types[0], node.in_shapes[0]),
                "mult": layer.mult_type}

    def attrs(self, node, opts):
        h, w, c = node.in_shapes[0]
        return {"n_pixels": int(h * w), "n_chan": int(c), "mult": int(node.layer.mult),
                "vecq_out_type": node.layer.out_type}


class AddMapping(Mapping):
    """hls4ml's Merge 'add': ``res[i] = data1[i] + data2[i]`` (nnet_merge.h / nnet_merge_stream.h).

    ap_fixed ``+`` yields a full-precision sum (both operands aligned to the larger frac, one
    integer bit more than the wider), then the assignment converts it ONCE into res_T with its
    modes: exactly the contract. hls4ml's Merge takes two inputs."""

    kind = "add"

    def refuse(self, node, opts):
        if len(node.layer.inputs) != 2:
            return (f"add with {len(node.layer.inputs)} inputs: the HLS back end builds two-input adds only "
                    "(write it as a chain of two-input adds)")
        if opts.io_type == "io_stream" and node.layer.inputs[0] == node.layer.inputs[1]:
            # hls4ml's clone pass rewires one of the two reads only: the stream would be read twice
            return f"adds '{node.layer.inputs[0]}' to itself, which io_stream cannot build (use io_parallel)"
        return None

    def class_name(self, node, opts):
        return "Merge"

    def attrs(self, node, opts):
        return {"op": "add"}


class FlattenMapping(Mapping):
    kind = "flatten"

    def class_name(self, node, opts):
        return "Reshape"

    def attrs(self, node, opts):
        return {"target_shape": [int(node.out_shape[0])]}


for _m in (InputMapping(), DenseMapping(), Conv2DMapping(), DepthwiseConv2DMapping(), ReLUMapping(), MaxPoolMapping(),
           AvgPoolMapping(), GlobalAvgPoolMapping(), AddMapping(), FlattenMapping()):
    register(_m)
