"""HLS mapping of the PQ kinds (``pq_dense``, ``pq_conv2d``): the hls4ml layer each becomes, every
type it pins, its folding facts, its pre-synthesis estimate and the form it is built in. No
hls4ml import here (the hls4ml classes are :mod:`.layers_pq`, registered by :meth:`PqMapping.register_hls`).

Two forms compute the same acc_j (``hls_templates/nnet_vecq_pq.h``), chosen per layer by the
estimate (:meth:`PqMapping.form`: fewer LUTs, then fewer BRAM18; ``codebook_first`` only where R
also divides its own products):

* ``lookup``: per block b and output j, read index a = indices[b, j], then the codeword
  C[a] (d entries) from the codebook ROM and accumulate dot(x_block, C[a]): n_in * n_out products
  per input, like a levels layer with codeword-wide weights;
* ``codebook_first``: multiply every block's inputs by every codeword first,
  p[b, k] = dot(x_block, C[k]) (n_in * K products), then acc_j = sum_b p[b, indices[b, j]]: pays
  when the output channels exceed K.

Cost (:meth:`PqMapping.estimate`), from the primitives of :mod:`.costs` (LUTs per product fitted
on yosys, w-bit input x codeword-wide entries; memories):

* lookup, R = 1: P = n_in * n_out constant products (indices and codebook fold into constants);
  R > 1: P / R product slots (the cheaper of a ROM-fed multiplier or R constant ones), an index
  ROM (R words of one index per product slot), and the codebook ROM once per two codewords read
  a cycle (a dual-port BRAM18 holds 256 x 9 x 8 bits; LUTRAM when small);
* codebook_first, R = 1: n_in * K constant products and, per output, an adder of acc's width per
  block but one (the indices are wiring); R > 1: n_in * K / R product slots, the codebook ROM as
  above, per output unit (ceil(n_out / R) a cycle) one K:1 multiplexer of p's width per block
  ((K - 1) / 3 LUT6 per bit) and its adders, the index ROM (R words of the units' indices), p in
  registers;
* both: the requantisation DSPs and cycles as the levels kinds (R + the output cycles + the fill
  per pixel when folded).

Types (all exact): ``accum`` (acc_j) is the layer's accum_type with AP_TRN / AP_WRAP (on the
input's grid: nothing rounds; a partial sum may wrap, the final acc_j fits); ``part``
(p[b, k]) the exact width of the worst codeword's dot product, or accum's width where that is
narrower (modulo 2^W is all acc_j needs); ``codeword``: ap_int wide enough for every entry;
``idx`` (the indices): ap_uint<index_bits>.
"""

from __future__ import annotations

import math

from .. import ir
from ..fixed import FixedType
from .costs import LayerEstimate, charge_ram, product_luts, requant_and_cycles
from .mappings import Mapping, _ConvMapping, int_type, register
from .mappings_alq import plain

FORMS = ("lookup", "codebook_first")


def part_type(layer: ir.PqWeighted, in_type: FixedType) -> FixedType:
    """p[b, k]'s type: exact over every codeword's dot product, at most accum_type's width."""
    exact = ir.accumulator_type(in_type, layer.codebook.astype("int64").T)
    width = min(exact.width, layer.accum_type.width)
    return FixedType(width=width, integer=width - in_type.frac, signed=True)


def index_type(layer: ir.PqWeighted) -> FixedType:
    return FixedType(width=int(layer.index_bits), integer=int(layer.index_bits), signed=False, kind="int")


def mux_luts(inputs: int) -> float:
    """LUT6 per bit of an inputs:1 multiplexer (a LUT6 is a 4:1 mux, each level takes 3 more)."""
    return max(0.0, (inputs - 1) / 3)


class PqMapping(Mapping):
    """Shared by both kinds (the conv geometry comes from :class:`.mappings._ConvMapping`)."""

    def register_hls(self) -> None:
        from . import layers_pq

        layers_pq.register()

    def types(self, node, opts):
        layer, t_in = node.layer, node.in_types[0]
        return {"result": layer.out_type, "accum": plain(layer.accum_type), "part": part_type(layer, t_in),
                "idx": index_type(layer), "codeword": int_type(layer.codeword_width()),
                "scale": layer.scale_type, "bias": layer.bias_type}

    def attrs(self, node, opts):
        layer = node.layer
        r = int(opts.reuse_of(layer.name))
        rows, cols, chan = layer.view()
        return dict(block=layer.block, codewords=layer.codewords, n_blocks=layer.n_blocks, view_rows=rows,
                    view_cols=cols, view_chan=chan,
                    codebook_first="true" if self.form(node, r, opts.io_type) == "codebook_first" else "false",
                    indices_data=layer.indices.astype("int64"), codebook_data=layer.codebook.astype("int64"),
                    scale_mantissas=layer.scale, scale_frac=layer.scale_type.frac,
                    bias_mantissas=layer.bias, bias_frac=layer.bias_type.frac,
                    vecq_types={"idx": index_type(layer), "codeword": int_type(layer.codeword_width()),
                                "scale": layer.scale_type, "bias": layer.bias_type, "out": layer.out_type},
                    strategy=opts.strategy, reuse_factor=r, **self.geometry(node))

    def geometry(self, node) -> dict:
        return {"n_in": int(node.in_shapes[0][0]), "n_out": int(node.out_shape[0])}

    def products_per_input(self, node):
        return node.layer.fan_in() * node.layer.n_out

    # -- the two forms -------------------------------------------------------------------------
    def forms(self, node, reuse: int, io_type: str = "io_parallel") -> dict[str, LayerEstimate]:
        """The estimate of each form this layer can be built in at reuse factor ``reuse``."""
        out = {"lookup": self._lookup(node, reuse)}
        if (node.layer.fan_in() * node.layer.codewords) % reuse == 0:
            out["codebook_first"] = self._codebook_first(node, reuse)
        return {k: self._finish(e, node, reuse, io_type) for k, e in out.items()}

    def form(self, node, reuse: int, io_type: str = "io_parallel") -> str:
        """The form the estimate prefers: fewer LUTs, then fewer BRAM18 (lookup on a tie)."""
        est = self.forms(node, reuse, io_type)
        return min(est, key=lambda k: (round(est[k].luts, 6), est[k].bram18, FORMS.index(k)))

    def estimate(self, node, reuse, io_type):
        return self.forms(node, reuse, io_type)[self.form(node, reuse, io_type)]

    def _widths(self, node) -> tuple[int, int, int]:
        layer = node.layer
        return int(node.in_types[0].width), layer.codeword_width(), int(layer.accum_type.width)

    def _codebook_rom(self, e: LayerEstimate, layer, codewords_per_cycle: int) -> None:
        """The codebook ROM, one dual-port copy per two codewords read a cycle."""
        copies = math.ceil(codewords_per_cycle / 2)
        charge_ram(e, "weights", copies, layer.codewords, layer.block * layer.codeword_width())

    def _lookup(self, node, r: int) -> LayerEstimate:
        layer = node.layer
        w, cw, _ = self._widths(node)
        p = self.products_per_input(node)
        e = LayerEstimate(layer.name, layer.kind, reuse=r, products=p, slots=p // r)
        e.luts += product_luts(p, r, cw, w)
        if r > 1:
            charge_ram(e, "weights", 1, r, e.slots * int(layer.index_bits))  # the index ROM
            self._codebook_rom(e, layer, math.ceil(e.slots / layer.block))
        e.ffs += layer.n_out * int(layer.accum_type.width)
        return e

    def _codebook_first(self, node, r: int) -> LayerEstimate:
        layer = node.layer
        w, cw, acc_w = self._widths(node)
        part_w = int(part_type(layer, node.in_types[0]).width)
        p = layer.fan_in() * layer.codewords
        e = LayerEstimate(layer.name, layer.kind, reuse=r, products=self.products_per_input(node), slots=p // r)
        e.luts += product_luts(p, r, cw, w)
        nb, units = layer.n_blocks, math.ceil(layer.n_out / r)
        e.luts += units * max(nb - 1, 0) * acc_w
        if r > 1:
            e.luts += units * nb * part_w * mux_luts(layer.codewords)
            charge_ram(e, "weights", 1, r, units * nb * int(layer.index_bits))  # the index ROM
            self._codebook_rom(e, layer, math.ceil(e.slots / layer.block))
        e.ffs += nb * layer.codewords * part_w + layer.n_out * acc_w
        return e

    def _finish(self, e: LayerEstimate, node, r: int, io_type: str) -> LayerEstimate:
        """Requantisation DSPs, cycles and latency (as the levels kinds), io registers."""
        layer = node.layer
        requant_and_cycles(e, layer.n_out, r, self.inputs_per_frame(node), int(layer.accum_type.width),
                           int(layer.scale_type.width))
        return self.add_io(e, node, io_type)


@register
class PqDenseMapping(PqMapping):
    kind = "pq_dense"

    def class_name(self, node, opts):
        return "VecQPqDense"


@register
class PqConv2DMapping(PqMapping):
    kind = "pq_conv2d"
    geometry = _ConvMapping.geometry
    inputs_per_frame = _ConvMapping.inputs_per_frame
    stream_buffers = _ConvMapping.stream_buffers

    def class_name(self, node, opts):
        return "VecQPqConv2D"


__all__ = ["FORMS", "PqConv2DMapping", "PqDenseMapping", "PqMapping", "index_type", "mux_luts", "part_type"]
