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
from ..mappings_da import mapping_for
from ..options import HlsOptions
from ..offchip import legal_streamed_reuse
from ..packs import resolve_packs
from .model import Estimate, layer_estimate, fifo_estimate
from .packed import choose_packs, packed_layers
from .parts import Part


@dataclass
class _Layer:
    name: str
    onchip: dict = field(default_factory=dict)  # R -> LayerEstimate
    streamed: dict = field(default_factory=dict)  # (mode, R) -> LayerEstimate


class Costs:
    """Cached layer estimates of one model, part, io type and clock; plans assembled from them."""

    def __init__(self, model: ir.Model, part: Part, io_type: str, clock_period: float, pinned: dict | None = None,
                 da: dict | None = None, packs: dict | None = None, slicing: bool = False):
        self.model, self.part, self.io_type, self.clock_period = model, part, io_type, float(clock_period)
        # io_stream: the packs the caller fixed ({layer: k}); ``slicing``: the others chosen per plan
        self.packs = resolve_packs(model, packs) if io_type == "io_stream" else {}
        self.slicing = bool(slicing) and io_type == "io_stream"
        self._fifo_rows: dict = {}
        self._fifo_memo: dict = {}
        self.da = da or {}  # strategy, da_max_products: an on-chip layer at R = 1 may be da4ml's adder graph
        self.nodes = model.nodes()
        weighted = {n.layer.name for n in weighted_nodes(model)}
        self.pinned = _checked_pins(model, pinned or {}, part, io_type)
        self.fixed = {n.layer.name: layer_estimate(mapping_for(n), n, 0, io_type) for n in self.nodes
                      if n.layer.name not in weighted}
        self.fifos = self.fifo_row(self.packs) if io_type == "io_stream" else None
        self.layers = {name: self._options(n) for n in self.nodes if (name := n.layer.name) in weighted}

    def _modes(self, node) -> tuple[str, ...]:
        if self.io_type != "io_stream" or not self.part.has_ddr or not mapping_for(node).streams_weights(node):
            return ()
        return ("uram", "offchip") if self.part.uram else ("offchip",)

    def _options(self, node) -> _Layer:
        mapping, p = mapping_for(node), products_per_input(node)
        out = _Layer(node.layer.name)
        pin = self.pinned.get(node.layer.name)
        for r in divisors(p) if pin in (None, "onchip") else ():
            opts = HlsOptions(reuse={node.layer.name: r}, **self.da)
            out.onchip[r] = layer_estimate(mapping_for(node, opts), node, r, self.io_type)
        least = legal_streamed_reuse(p, int(node.layer.bits), self.part.axi_bits or 1)
        for mode in self._modes(node) if pin in (None, "offchip", "uram") else ():
            if pin not in (None, mode):
                continue
            for r in divisors(p):
                if r >= least:
                    sl = mapping.streamed_layer(node, r, mode, self.part.axi_bits)
                    out.streamed[(mode, r)] = layer_estimate(mapping, node, r, self.io_type, sl)
        return out

    def cycle_counts(self) -> list[int]:
        """Every cycle count some layer option has."""
        return sorted({e.cycles for lyr in self.layers.values()
                       for e in [*lyr.onchip.values(), *lyr.streamed.values()]})

    def fifo_row(self, packs: dict):
        """The FIFO row for these resolved packs (computed once per distinct packs)."""
        key = tuple(sorted(packs.items()))
        if key not in self._fifo_rows:
            self._fifo_rows[key] = fifo_estimate(self.model, self.part, packs, self._fifo_memo)
        return self._fifo_rows[key]

    def assemble(self, choice: dict) -> Estimate:
        """The Estimate of a plan {layer: LayerEstimate option} (what estimate() computes for it),
        with the caller's packs; ``sliced`` chooses the rest."""
        est = Estimate(self.model.name, self.part, self.io_type, self.clock_period)
        for n in self.nodes:
            est.layers.append(choice.get(n.layer.name) or self.fixed[n.layer.name])
        return self._with_packs(est, self.packs)

    def _with_packs(self, est: Estimate, packs: dict) -> Estimate:
        whole = est.layers
        est.packs = dict(packs)
        est.layers = packed_layers(self.model, whole, est.packs)
        est.fifos = self.fifo_row(est.packs) if self.io_type == "io_stream" else None
        return est

    def sliced(self, est: Estimate, whole: list) -> Estimate:
        """``est`` (layers' whole-pixel cycles ``whole``) with every pack not fixed by the caller
        the narrowest that keeps its II (:func:`.packed.choose_packs`)."""
        if not self.slicing:
            return est
        return self._with_packs(est, choose_packs(self.model, whole, est.ii, self.packs))

    def plan_for(self, t: int, budget: dict) -> Estimate:
        """The balanced plan for target II ``t``, with codes moved off chip while the on-chip
        memory exceeds ``budget`` ({resource: amount}), then moved back where they fit after all."""
        choice = {}
        for name, lyr in self.layers.items():  # a layer pinned off chip has only its streamed options
            options = lyr.onchip or {r: e for (_, r), e in lyr.streamed.items()}
            ok = [r for r, e in options.items() if e.cycles <= t]
            choice[name] = options[max(ok) if ok else min(options)]  # none keeps up: the fastest
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
        est = self.assemble(choice)
        return self.sliced(est, [choice.get(n.layer.name) or self.fixed[n.layer.name] for n in self.nodes])

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


def _checked_pins(model: ir.Model, pinned: dict, part: Part, io_type: str) -> dict:
    """The caller's fixed weight placements {layer: mode}, each checked (one line naming it)."""
    from ...errors import VecQError
    from ..offchip import check_streamed
    from ..options import WEIGHT_MODES

    nodes = {n.layer.name: n for n in weighted_nodes(model)}
    for name, mode in pinned.items():
        if name not in nodes:
            raise VecQError(f"weights: '{name}' is not a weighted layer of model '{model.name}'", field="weights")
        if mode not in WEIGHT_MODES:
            raise VecQError(f"expected one of {', '.join(WEIGHT_MODES)}, got {mode!r}", field=f"weights.{name}")
        if mode != "onchip":
            node, p = nodes[name], products_per_input(nodes[name])
            check_streamed(name, node.layer.kind, mode, products=p, reuse=p, bits=int(node.layer.bits),
                           io_type=io_type, part=part)
    return dict(pinned)


__all__ = ["Costs"]
