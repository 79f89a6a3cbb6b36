"""Distributed arithmetic: a weighted layer's integer product from da4ml's adder graph, as HLS C++.

With ``--strategy distributed_arithmetic`` (hls4ml's name) a dense, conv2d or depthwise layer at
R = 1 computes ``acc = x . d`` (d = levels[codes], constants) with da4ml's solution of the
constant matrix-vector product (CMVM): a shared shift-and-add graph, the same solver and
settings ``vecq-hw rtl`` uses (:data:`SOLVER`). The graph is traced into a da4ml ``CombLogic``
(x -> acc) and emitted with da4ml's own HLS code generator (``ssa_gen``/``output_gen``): one
line per adder, each value in the ``ap_fixed`` type of its da4ml interval. That interval holds
every value the adder can produce and its step divides them, so no line rounds or wraps: acc is
exact, then it enters ``accum_t`` (the worst-case bound of the sum, so exact too) and the kernel
(``nnet_vecq_da.h``) applies our scale, bias and ONE requantisation. The C simulation proves it
against the simulator (tests/test_hls_da.py).

    matrix(layer)            (P, n_out) integer matrix of one output vector / output pixel
    kernel(node)             DaKernel: the solved CMVM and its CombLogic (cached per matrix/input)
    applies(node, opts)      this layer is built this way under these options
    cpp_product(kernel)      the ``da_product`` member of the layer's config struct (C++)

Conv layers use the (kh*kw*c_in, c_out) matrix once per output pixel (the window in weight-table
order, zeros in the padding); depthwise the block-diagonal (kh*kw*c, c) matrix (channel c's
window feeds only output c, so this is one CMVM per channel). da4ml is imported on first use:
the estimator and the CLI import this module cheaply.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .. import ir
from ..fixed import FixedType
from .options import DISTRIBUTED_ARITHMETIC, HlsOptions

#: da4ml's CMVM settings, those of ``vecq_hw.rtl.RtlOptions``' defaults (``adder_size``,
#: ``carry_size``, ``hard_dc``: no delay constraint), so the adder graph is the one
#: ``vecq-hw rtl`` builds (tests/test_hls_da.py checks they agree)
SOLVER = {"adder_size": 1, "carry_size": -1, "hard_dc": -1}
#: layer kinds with a distributed-arithmetic form
KINDS = ("dense", "conv2d", "depthwise_conv2d")
#: da4ml opcodes a CMVM trace holds: input, quantise (to the input's own type: exact), a +/- b << s
_CMVM_OPCODES = {-1, 3, 0, 1}


@dataclass(frozen=True)
class DaKernel:
    """One layer's solved CMVM: ``comb`` maps the P inputs to the n_out accumulators."""

    comb: object  # da4ml.types.CombLogic
    solution: object  # da4ml.cmvm Solution: ``solution(list of FixedVariable)`` -> acc values
    n_in: int
    n_out: int

    @property
    def cost(self) -> float:
        """da4ml's own LUT estimate of the adder graph."""
        return float(self.comb.cost)

    @property
    def adders(self) -> int:
        return sum(1 for op in self.comb.ops if op.opcode in (0, 1))


def matrix(layer: ir.Weighted) -> np.ndarray:
    """The (P, n_out) integer matrix d of one output vector (dense) or output pixel (conv)."""
    d = layer.multipliers().astype(np.int64)
    if layer.kind != "depthwise_conv2d":
        return d.reshape(-1, d.shape[-1])
    kh, kw, c = d.shape
    out = np.zeros((kh, kw, c, c), dtype=np.int64)
    out[:, :, np.arange(c), np.arange(c)] = d  # window row (kh, kw, c) feeds output c only
    return out.reshape(-1, c)


def _kif(t: FixedType) -> tuple[int, int, int]:
    """da4ml's (keep_negative, integer bits without sign, fractional bits) of an ap type."""
    return int(t.signed), t.integer - int(t.signed), t.frac


def applies(node: ir.Node, opts: HlsOptions) -> bool:
    """Whether this layer is built from da4ml's adder graph under ``opts``: strategy
    distributed_arithmetic, a kind with that form, R = 1, codes on chip (a layer whose codes
    stream from DDR keeps its streamed kernel) and at most ``da_max_products`` products (weights)
    per output vector or pixel."""
    layer = node.layer
    if opts.strategy != DISTRIBUTED_ARITHMETIC or layer.kind not in KINDS:
        return False
    return (opts.reuse_of(layer.name) == 1 and opts.weights_of(layer.name) == "onchip"
            and int(layer.codes.size) <= opts.da_max_products)


def kernel(node: ir.Node) -> DaKernel:
    """The layer's solved and traced CMVM (cached: the estimate, fit and the writer ask again)."""
    d = matrix(node.layer)
    return _solve(d.tobytes(), d.shape, _kif(node.in_types[0]))


@lru_cache(maxsize=64)
def _solve(data: bytes, shape: tuple[int, int], kif: tuple[int, int, int]) -> DaKernel:
    from da4ml.cmvm import solve
    from da4ml.trace import FixedVariableArrayInput, HWConfig, comb_trace
    from da4ml.types import QInterval

    d = np.frombuffer(data, dtype=np.int64).reshape(shape)
    # da4ml keeps binary points as Decimal scale factors; enough digits keep them exact
    with decimal.localcontext() as ctx:
        ctx.prec = 200
        hw = HWConfig(SOLVER["adder_size"], SOLVER["carry_size"], -1)
        inp = FixedVariableArrayInput((shape[0],), hwconf=hw)
        xs = list(np.asarray(inp.quantize(*kif)._vars, dtype=object))
        qints = [QInterval(float(v.low), float(v.high), float(v.step)) for v in xs]
        sol = solve(np.ascontiguousarray(d.astype(np.float32)), qintervals=qints, latencies=[0.0] * shape[0],
                    **SOLVER)
        comb = comb_trace(inp, list(sol(xs)), keep_dead_inputs=True)
    bad = {op.opcode for op in comb.ops} - _CMVM_OPCODES
    assert not bad, f"da4ml CMVM trace holds opcodes {sorted(bad)} the HLS form does not expect"
    return DaKernel(comb=comb, solution=sol, n_in=int(shape[0]), n_out=int(shape[1]))


def cpp_product(k: DaKernel, indent: str = "    ") -> str:
    """``template <class x_T> static void da_product(const x_T model_inp[P], accum_t model_out[N])``:
    da4ml's HLS lines for the adder graph, a member of the layer's config struct."""
    from da4ml.codegen.hls.hls_codegen import kif_to_vitis_type, output_gen, ssa_gen

    lines = ssa_gen(k.comb, print_latency=False, typestr_fn=kif_to_vitis_type)
    lines += output_gen(k.comb, typestr_fn=kif_to_vitis_type)
    body = "".join(f"{indent * 2}{line}\n" for line in lines)
    return (f"{indent}// acc = x . d: da4ml's adder graph of the layer's constant matrix ({k.adders} adders, da4ml's\n"
            f"{indent}// estimate {k.cost:.0f} LUTs); each value's ap_fixed type is da4ml's interval of it: exact\n"
            f"{indent}template <class x_T> static void da_product(const x_T model_inp[{k.n_in}], "
            f"accum_t model_out[{k.n_out}]) {{\n"
            f"{indent * 2}#pragma HLS INLINE\n{indent * 2}using nnet::bit_shift;\n{body}{indent}}}\n")


__all__ = ["DaKernel", "KINDS", "SOLVER", "applies", "cpp_product", "kernel", "matrix"]
