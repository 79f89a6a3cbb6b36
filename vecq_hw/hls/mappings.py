"""How each layer kind of the integer model becomes an hls4ml layer: one mapping object per kind.

A mapping gives, for one :class:`vecq_hw.ir.Node`, the hls4ml class name, the layer-dict fields
and ``types``: every precision of that hls4ml layer, by hls4ml's key ('result', 'accum', ...).
:mod:`.convert` emits exactly those types into the hls4ml config AND checks the finished graph
against the same dict (:func:`.convert.check_pinned`), so what is emitted and what is pinned
cannot drift.

A mapping also holds its kind's hardware facts: the products per input P of a weighted
(foldable) layer and how often per frame they run (:mod:`.folding` asks for them), and the
layer's pre-synthesis cost (:meth:`Mapping.estimate`, summed by :mod:`.estimate`; a kind whose
mapping gives no estimate is refused there, never guessed).

Adding a layer kind = one mapping, registered with :func:`register` (a decorator too), from
inside or outside the package (+ a class in :mod:`.layers` and a kernel header in ``hls_templates/``
when hls4ml has none that is exact). No hls4ml import here: the estimator and the CLI read
it cheaply.
"""

from __future__ import annotations

import math

import numpy as np

from .. import ir
from ..errors import VecQError
from ..fixed import FixedType
from .costs import (FOLDED_DEPTH, LayerEstimate, bram_or_lutram, charge_memory, charge_ram, lut_per_product,
                    hold_luts, product_luts, requant_hold)
from .offchip import STREAMED_MODES, StreamedLayer
from .options import HlsOptions
from .products import choose_product, kind_and_plan
from .partial_sums import partial_sum_width, psum_config, sum_width
from .select import adder_luts, block_inputs, multiple_luts

#: a streamed layer's m_axi port. The read FIFO follows from the pragma the kernel is written with
#: (num_read_outstanding=4 x max_read_burst_length=64 words); the protocol logic and the first
#: word's latency are assumptions (no Vivado here to measure an adapter), not measurements.
AXI_READ_FIFO_WORDS = 4 * 64
AXI_PORT_LUTS, AXI_PORT_FFS, AXI_FIRST_WORD_CYCLES = 1500, 2000, 100


def int_type(width: int) -> FixedType:
    """ap_int<width> as a FixedType."""
    return FixedType(width=int(width), integer=int(width), kind="int")


class Mapping:
    """Base: ``class_name``, ``attrs`` and ``types`` of one node; ``refuse`` what cannot be built;
    the folding facts and the estimate of the layer."""

    kind = ""

    def refuse(self, node: ir.Node, opts: HlsOptions) -> str | None:
        """Why this node cannot be built exactly with these options (None: it can)."""
        return None

    def class_name(self, node: ir.Node, opts: HlsOptions) -> str:  # pragma: no cover
        raise NotImplementedError

    def register_hls(self) -> None:
        """Register with hls4ml the layer class :meth:`class_name` names when it is a kernel of
        the kind's own (called before a graph is built; the built-in kinds' classes are
        registered by ``layers.register``, hls4ml's own need nothing)."""

    def attrs(self, node: ir.Node, opts: HlsOptions) -> dict:
        return {}

    def types(self, node: ir.Node, opts: HlsOptions) -> dict[str, FixedType]:
        """Every hls4ml precision of the layer, by key ('result' is the output)."""
        return {"result": node.layer.out_type}

    # -- hardware facts (no hls4ml) ------------------------------------------------------------
    def products_per_input(self, node: ir.Node) -> int | None:
        """P of a weighted layer, which the reuse factor folds (None: nothing to fold)."""
        return None

    def inputs_per_frame(self, node: ir.Node) -> int:
        """How many times per frame the P products run (1: once, as a dense layer)."""
        return 1

    def streams_weights(self, node: ir.Node) -> bool:
        """The kind can read its codes from off-chip memory (:mod:`.offchip`; False: always on chip)."""
        return False

    def stream_need(self, node: ir.Node) -> np.ndarray | None:
        """io_stream schedule of the kernel: ``need[c - 1]`` = input tokens (pixels) it has read
        when it writes its c-th output token (:mod:`.fifos` sizes the FIFOs from it). None: not
        known (the FIFOs around it fall back to whole frames where it matters)."""
        return None

    def pack_rule(self, node: ir.Node) -> str | None:
        """How its io_stream kernel takes packs narrower than a pixel (:mod:`.packs`): 'free' (any
        divisor of the channels on each side), 'tied' (one pack size on its inputs and output),
        None (whole pixels only)."""
        return None

    def packed_cycles(self, node: ir.Node, cycles: int, s_in: int, s_out: int) -> int:
        """Cycles per frame when its input and output pixels are s_in and s_out tokens (its
        estimate's ``cycles`` are for whole-pixel tokens): at most one token a cycle each way."""
        return max(int(cycles), stream_tokens(node.in_shapes[0]) * s_in if node.in_shapes else 0,
                   stream_tokens(node.out_shape) * s_out)

    def packed_ffs(self, node: ir.Node, e: LayerEstimate, s_out: int) -> float:
        """FFs when its output pixels leave as s_out packs (:meth:`add_io` charged a whole output
        pixel in flight; a kernel that holds one pack instead overrides this)."""
        return e.ffs

    def estimate(self, node: ir.Node, reuse: int, io_type: str) -> LayerEstimate | None:
        """Resources and cycles of this layer; ``reuse`` is its validated reuse factor (0 where
        :meth:`products_per_input` is None). None: no estimate (the estimator refuses the kind)."""
        return None

    def stream_buffers(self, e: LayerEstimate, node: ir.Node) -> None:
        """Add the io_stream line or frame buffers this layer keeps (and the cycles they cost)."""

    def add_io(self, e: LayerEstimate, node: ir.Node, io_type: str) -> LayerEstimate:
        """Output registers (io_parallel: the whole output; io_stream: one pixel) and buffers."""
        width = int(node.layer.out_type.width)
        if io_type == "io_parallel":
            e.ffs += int(np.prod(node.out_shape)) * width
            return e
        e.ffs += int(node.out_shape[-1]) * width  # one output pixel in flight
        self.stream_buffers(e, node)
        return e

    def logic_estimate(self, node: ir.Node, io_type: str, luts: float, cycles: int) -> LayerEstimate:
        """A layer without products: its logic LUTs and cycles, one more cycle of latency, io."""
        e = LayerEstimate(node.layer.name, node.layer.kind, luts=luts, cycles=cycles, latency=cycles + 1)
        return self.add_io(e, node, io_type)


MAPPINGS: dict[str, Mapping] = {}


def register(mapping):
    """Register a mapping (an instance, or a Mapping subclass as a class decorator) for its ``kind``.

    Returns what it was given. A later registration for the same kind replaces the earlier."""
    instance = mapping() if isinstance(mapping, type) else mapping
    if not isinstance(instance, Mapping) or not instance.kind:
        raise TypeError(f"expected a Mapping with a kind, got {mapping!r}")
    MAPPINGS[instance.kind] = instance
    return mapping


def mapping_for(node: ir.Node) -> Mapping:
    m = MAPPINGS.get(node.layer.kind)
    if m is None:
        raise VecQError(f"layer '{node.layer.name}': kind '{node.layer.kind}' has no HLS implementation")
    return m


def stream_tokens(shape) -> int:
    """Tokens of an io_stream tensor: one per pixel (all its channels), or 1 for a vector."""
    return int(np.prod(shape[:-1])) if len(shape) > 1 else 1


def row_need(rows_needed: np.ndarray, out_width: int, in_width: int) -> np.ndarray:
    """need of a line-buffer kernel that writes output row oh, all out_width pixels, once it has
    read rows_needed[oh] whole input rows."""
    return np.repeat(np.asarray(rows_needed, dtype=np.int64) * int(in_width), int(out_width))


def one_pack_in_flight(node: ir.Node, e: LayerEstimate, s_out: int) -> float:
    """e's FFs with one output pack of 1/s_out pixel in flight instead of the pixel add_io charged."""
    channels = int(node.out_shape[-1])
    return e.ffs - (channels - channels // s_out) * int(node.layer.out_type.width)


def add_buffer(e: LayerEstimate, banks: int, depth: int, width: int, kind: str = "line_buffers") -> None:
    """Charge ``banks`` buffers of depth x width bits (BRAM18 or LUTRAM) to ``kind``; the layer's
    latency covers its cycles."""
    charge_ram(e, kind, int(banks), int(depth), int(width))
    e.latency = max(e.latency, e.cycles)


class _NoLogic:
    """Wiring only (the input port, a flatten): no resources, one cycle."""

    def estimate(self, node, reuse, io_type):
        return LayerEstimate(node.layer.name, node.layer.kind)


class _Elementwise:
    """0.5 LUT per bit touched in parallel (every element in io_parallel, one pixel in io_stream)."""

    def estimate(self, node, reuse, io_type):
        shape, bits, n_in = node.out_shape, int(node.layer.out_type.width), len(node.layer.inputs) or 1
        parallel = io_type == "io_parallel"
        lanes = int(np.prod(shape)) if parallel else int(shape[-1])
        pixels = int(np.prod(shape[:-1])) if len(shape) == 3 else 1
        return self.logic_estimate(node, io_type, 0.5 * lanes * bits * n_in, 1 if parallel else pixels)

    def stream_need(self, node):
        """One token in, one token out (hls4ml's activation and merge stream kernels)."""
        return np.arange(1, stream_tokens(node.out_shape) + 1, dtype=np.int64)

    def pack_rule(self, node):
        return "tied"  # hls4ml's kernels write one pack per pack read, of the same size

    def packed_cycles(self, node, cycles, s_in, s_out):
        return int(cycles) * s_out  # one token a cycle

    def packed_ffs(self, node, e, s_out):
        return one_pack_in_flight(node, e, s_out)


class InputMapping(_NoLogic, Mapping):
    kind = "input"

    def pack_rule(self, node):
        return "free"  # the top function's port: the testbench writes any pack size

    def class_name(self, node, opts):
        return "InputLayer"

    def attrs(self, node, opts):
        return {"input_shape": [int(s) for s in node.layer.shape]}


class _WeightedMapping(Mapping):
    #: the hls4ml class (layers.py); '<class>Streamed' when the layer reads its codes over AXI
    hls_class = ""

    def class_name(self, node, opts):
        return self.hls_class + ("Streamed" if opts.weights_of(node.layer.name) in STREAMED_MODES else "")

    def streamed_layer(self, node, reuse: int, mode: str, word_bits: int) -> StreamedLayer:
        """How this layer reads its codes when streamed (:mod:`.offchip`)."""
        return StreamedLayer(node.layer.name, mode, int(node.layer.bits), self.products_per_input(node), int(reuse),
                             self.inputs_per_frame(node), int(word_bits))

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
            product_kind=product.kind,
            product_config=product.config + psum_config(self.psum_width(node, opts.reuse_of(layer.name),
                                                                        opts.weights_of(layer.name) in STREAMED_MODES),
                                                        node.in_types[0]) + self._overlap_config(node, opts),
            codes_data=np.asarray(layer.codes, dtype=np.int64),
            scale_mantissas=layer.scale, scale_frac=layer.scale_type.frac,
            bias_mantissas=layer.bias, bias_frac=layer.bias_type.frac,
            vecq_types={"weight": int_type(layer.bits), "scale": layer.scale_type, "bias": layer.bias_type,
                        "out": layer.out_type},
            # validated by convert.layer_list (folding.reuse_plan) before any attrs are asked for
            strategy=opts.kernel_strategy, reuse_factor=int(opts.reuse_of(layer.name)),
            **self.geometry(node), **self._streamed_attrs(node, opts))

    def _overlap_config(self, node, opts) -> str:
        """The config line turning vecq_fold_row on where the estimate chose it (overlap_pays)."""
        r = int(opts.reuse_of(node.layer.name))
        if r == 1 or opts.weights_of(node.layer.name) in STREAMED_MODES:
            return ""  # (sliced output packs: the kernel itself keeps the pixel loop, estimate/packed.as_built)
        return "    static const bool overlap = true;\n" if self.estimate(node, r, opts.io_type).overlap else ""

    def _streamed_attrs(self, node, opts) -> dict:
        mode = opts.weights_of(node.layer.name)
        if mode not in STREAMED_MODES:
            return {}
        # convert.layer_list resolved opts.axi_bits from the part and validated the plan
        sl = self.streamed_layer(node, opts.reuse_of(node.layer.name), mode, opts.axi_bits)
        return {"word_bits": sl.word_bits, "words": sl.words, "passes": sl.passes, "cached": mode == "uram"}

    def geometry(self, node) -> dict:  # pragma: no cover
        raise NotImplementedError

    def streams_weights(self, node) -> bool:
        return True

    def pack_rule(self, node):
        # our dense and line-buffer conv kernels (on chip or streamed) index packs of any size;
        # kinds built on these classes elsewhere keep whole pixels until their kernels are checked
        return "free" if self.kind in ("dense", "conv2d", "depthwise_conv2d") else None

    def estimate(self, node, reuse, io_type, weights: StreamedLayer | None = None, *,
                 adder_graph_luts: float | None = None, allow_overlap: bool = True):
        """The P / R product slots (LUTs, or DSPs for wide named/multiplier products), the
        requantisation units, the weights (a ROM of a folded layer; or, ``weights`` given, the
        reader of a streamed layer: :meth:`_streamed`), accumulators and cycles.
        ``adder_graph_luts``: the products are one adder graph of that many LUTs instead, no
        product registers (strategy distributed_arithmetic at R = 1, :mod:`.mappings_da`)."""
        layer, r = node.layer, reuse
        p, per_frame = self.products_per_input(node), self.inputs_per_frame(node)
        w = int(node.in_types[0].width)
        product = choose_product(layer, node.in_types[0])
        k = 1 if product.kind == "addsub" else int(layer.bits)
        n_out = int(node.out_shape[-1])
        e = LayerEstimate(layer.name, layer.kind, reuse=r, products=p, slots=p // r)
        dsp_bound = layer.multiplier == "dsp" and product.kind in ("named", "multiply") and (
            product.kind == "multiply" or layer.bits >= 5)
        acc_w, s_w = int(layer.accum_type.width), int(layer.scale_type.width)
        array = self.select_array_luts(node, r, w, weights is not None) if adder_graph_luts is None else None
        constants = e.slots * r * lut_per_product("const", k, w)
        if adder_graph_luts is not None:
            e.luts += adder_graph_luts
        elif dsp_bound:
            e.dsps += e.slots
            e.luts += e.slots * lut_per_product("const", 1, w)  # the adder share
        elif weights is not None:  # codes arrive at run time: every slot a multiplier, or the select form
            e.luts += e.slots * lut_per_product("var", k, w) if array is None else array
        else:
            e.luts += product_luts(p, r, k, w) if array is None else min(array, constants)
        units = math.ceil(n_out / r)
        e.dsps += units * math.ceil(acc_w / 25) * math.ceil(s_w / 18)
        e.ffs += n_out * acc_w + (e.slots * int(product.term.width) if adder_graph_luts is None else 0)
        rom = (e.slots * lut_per_product("var", k, w) if array is None else array) <= constants  # else no ROM
        if weights is not None:
            self._streamed(e, weights)
        elif r > 1 and (dsp_bound or rom):
            # ARRAY_RESHAPE: one ROM of depth R, one word of slots x k bits (else constants, no ROM)
            b, lut = bram_or_lutram(1, r, e.slots * int(layer.bits))
            charge_memory(e, "weights", p * int(layer.bits), bram18=b, luts=lut)
        requant_cycles = math.ceil(n_out / units) if r > 1 else 0
        hold_w = sum_width(p // n_out, layer.levels, node.in_types[0])  # worst case, as select_array_luts
        overlap = allow_overlap and weights is None and self.overlap_pays(
            node, r, e.luts, hold_luts(n_out, units, hold_w), requant_cycles)
        e.cycles = self.folded_cycles(node, r, requant_cycles, weights is not None, overlap)
        if overlap:
            requant_hold(e, n_out, units, hold_w)
        e.latency = e.cycles + math.ceil(math.log2(max(e.slots, 2))) + 2
        if weights is not None:
            e.latency += AXI_FIRST_WORD_CYCLES  # the first pass waits for the port's first burst
        return self.add_io(e, node, io_type)

    def overlap_pays(self, node, r: int, luts: float, hold: float, requant_cycles: int) -> bool:
        """Whether the kernel requantises an input's outputs while the next input's products run
        (vecq_fold_row; ``hold``: the LUTs of its hold registers, costs.requant_hold), given the
        layer's other ``luts`` (on-chip codes only)."""
        return False

    def folded_cycles(self, node, r: int, requant_cycles: int, streamed: bool, overlap: bool = False) -> int:
        """Cycles per frame (loop trips of the kernel, not co-simulation): per input the R product
        cycles, then its requantisation and the pipeline fill (vecq_fold_products, then
        vecq_requant_folded); one cycle an input unfolded."""
        per_frame = self.inputs_per_frame(node)
        if r == 1 and not streamed:
            return per_frame
        return per_frame * (r + requant_cycles + (FOLDED_DEPTH if per_frame > 1 else 0))

    def input_group(self, node) -> int:
        """Consecutive products reading one input (TAPS::group): every output channel's."""
        return int(node.out_shape[-1])

    def psum_width(self, node, r: int, streamed: bool = False) -> int | None:
        """Width of the kernel's per-cycle partial sums (:mod:`.partial_sums`; None: off; a
        streamed layer's loop has none)."""
        layer = node.layer
        if streamed:
            return None
        plan = kind_and_plan(layer.levels, int(layer.bits), layer.multiplier)[1]
        return partial_sum_width(plan, layer.levels, node.in_types[0], self.products_per_input(node),
                                 self.input_group(node), int(node.out_shape[-1]), int(r))

    def select_array_luts(self, node, r: int, w: int, streamed: bool = False) -> float | None:
        """LUTs of a folded layer's slot array in the select form (issue 21): per slot one adder per
        code-bit group on the accumulator, per input a cycle reads its multiples (3x, ...) once;
        with partial sums (:meth:`psum_width`) the slots' adders are that narrow and each output
        adds its cycle's sum into the accumulator once. The accumulator's width is its worst case
        over codes (fan-in x the largest |level| x the largest |x|; the exported accum_t is at most
        this), so that the cost depends on the bits, the level table and the input type only, as
        SRQ's width tables assume (hls/estimate/widths.py). None: no select form (a DSP, a ROM
        multiplier or signed digits), or R = 1 (constant weights: the 'const' model)."""
        layer = node.layer
        plan = kind_and_plan(layer.levels, int(layer.bits), layer.multiplier)[1]
        if plan is None or r == 1:
            return None
        p, n_out = self.products_per_input(node), int(node.out_shape[-1])
        wide = sum_width(p // n_out, layer.levels, node.in_types[0])
        slots = p // r
        inputs = block_inputs(slots, self.input_group(node))
        narrow = self.psum_width(node, r, streamed)
        adders = slots * adder_luts(plan, wide) if narrow is None else slots * adder_luts(plan, narrow) + n_out * wide
        return float(adders + inputs * multiple_luts(plan, w))

    @staticmethod
    def _streamed(e: LayerEstimate, sl: StreamedLayer) -> None:
        """A streamed layer: its m_axi port (read FIFO, protocol logic), the word FIFO to the
        layer, an UltraRAM copy of the table ('uram'), and the DDR it reads per frame."""
        e.weights, e.ddr_bytes = sl.mode, float(sl.ddr_bytes_per_frame)
        charge_ram(e, "axi", 1, AXI_READ_FIFO_WORDS, sl.word_bits)
        e.luts += AXI_PORT_LUTS + sl.step_bits + sl.word_bits  # + the unpacking shift register
        e.ffs += AXI_PORT_FFS + 2 * (sl.step_bits + sl.word_bits)
        if sl.mode == "uram":
            charge_ram(e, "weights", 1, sl.words, sl.word_bits, uram=True)


class DenseMapping(_WeightedMapping):
    kind = "dense"

    hls_class = "VecQDense"

    def geometry(self, node):
        return {"n_in": int(node.in_shapes[0][0]), "n_out": int(node.out_shape[0])}

    def products_per_input(self, node):
        return int(node.in_shapes[0][0]) * int(node.out_shape[0])

    def stream_need(self, node):
        return np.array([stream_tokens(node.in_shapes[0])], dtype=np.int64)  # reads all, then writes


class _ConvMapping(_WeightedMapping):
    """A k x k window per output pixel: P products per pixel, every output pixel per frame."""

    def geometry(self, node):
        layer, (h, w, c), out = node.layer, node.in_shapes[0], node.out_shape
        kh, kw = layer.kernel
        pt, pb, pl, pr = (int(p) for p in layer.padding)
        return dict(in_height=int(h), in_width=int(w), n_chan=int(c), out_height=int(out[0]), out_width=int(out[1]),
                    n_filt=int(out[2]), filt_height=kh, filt_width=kw, stride_height=int(layer.stride[0]),
                    stride_width=int(layer.stride[1]), pad_top=pt, pad_bottom=pb, pad_left=pl, pad_right=pr)

    def window_products(self, node) -> int:
        """kh * kw * c_in: the products of one window over every input channel."""
        kh, kw = (int(k) for k in node.layer.kernel)
        return kh * kw * int(node.in_shapes[0][-1])

    def inputs_per_frame(self, node):
        return int(node.out_shape[0]) * int(node.out_shape[1])

    def overlap_pays(self, node, r, luts, hold, requant_cycles):
        """Folded: when the hold registers cost less than the cycles they save, in LUTs per pixel
        a cycle: (L + H) R < L (R + requant + fill), i.e. H R < L (requant + fill). Slow plans
        (large R) keep the sequential loop, where requantisation is a small share of a pixel."""
        return r > 1 and hold * r < luts * (requant_cycles + FOLDED_DEPTH)

    def folded_cycles(self, node, r, requant_cycles, streamed, overlap=False):
        """With ``overlap``, vecq_fold_row (nnet_vecq_fold.h): one pipelined loop per output row, R
        cycles a pixel with the previous pixel requantised meanwhile, the last pixel drained, then
        the fill."""
        if not overlap:
            return super().folded_cycles(node, r, requant_cycles, streamed)
        rows, cols = int(node.out_shape[0]), int(node.out_shape[1])
        return rows * (cols * r + requant_cycles + FOLDED_DEPTH)

    def stream_need(self, node):
        """vecq_conv_stream_lines (and the streamed kernel): output row oh leaves once input row
        min(oh * stride + kh - 1 - pad_top, in_height - 1) is complete."""
        (h, w, _), (oh, ow) = node.in_shapes[0], node.out_shape[:2]
        layer = node.layer
        last = np.arange(int(oh)) * int(layer.stride[0]) + int(layer.kernel[0]) - 1 - int(layer.padding[0])
        return row_need(np.minimum(last, int(h) - 1) + 1, ow, w)

    def packed_cycles(self, node, cycles, s_in, s_out):
        """vecq_conv_stream_lines reads one input pack a cycle (not overlapped with the pixels)
        and writes a pixel's s_out packs in its II: an II below s_out waits for them."""
        (h, w, _), per_frame = node.in_shapes[0], self.inputs_per_frame(node)
        per_input = (int(cycles) - int(h * w)) // per_frame
        return per_frame * max(per_input, s_out) + int(h * w) * s_in

    def packed_ffs(self, node, e, s_out):
        """The level-table line-buffer kernel requantises each output pack as it leaves
        (vecq_requant_out); the adder graphs and the streamed kernel hold the whole pixel."""
        return e.ffs if e.adder_graph or e.weights != "onchip" else one_pack_in_flight(node, e, s_out)

    def stream_buffers(self, e, node):
        # vecq_conv_stream_lines: filt_height + 1 rows, n_chan banks; reading overlaps nothing
        h, w, c = node.in_shapes[0]
        e.cycles += int(h * w)
        add_buffer(e, c, (int(node.layer.kernel[0]) + 1) * int(w), node.in_types[0].width)


class Conv2DMapping(_ConvMapping):
    kind = "conv2d"

    hls_class = "VecQConv2D"

    def products_per_input(self, node):
        return self.window_products(node) * int(node.out_shape[-1])


class DepthwiseConv2DMapping(_ConvMapping):
    kind = "depthwise_conv2d"

    hls_class = "VecQDepthwiseConv2D"

    def products_per_input(self, node):
        return self.window_products(node)

    def input_group(self, node):
        return 1  # one product per input value and tap


class ReLUMapping(_Elementwise, Mapping):
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

    def pack_rule(self, node):
        return "free" if self.ours(node) else None  # vecq_pool2d indexes packs; hls4ml's pool reads pixels

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

    def estimate(self, node, reuse, io_type):
        shape, bits = node.out_shape, int(node.layer.out_type.width)
        luts = 0.5 * int(shape[-1]) * bits * int(np.prod(node.layer.pool))  # a comparator/adder per window
        return self.logic_estimate(node, io_type, luts, int(np.prod(shape[:-1])))

    def stream_need(self, node):
        """Ours (vecq_pool2d): row oh after input rows oh * stride + pool_height. hls4ml's (stride ==
        size): pixel (oh, ow) as the window's bottom-right input pixel arrives."""
        (h, w, _), (oh, ow) = node.in_shapes[0], node.out_shape[:2]
        (ph, pw), (sh, _) = node.layer.pool, node.layer.stride
        if self.ours(node):
            return row_need(np.arange(int(oh)) * int(sh) + int(ph), ow, w)
        r, c = np.meshgrid(np.arange(int(oh)), np.arange(int(ow)), indexing="ij")
        return (((r + 1) * int(ph) - 1) * int(w) + (c + 1) * int(pw)).reshape(-1).astype(np.int64)

    def stream_buffers(self, e, node):
        # hls4ml's streaming pool (stride == size) and ours (vecq_pool2d, any stride): pool_height
        # rows, n_chan banks (ours keeps one more row only for packs that straddle rows, which
        # hls4ml's one-pixel packs never do); each output row leaves as its last input row arrives
        h, w, c = node.in_shapes[0]
        e.cycles = max(e.cycles, int(h * w))
        add_buffer(e, c, int(node.layer.pool[0]) * int(w), node.in_types[0].width)


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

    def stream_need(self, node):
        return np.array([stream_tokens(node.in_shapes[0])], dtype=np.int64)  # the whole frame, then the vector

    def pack_rule(self, node):
        return "free"  # vecq_global_avg_pool counts the channel of each value across packs

    def estimate(self, node, reuse, io_type):
        """One channel per cycle; 0.5 LUT per input bit of a pixel."""
        channels, bits = int(node.in_shapes[0][-1]), int(node.in_types[0].width)
        return self.logic_estimate(node, io_type, 0.5 * channels * bits * (len(node.layer.inputs) or 1), channels)


class AddMapping(_Elementwise, Mapping):
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

    def stream_buffers(self, e, node):
        # pixel by pixel, one pack of each input per output pack; the FIFOs that let the skip
        # branch wait for the other are sized from the schedule and charged by the estimator
        # (vecq_hw.hls.fifos), not here
        return


class FlattenMapping(_NoLogic, Mapping):
    kind = "flatten"

    def class_name(self, node, opts):
        return "Reshape"

    def attrs(self, node, opts):
        return {"target_shape": [int(node.out_shape[0])]}


for _m in (InputMapping(), DenseMapping(), Conv2DMapping(), DepthwiseConv2DMapping(), ReLUMapping(), MaxPoolMapping(),
           AvgPoolMapping(), GlobalAvgPoolMapping(), AddMapping(), FlattenMapping()):
    register(_m)
