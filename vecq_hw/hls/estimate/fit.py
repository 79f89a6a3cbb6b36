"""``fit``: the per-layer folding that fits a part's budget at the best balanced throughput.

Search: for a target initiation interval T (cycles per frame), every weighted layer takes the
LARGEST reuse factor whose cycles stay <= T (the fewest resources that keep up with T), so no
layer is much faster than the slowest: the pipeline is balanced. T runs over every cycle count
a layer can have, from the unfolded design's II up (sorted); for 'throughput' the smallest T whose plan fits the budget
(part x headroom, every resource) wins, for 'latency' the fitting plan with the least summed
latency. Each candidate is checked with the full estimate, so the returned plan is never above
the budget; when none fits, ``plan`` is None and ``closest`` is the most folded plan, with the
resources it exceeds. ``tried`` keeps every plan estimated on the way (for the plot in :mod:`.plot`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ... import ir
from ...errors import VecQError
from ..folding import divisors, products_per_input, weighted_nodes
from ..options import DEFAULTS as HLS_DEFAULTS
from .model import Estimate, estimate
from .parts import RESOURCES, get_part

TARGETS = ("throughput", "latency")


@dataclass
class FitResult:
    plan: Estimate | None  # None: nothing fits
    closest: Estimate  # the plan itself, or the most folded one when nothing fits
    headroom: float
    target: str
    candidates: int
    # every plan the search estimated (both io types when fit chose the io type), the chosen or
    # closest one included: what the LUTs-vs-fps plot (:mod:`.plot`) shows; never used to choose
    tried: list[Estimate] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.plan is not None

    def over_budget(self) -> dict[str, float]:
        """Resources of ``closest`` above headroom, with their utilisation."""
        return {r: u for r, u in self.closest.utilisation().items() if u > self.headroom}


def _plan_for(model, options, t: int, kw) -> dict[str, int]:
    plan = {}
    for node in weighted_nodes(model):
        cands = options[node.layer.name]
        ok = [r for r, cyc in cands if cyc <= t]
        plan[node.layer.name] = max(ok) if ok else min(r for r, _ in cands)
    return plan


def fit(model: ir.Model, part=None, *, headroom: float = 0.8, target: str = "throughput", clock_period: float = 5.0,
        io_type: str | None = None, strategy: str = HLS_DEFAULTS.strategy,
        da_max_products: int = HLS_DEFAULTS.da_max_products) -> FitResult:
    """The best fitting plan; ``io_type`` None tries io_parallel and io_stream and keeps the better.

    ``strategy='distributed_arithmetic'``: a layer left at R = 1 is estimated (and built) as
    da4ml's adder graph where that strategy applies to it (:func:`vecq_hw.hls.da.applies`)."""
    if io_type is None:
        results = [fit(model, part, headroom=headroom, target=target, clock_period=clock_period, io_type=io,
                       strategy=strategy, da_max_products=da_max_products)
                   for io in ("io_parallel", "io_stream")]
        ok = [r for r in results if r.ok]
        tried = [e for r in results for e in r.tried]
        if not ok:  # closest: the one exceeding the budget least
            return replace(min(results, key=lambda r: max(r.closest.utilisation().values())), tried=tried)
        key = (lambda r: r.plan.ii) if target == "throughput" else (lambda r: r.plan.latency)
        return replace(min(ok, key=key), tried=tried)
    if target not in TARGETS:
        raise VecQError(f"expected one of {', '.join(TARGETS)}, got {target!r}", field="target")
    if isinstance(headroom, bool) or not isinstance(headroom, (int, float)) or not 0 < headroom <= 1:
        raise VecQError(f"expected a fraction in (0, 1], got {headroom!r}", field="headroom")
    p = get_part(part)
    kw = dict(part=p, clock_period=clock_period, io_type=io_type, strategy=strategy, da_max_products=da_max_products)
    # every layer's (R, cycles) for each legal R, from the estimate itself (one layer at a time)
    options = {}
    for node in weighted_nodes(model):
        name = node.layer.name
        rs = divisors(products_per_input(node))
        options[name] = []
        for r in rs:
            lyr = next(x for x in estimate(model, {name: r}, **kw).layers if x.name == name)
            options[name].append((r, lyr.cycles))
    # no plan is faster than the unfolded one: start at its II, so layers that are faster than the
    # bottleneck fold up to it for free (fewer resources, same throughput)
    floor = estimate(model, {}, **kw).ii
    ts = sorted({floor} | {c for v in options.values() for _, c in v if c >= floor})
    best, seen, tried = None, set(), []
    for t in ts:
        plan = _plan_for(model, options, t, kw)
        key = tuple(sorted(plan.items()))
        if key in seen:
            continue
        seen.add(key)
        est = estimate(model, plan, **kw)
        tried.append(est)
        if not est.fits(headroom):
            continue
        if target == "throughput":
            best = est
            break
        if best is None or est.latency < best.latency:
            best = est
    most_folded = estimate(model, {n: max(r for r, _ in v) for n, v in options.items()}, **kw)
    if tuple(sorted(most_folded.reuse().items())) not in seen:
        tried.append(most_folded)  # the slow end of the curve (estimated anyway)
    if best is not None:
        assert best.fits(headroom)  # the guarantee: never a plan above the budget
    return FitResult(plan=best, closest=best or most_folded, headroom=float(headroom), target=target,
                     candidates=len(seen), tried=tried)


__all__ = ["FitResult", "RESOURCES", "TARGETS", "fit"]
