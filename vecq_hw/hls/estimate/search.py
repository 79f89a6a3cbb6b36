"""The plans ``fit`` composes: per-layer costs estimated once, assembled per target II.

Every weighted layer's estimate is computed once per option: each legal reuse factor R with its
codes on chip, and, where the part has DDR (and UltraRAM for 'uram'), each R at which the layer
can stream its codes (one AXI word a cycle: :mod:`vecq_hw.hls.offchip`). A plan is an
assignment of one option per layer; its :class:`~.model.Estimate` is assembled from the cached
per-layer estimates exactly as :func:`~.model.estimate` would compute it (the same mapping calls,
the same FIFO row), so composing thousands of plans costs no re-estimation.

For a target initiation interval T (:meth:`Costs.plan_for`): every layer takes the largest R whose
cycles stay <= T with its codes on chip (the fewest resources that keep up: a balanced pipeline);
then, while the on-chip memory (BRAM18, or UltraRAM) exceeds the budget, layers move their codes
off chip in the order that frees the most memory per DDR byte (few passes per frame first: a
dense layer reads its table once a frame, a conv once per output pixel), to UltraRAM copies first
where the part has room, each at the largest streaming R that still keeps up with T.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ... import ir
from ..folding import divisors, products_per_input, weighted_nodes
from ..mappings import mapping_for
from ..offchip import legal_streamed_reuse
from .model import Estimate, layer_estimate, fifo_estimate
from .parts import Part


@dataclass
class _Layer:
    name: str
    onchip: dict = field(default_factory=dict)  # R -> LayerEstimate
    streamed: dict = field(default_factory=dict)  # (mode, R) -> LayerEstimate


class Costs:
    """Cached layer estimates of one model, part, io type and clock; plans assembled from them."""

    def __init__(self, model: ir.Model, part: Part, io_type: str, clock_period: float):
        self.model, self.part, self.io_type, self.clock_period = model, part, io_type, float(clock_period)
        self.nodes = model.nodes()
        weighted = {n.layer.name for n in weighted_nodes(model)}
        self.fixed = {n.layer.name: layer_estimate(mapping_for(n), n, 0, io_type) for n in self.nodes
                      if n.layer.name not in weighted}
        self.fifos = fifo_estimate(model, part) if io_type == "io_stream" else None
        self.layers = {name: self._options(n) for n in self.nodes if (name := n.layer.name) in weighted}

    def _modes(self, node) -> tuple[str, ...]:
        if self.io_type != "io_stream" or not self.part.has_ddr or not mapping_for(node).streams_weights(node):
            return ()
        return ("uram", "offchip") if self.part.uram else ("offchip",)

    def _options(self, node) -> _Layer:
        mapping, p = mapping_for(node), products_per_input(node)
        out = _Layer(node.layer.name)
        for r in divisors(p):
            out.onchip[r] = layer_estimate(mapping, node, r, self.io_type)
        least = legal_streamed_reuse(p, int(node.layer.bits), self.part.axi_bits or 1)
        for mode in self._modes(node):
            for r in divisors(p):
                if r >= least:
                    sl = mapping.streamed_layer(node, r, mode, self.part.axi_bits)
                    out.streamed[(mode, r)] = layer_estimate(mapping, node, r, self.io_type, sl)
        return out

    def cycle_counts(self) -> list[int]:
        """Every cycle count some layer option has."""
        return sorted({e.cycles for lyr in self.layers.values()
                       for e in [*lyr.onchip.values(), *lyr.streamed.values()]})

    def assemble(self, choice: dict) -> Estimate:
        """The Estimate of a plan {layer: LayerEstimate option} (what estimate() computes for it)."""
        est = Estimate(self.model.name, self.part, self.io_type, self.clock_period)
        for n in self.nodes:
            est.layers.append(choice.get(n.layer.name) or self.fixed[n.layer.name])
        est.fifos = self.fifos
        return est

    def plan_for(self, t: int, budget: dict) -> Estimate:
        """The balanced plan for target II ``t``, with codes moved off chip while the on-chip
        memory exceeds ``budget`` ({resource: amount}), then moved back where they fit after all."""
        choice = {}
        for name, lyr in self.layers.items():
            ok = [r for r, e in lyr.onchip.items() if e.cycles <= t]
            choice[name] = lyr.onchip[max(ok) if ok else max(lyr.onchip)]
        onchip = dict(choice)
        used = {r: self.assemble(choice).total(r) for r in ("bram18", "uram")}
        moved = []
        for name in self._offload_order(choice):
            if used["bram18"] <= budget["bram18"]:
                break
            option = self._streamed_option(name, t, budget["uram"] - used["uram"])
            if option is not None:
                self._swap(choice, used, name, option)
                moved.append(name)
        for name in reversed(moved):  # a layer moved early may not have been needed off chip
            if used["bram18"] + onchip[name].bram18 - choice[name].bram18 <= budget["bram18"]:
                self._swap(choice, used, name, onchip[name])
        return self.assemble(choice)

    @staticmethod
    def _swap(choice: dict, used: dict, name: str, option) -> None:
        for r in used:
            used[r] += getattr(option, r) - getattr(choice[name], r)
        choice[name] = option

    def _offload_order(self, choice: dict) -> list[str]:
        """Layers holding on-chip weights, fewest DDR bytes per frame (if streamed) per BRAM18 freed first."""
        def key(name):
            ddr = max([e.ddr_bytes for e in self.layers[name].streamed.values()] + [0.0])
            return ddr / max(choice[name].memory["weights"]["bram18"], 1e-9)
        return sorted((n for n in choice if self.layers[n].streamed and choice[n].memory.get("weights")), key=key)

    def _streamed_option(self, name: str, t: int, uram_left: float):
        """The layer's streamed option at the largest R that keeps up with ``t``: a URAM copy
        while the budget has room for it, else read from DDR every pass (None: none keeps up)."""
        for mode in ("uram", "offchip"):
            fits = [(r, e) for (m, r), e in self.layers[name].streamed.items()
                    if m == mode and e.cycles <= t and (mode != "uram" or e.uram <= uram_left)]
            if fits:
                return max(fits, key=lambda x: x[0])[1]
        return None


__all__ = ["Costs"]
