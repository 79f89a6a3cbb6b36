"""The LUT figure of the HLS back end's distributed-arithmetic layers, counted by yosys.

What Vitis HLS makes of the generated C++ needs Vitis. What we can count here is the same
adder graph as gates: da4ml's Verilog of the very ``CombLogic`` the layer's C++ was emitted from
(``vecq_hw.hls.da``), mapped by our yosys runner (``vecq_hw.rtl.synth``). Per layer, two designs:

* ``adder``: the adder graph alone (x -> acc), the figure of the DA product;
* ``layer``: the same graph followed by the layer's scale, bias and ONE requantisation as
  ``vecq-hw rtl`` builds them (``rtl.trace_weighted``): the whole layer in LUTs, comparable with
  an RTL design (the C++ leaves that tail to the HLS tool: constant multipliers in LUTs or DSPs).

A conv layer's graph serves one output pixel per cycle: ``pixels`` says how many times the
fully unrolled ``vecq-hw rtl`` design instantiates it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from .. import ir


@dataclass
class DaLayerLuts:
    layer: str
    kind: str
    pixels: int  # output vectors per frame: 1 (dense) or the output pixels (conv, depthwise)
    adders: int
    da4ml_cost: float  # da4ml's own LUT estimate of the adder graph (what `estimate` charges)
    adder_luts: int  # yosys LUTs of the adder graph alone
    adder_carry: int
    layer_luts: int  # yosys LUTs of the graph + scale, bias and requantisation
    layer_carry: int

    def to_dict(self) -> dict:
        return asdict(self)


def da_layer_luts(model: ir.Model, work_dir, hls_options=None, rtl_options=None, *,
                  adder: bool = True) -> list[DaLayerLuts]:
    """yosys counts of every layer ``hls_options`` (default: strategy distributed_arithmetic)
    builds from da4ml's adder graph; the Verilog projects are written under ``work_dir``.
    ``adder=False`` maps only the whole layers (``adder_luts``/``adder_carry`` are then -1)."""
    from ..hls import da
    from ..hls.folding import inputs_per_frame
    from ..hls.options import DISTRIBUTED_ARITHMETIC, HlsOptions
    from ..rtl import RtlOptions, synth, trace_weighted, write_logic

    opts = hls_options or HlsOptions(strategy=DISTRIBUTED_ARITHMETIC)
    ropts = rtl_options or RtlOptions()
    work = Path(work_dir)
    rows = []
    for node in model.nodes():
        if not da.applies(node, opts):
            continue
        name = node.layer.name
        k = da.kernel(node)
        graph = (synth(write_logic(k.comb, work / name / "adder", ropts, name=f"{name}_adder", overwrite=True))
                 if adder else None)
        whole = trace_weighted(node.layer, node.in_types[0], k.n_in, k.solution, ropts)
        layer = synth(write_logic(whole, work / name / "layer", ropts, name=name, overwrite=True))
        rows.append(DaLayerLuts(layer=name, kind=node.layer.kind, pixels=inputs_per_frame(node), adders=k.adders,
                                da4ml_cost=k.cost, adder_luts=graph.luts if graph else -1,
                                adder_carry=graph.carry if graph else -1,
                                layer_luts=layer.luts, layer_carry=layer.carry))
    return rows


__all__ = ["DaLayerLuts", "da_layer_luts"]
