"""The HLS back end's options, with their defaults and their validation in one place.

Everything that names a back end, an io type, a strategy, a part or a clock reads
:class:`HlsOptions` (the CLI's defaults included), so the defaults cannot differ between
modules. This module imports neither hls4ml nor the simulator: the CLI reads it cheaply.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import VecQError
from ..names import check_clock_period, check_identifier, check_part

BACKENDS = ("Vitis", "Vivado")
IO_TYPES = ("io_parallel", "io_stream")
#: hls4ml's name for building a layer from da4ml's adder graph (R = 1 layers; :mod:`.da`)
DISTRIBUTED_ARITHMETIC = "distributed_arithmetic"
STRATEGIES = ("Latency", "Resource", DISTRIBUTED_ARITHMETIC)
#: where a weighted layer keeps its codes (vecq_hw.hls.offchip): a ROM, DDR read every pass, DDR loaded into URAM once
WEIGHT_MODES = ("onchip", "offchip", "uram")


@dataclass(frozen=True)
class HlsOptions:
    """How to generate an HLS project (hls4ml + our kernels).

    ``backend``: hls4ml back end, 'Vitis' (the default: what the CLI promises) or 'Vivado';
    ``io_type``: 'io_parallel' (arrays) or 'io_stream' (hls::stream FIFOs between layers);
    ``strategy``/``reuse_factor``: hls4ml's; ``part``/``clock_period`` (ns): the target.
    ``reuse``: per-layer reuse factors ``{layer name: R}`` overriding ``reuse_factor`` for that
    weighted layer (folding, :mod:`.folding`: R products share one multiplier slot, II = R).
    ``strategy='distributed_arithmetic'``: every dense/conv/depthwise layer at R = 1 with at most
    ``da_max_products`` products (weights) per output vector or pixel computes them with da4ml's
    adder graph (:mod:`.da`); the others (a ``reuse`` entry R > 1, or a bigger layer: da4ml's
    solve time grows about as fan-in squared times outputs) keep their usual kernel.
    ``reuse_factor`` > 1 (every layer folded, so none would use it) is refused.
    ``weights``: per-layer weight memory ``{layer name: 'onchip' | 'offchip' | 'uram'}`` (default
    'onchip'; :mod:`.offchip`); ``axi_bits``: the width of a streamed layer's AXI port (None: the
    part's, from configs/hardware/parts.yaml).
    ``packs``: per-tensor io_stream pack widths ``{layer name: k}``: the layer's output stream
    carries k of its channels a token (k divides them; default: whole pixels), :mod:`.packs`.
    ``trace``: the top function also hands every layer's output to hls4ml's tracing hook (code
    under ``#ifndef __SYNTHESIS__``, off unless a testbench turns it on), so that
    ``hls.predict(..., trace=True)`` reads each layer's C-simulated values; synthesis sees the
    same design either way.
    """

    backend: str = "Vitis"
    io_type: str = "io_parallel"
    strategy: str = "Latency"
    reuse_factor: int = 1
    part: str = "xcu250-figd2104-2L-e"
    clock_period: float = 5.0
    project_name: str = "myproject"
    reuse: dict = field(default_factory=dict)
    da_max_products: int = 4096
    weights: dict = field(default_factory=dict)
    axi_bits: int | None = None
    trace: bool = False
    packs: dict = field(default_factory=dict)

    def __post_init__(self):
        self.validate()

    def validate(self) -> "HlsOptions":
        """Refuse a bad option with one line naming it (``VecQError``)."""
        def bad(fld, want, got):
            raise VecQError(f"expected {want}, got {got!r}", field=fld)

        if self.backend not in BACKENDS:
            bad("backend", " or ".join(BACKENDS), self.backend)
        if self.io_type not in IO_TYPES:
            bad("io_type", " or ".join(IO_TYPES), self.io_type)
        if self.strategy not in STRATEGIES:
            bad("strategy", " or ".join(STRATEGIES), self.strategy)
        if isinstance(self.reuse_factor, bool) or not isinstance(self.reuse_factor, int) or self.reuse_factor < 1:
            bad("reuse_factor", "a positive integer", self.reuse_factor)
        if self.strategy == DISTRIBUTED_ARITHMETIC and self.reuse_factor != 1:
            bad("reuse_factor", f"1 with strategy {DISTRIBUTED_ARITHMETIC} (it builds layers at R = 1; fold chosen "
                "layers with reuse={name: R}, --reuse NAME=R)", self.reuse_factor)
        if (isinstance(self.da_max_products, bool) or not isinstance(self.da_max_products, int)
                or self.da_max_products < 1):
            bad("da_max_products", "a positive integer", self.da_max_products)
        def positive(v):
            return not isinstance(v, bool) and isinstance(v, int) and v >= 1

        _check_layer_map("reuse", self.reuse, "reuse factor", "a positive integer", positive)
        _check_layer_map("weights", self.weights, " | ".join(WEIGHT_MODES), " or ".join(WEIGHT_MODES),
                         lambda mode: mode in WEIGHT_MODES)
        if self.axi_bits is not None and (isinstance(self.axi_bits, bool) or not isinstance(self.axi_bits, int)
                                          or self.axi_bits < 8 or self.axi_bits & (self.axi_bits - 1)
                                          or self.axi_bits > 1024):
            bad("axi_bits", "a power of two from 8 to 1024", self.axi_bits)
        _check_layer_map("packs", self.packs, "values per token", "a positive integer", positive)
        if self.packs and self.io_type != "io_stream":
            bad("packs", "none in io_parallel (packs are io_stream tokens)", self.packs)
        if self.packs and self.strategy == DISTRIBUTED_ARITHMETIC:
            bad("packs", f"none with strategy {DISTRIBUTED_ARITHMETIC} (its kernels are not checked with sliced "
                "packs)", self.packs)
        check_part(self.part)  # written into build_prj.tcl and hls_config.cfg
        check_clock_period(self.clock_period)
        if not isinstance(self.trace, bool):
            bad("trace", "true or false", self.trace)
        check_identifier(self.project_name, "project_name")  # the top function and file names
        return self

    def replace(self, **changes) -> "HlsOptions":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_kwargs(cls, base: "HlsOptions | None" = None, **kw) -> "HlsOptions":
        """``base`` (default: the defaults) with the given fields replaced; unknown names refused."""
        names = {f.name for f in dataclasses.fields(cls)}
        for k in kw:
            if k not in names:
                raise VecQError(f"unknown HLS option '{k}', expected one of {sorted(names)}")
        return dataclasses.replace(base or cls(), **kw)

    def reuse_of(self, layer_name: str) -> int:
        """The reuse factor asked for a weighted layer (its own entry, else ``reuse_factor``)."""
        return int(self.reuse.get(layer_name, self.reuse_factor))

    @property
    def kernel_strategy(self) -> str:
        """The strategy hls4ml and our kernels see: hls4ml's own distributed-arithmetic passes
        would claim every layer (ours build it themselves), so they see 'Latency'."""
        return "Latency" if self.strategy == DISTRIBUTED_ARITHMETIC else self.strategy

    def weights_of(self, layer_name: str) -> str:
        """Where a weighted layer keeps its codes ('onchip' unless given)."""
        return str(self.weights.get(layer_name, "onchip"))

    def clock_uncertainty(self) -> str:
        return "27%" if self.backend == "Vitis" else "12.5%"


def _check_layer_map(fld: str, value, what: str, want: str, ok) -> None:
    """A per-layer option {layer name: value}: a mapping, names as keys, every value ok(value)."""
    if not isinstance(value, dict):
        raise VecQError(f"expected a mapping {{layer name: {what}}}, got {value!r}", field=fld)
    for name, v in value.items():
        if not isinstance(name, str) or not name:
            raise VecQError(f"expected layer names as keys, got {name!r}", field=fld)
        if not ok(v):
            raise VecQError(f"expected {want}, got {v!r}", field=f"{fld}.{name}")


DEFAULTS = HlsOptions()

__all__ = ["BACKENDS", "DEFAULTS", "DISTRIBUTED_ARITHMETIC", "HlsOptions", "IO_TYPES", "STRATEGIES", "WEIGHT_MODES"]
