"""``fit``: the per-layer folding and weight placement that fits a part, over the whole range.

Search (:mod:`.search`): for a target initiation interval T (cycles per frame), every weighted
layer takes the LARGEST reuse factor whose cycles stay <= T (the fewest resources that keep up
with T: a balanced pipeline), and layers move their codes off chip (an UltraRAM copy, or read
from DDR every pass) while the on-chip memory exceeds the budget. T runs over every cycle count a
layer option has, from the unfolded design's II up. Every plan on the way is kept (``tried``);
those within part x headroom on every resource (the DDR's peak bandwidth included) are the
fitting plans. 'throughput' chooses the fastest of them, 'latency' the one with the least summed
latency; ``frontier`` lists, from the fastest down to the slowest, one fitting plan per
factor-of-two step of frames/s (the fastest fitting plan no faster than each step), so that a
user sees what each halving of throughput saves. The chosen plan is re-estimated with
:func:`.estimate` (the same numbers: the search composes the same per-layer estimates) and is
never above the budget; when nothing fits, ``plan`` is None and ``closest`` is the most folded
plan (codes moved off chip as far as that helps), with the resources it exceeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ... import ir
from ...errors import VecQError
from ..options import DEFAULTS as HLS_DEFAULTS
from ..options import DISTRIBUTED_ARITHMETIC
from .model import Estimate, estimate
from .parts import RESOURCES, get_part
from .search import Costs

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
    #: fitting plans, fastest first, one per factor-of-two step of frames/s down to the slowest
    frontier: list[Estimate] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.plan is not None

    def over_budget(self) -> dict[str, float]:
        """Resources of ``closest`` above headroom, with their utilisation."""
        return {r: u for r, u in self.closest.utilisation().items() if u > self.headroom}


def frontier(fitting: list[Estimate]) -> list[Estimate]:
    """From the fastest fitting plan down: for each step fastest / 2^k (k = 1, 2, ...) while the
    slowest fitting plan is slower than it, the fastest fitting plan no faster than the step
    (the fewest LUTs among equally fast ones). Every factor-of-two band of frames/s between the
    fastest and the slowest fitting plan holds one when the search left no gap."""
    if not fitting:
        return []
    by_speed = sorted(fitting, key=lambda e: (-e.fps, e.total("luts")))
    out, step = [by_speed[0]], by_speed[0].fps
    while step / 2 >= by_speed[-1].fps:
        step /= 2
        plan = next(e for e in by_speed if e.fps <= step)
        if plan is not out[-1]:
            out.append(plan)
    return out


def _check_args(target, headroom) -> None:
    if target not in TARGETS:
        raise VecQError(f"expected one of {', '.join(TARGETS)}, got {target!r}", field="target")
    if isinstance(headroom, bool) or not isinstance(headroom, (int, float)) or not 0 < headroom <= 1:
        raise VecQError(f"expected a fraction in (0, 1], got {headroom!r}", field="headroom")


def _search(model: ir.Model, part, headroom: float, target: str, clock_period: float, io_type: str, da: dict,
            weights: dict | None = None, packs: dict | None = None, slicing: bool = True) -> FitResult:
    costs = Costs(model, part, io_type, clock_period, weights, da, packs=packs, slicing=slicing)
    budget = part.budget(headroom)
    fastest = {n: min([*lyr.onchip.values(), *lyr.streamed.values()], key=lambda e: e.cycles)
               for n, lyr in costs.layers.items()}
    floor = costs.assemble(fastest).ii
    seen, tried = set(), []
    for t in [floor] + [c for c in costs.cycle_counts() if c > floor] + [2**62]:
        est = costs.plan_for(t, budget)
        key = tuple(sorted((e.name, e.reuse, e.weights) for e in est.layers if e.reuse))
        if key not in seen:
            seen.add(key)
            tried.append(est)
    most_folded = costs.plan_for(2**62, budget)
    fitting = [e for e in tried if e.fits(headroom)]
    best = None
    if fitting:
        pick = (lambda e: (e.ii, e.latency)) if target == "throughput" else (lambda e: (e.latency, e.ii))
        best = min(fitting, key=pick)
        best = estimate(model, best.reuse(), part=part, clock_period=clock_period, io_type=io_type, **da,
                        weights=best.weights(), fifos=best.fifos, packs=best.packs)
        assert best.fits(headroom)  # the guarantee: never a plan above the budget
    return FitResult(plan=best, closest=best or most_folded, headroom=float(headroom), target=target,
                     candidates=len(seen), tried=tried, frontier=frontier(fitting))


def fit(model: ir.Model, part=None, *, headroom: float = 0.8, target: str = "throughput", clock_period: float = 5.0,
        io_type: str | None = None, weights: dict | None = None, strategy: str = HLS_DEFAULTS.strategy,
        da_max_products: int = HLS_DEFAULTS.da_max_products, packs: dict | None = None,
        slicing: bool = True) -> FitResult:
    """The best fitting plan; ``io_type`` None tries io_parallel and io_stream and keeps the better
    (only io_stream when ``weights`` pins a layer off chip). ``weights``: {layer: mode} placements
    the search keeps as given (the other layers' it chooses). io_stream: ``packs`` {layer: k} fixes
    those tensors' packs (:mod:`vecq_hw.hls.packs`); with ``slicing`` every other tensor's pack is
    the narrowest that keeps the plan's II (:mod:`.packed`), else whole pixels.

    ``strategy='distributed_arithmetic'``: a layer left at R = 1 with its codes on chip is
    estimated (and built) as da4ml's adder graph where that strategy applies to it
    (:func:`vecq_hw.hls.da.applies`)."""
    da = dict(strategy=strategy, da_max_products=da_max_products)
    _check_args(target, headroom)
    p = get_part(part)
    if io_type is None and (packs or any(m != "onchip" for m in (weights or {}).values())):
        io_type = "io_stream"  # streamed weights and packs need it
    # the distributed-arithmetic kernels are not checked with sliced packs (HlsOptions refuses them)
    stream = dict(packs=packs, slicing=slicing and strategy != DISTRIBUTED_ARITHMETIC)
    if io_type is not None:
        return _search(model, p, headroom, target, clock_period, io_type, da, weights, **stream)
    results = [_search(model, p, headroom, target, clock_period, io, da, weights, **stream)
               for io in ("io_parallel", "io_stream")]
    ok = [r for r in results if r.ok]
    tried = [e for r in results for e in r.tried]
    if not ok:  # closest: the one exceeding the budget least
        return replace(min(results, key=lambda r: max(r.closest.utilisation().values())), tried=tried)
    key = (lambda r: r.plan.ii) if target == "throughput" else (lambda r: r.plan.latency)
    chosen = min(ok, key=key)
    both = frontier([e for r in results for e in r.tried if e.fits(headroom)])
    return replace(chosen, tried=tried, frontier=both)


__all__ = ["FitResult", "RESOURCES", "TARGETS", "fit", "frontier"]
