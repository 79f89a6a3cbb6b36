"""Report text: turns numbers the flow computed into the lines people read.

Formatting only: nothing here computes, loads, writes or runs anything (the pipeline behind
`vecq-hw demo` and `vecq-hw report` is ``vecq_hw.flow.deploy_report``, which fills a
``DeployReport``), and nothing here imports the flow, so the flow can import this module freely.
"""

from __future__ import annotations

from . import ir


def memory_lines(mem: dict) -> list[str]:
    t = mem["total"]
    if not t["n_weights"]:
        return ["weight memory: none (the model has no weighted layers)"]
    alpha = f", {t['alpha_bits']:,} of ALQ alphas" if t.get("alpha_bits") else ""
    return [f"weight memory: {t['code_bits']:,} bits of codes for {t['n_weights']:,} weights "
            f"(+ {t['scale_bias_bits']:,} bits of per-channel scale/bias{alpha}); "
            f"{t['compression_vs_float32']:.1f}x smaller than float32 weights"]


def describe_model(model: ir.Model, mem: dict | None = None) -> str:
    lines = [f"model '{model.name}': {len(model.layers)} layers"]
    for layer, in_shape, in_type, out_shape in model.walk():
        extra = ""
        if isinstance(layer, ir.Weighted):
            extra = f" k={layer.bits} acc={layer.accum_type} s={layer.scale_type} b={layer.bias_type}"
        elif isinstance(layer, ir.AlqWeighted):
            extra = (f" bases={int(layer.planes.shape[-1])} acc={layer.accum_type} s={layer.scale_type} "
                     f"b={layer.bias_type}")
        lines.append(f"  {layer.kind:<10} {layer.name:<24} {str(out_shape):<16} {layer.out_type}{extra}")
    if mem:
        lines += memory_lines(mem)
    return "\n".join(lines)


def overflow_table(overflow: dict) -> str:
    lines = [f"{'layer':<24} {'values':>12} {'saturated':>10} {'wrapped':>10}"]
    for name, c in overflow.items():
        lines.append(f"{name:<24} {c['total']:>12,} {c['saturated']:>10,} {c['wrapped']:>10,}")
    return "\n".join(lines)


def _pct(x):
    return "   -   " if x is None else f"{100 * x:6.2f} %"


def format_report(r) -> str:
    """A deployment report (``vecq_hw.flow.DeployReport``, read by attribute) as text."""
    n, m = r.n_test, r.n_csim
    lines = [
        "=" * 72,
        f"vecq_hw deployment report: {r.model} on {r.dataset}",
        "=" * 72,
        f"{'accuracy':<34}{'all ' + str(n) + ' test images':>22}{'C-sim subset (' + str(m) + ')':>22}",
        f"{'  float model (pre-training)':<34}{_pct(r.float_accuracy):>22}{'':>22}",
        f"{'  QAT model (PyTorch)':<34}{_pct(r.qat_accuracy):>22}{_pct(r.qat_accuracy_subset):>22}",
        f"{'  integer model (simulator)':<34}{_pct(r.sim_accuracy):>22}{_pct(r.sim_accuracy_subset):>22}",
        f"{'  HLS C simulation (g++)':<34}{'':>22}{_pct(r.csim_accuracy):>22}",
        f"QAT vs simulator argmax agreement: {100 * r.qat_sim_agreement:.2f} %",
        f"C simulation vs simulator: {r.csim_mismatches} of {m} images and {r.csim_value_mismatches} of "
        f"{r.csim_values} output values differ ({'bit-exact' if r.csim_mismatches == 0 else 'MISMATCH'})",
    ]
    if r.csim_summary:
        lines.append(r.csim_summary)
    lines += memory_lines(r.memory)
    lines += ["", "overflow on the test set (simulator: the input conversion, then every requantisation):", overflow_table(r.overflow), ""]
    plan = ", ".join(f"{k}={v}" for k, v in r.reuse.items())
    fits = (f"folded to fit {r.part} by `vecq-hw fit` ({plan})" if r.fits else
            f"does NOT fit {r.part} even fully folded ({plan}): choose a bigger part with `vecq-hw fit --part`")
    lines += [f"integer model: {r.model_dir}", f"HLS project:   {r.project_dir}  ({r.backend}, {r.io_type})",
              f"  {fits}; C-simulated above",
              "  take it into the vendor tools (not available here):",
              f"    cd {r.project_dir} && vitis_hls -f build_prj.tcl        # Vitis HLS (or vivado_hls -f build_prj.tcl)",
              f"    cd {r.project_dir} && v++ -c --mode hls --config hls_config.cfg   # Vitis 2023.2+",
              f"plots: {', '.join(r.plots)}"]
    return "\n".join(lines)


def _share(u: float) -> str:
    """A utilisation as a percentage that rounding never turns into 0 % (a non-zero figure) or
    into 100 % (a figure just under or over the whole part)."""
    pct = 100 * u
    if pct == 0 or pct != pct or pct in (float("inf"), float("-inf")):
        return "0%" if pct == 0 else "n/a (the part has none)"
    if pct < 0.01:
        return "<0.01%"
    if pct < 1:
        return f"{pct:.2g}%"
    return f"{pct:.2f}%" if 99.5 <= pct <= 100.5 else f"{pct:.0f}%"


def _duration_ns(ns: float) -> str:
    """A latency in the unit that shows it (15 ns, not '0.0 us')."""
    return f"{ns:,.1f} ns" if ns < 1e3 else f"{ns / 1e3:,.1f} us" if ns < 1e6 else f"{ns / 1e6:,.2f} ms"


def _rate(fps: float) -> str:
    """Frames/s with a decimal where a slow plan needs one (1.7, not 2)."""
    return f"{fps:,.1f}" if fps < 100 else f"{fps:,.0f}"


_WHERE = {"onchip": "", "offchip": "ddr", "uram": "uram"}
_KINDS = (("weights", "weights"), ("line_buffers", "line buffers"), ("fifos", "FIFOs"), ("axi", "AXI ports"))


def format_memory(est) -> str:
    """Memory per kind: bits held, and the BRAM18 / URAM / LUTs (LUTRAM, SRL) holding them."""
    parts = []
    for kind, label in _KINDS:
        m = est.memory()[kind]
        if m["bits"] or m["bram18"] or m["uram"] or m["luts"]:
            parts.append(f"{label} {m['bits'] / 1e6:,.2f} Mbit in {m['bram18']:,} BRAM18 + {m['uram']:,} URAM "
                         f"+ {m['luts']:,.0f} LUTs")
    return "memory: " + ("; ".join(parts) or "none")


def format_estimate(est, *, per_layer: bool = True) -> str:
    """The pre-synthesis estimate (``vecq_hw.hls.estimate.Estimate``) as a table a person reads quickly."""
    part, tot, use = est.part, est.totals(), est.utilisation()
    lines = [est.design]
    if per_layer:
        w = max([len("layer")] + [len(lyr.name) for lyr in est.rows()]) + 1  # names in full: users map them back
        lines.append(f"{'layer':<{w}}{'kind':<17}{'R':>9}{'slots':>9}{'LUTs':>13}{'FFs':>12}{'DSPs':>6}"
                     f"{'BRAM18':>8}{'URAM':>6}{'cycles':>12}  weights")
        for lyr in est.rows():
            r = f"{lyr.reuse} DA" if lyr.adder_graph else lyr.reuse or ""
            lines.append(f"{lyr.name:<{w}}{lyr.kind[:16]:<17}{r:>9}{lyr.slots or '':>9}"
                         f"{lyr.luts:>13,.0f}{lyr.ffs:>12,.0f}{lyr.dsps:>6}{lyr.bram18:>8}{lyr.uram:>6}"
                         f"{lyr.cycles:>12,}  {_WHERE.get(lyr.weights, lyr.weights)}".rstrip())
    lines.append(f"total on {part.name} ({est.io_type}):  LUTs {tot['luts']:,.0f} ({_share(use['luts'])})  "
                 f"FFs {tot['ffs']:,.0f} ({_share(use['ffs'])})  DSPs {tot['dsps']:,.0f} ({_share(use['dsps'])})  "
                 f"BRAM18 {tot['bram18']:,.0f} ({_share(use['bram18'])})  URAM {tot['uram']:,.0f}"
                 + (f" ({_share(use['uram'])})" if part.uram else ""))
    lines.append(format_memory(est))
    if getattr(est, "packs", None):
        sliced = sorted(est.packs.items(), key=lambda kv: kv[1])
        lines.append(f"sliced streams ({len(sliced)} tensors, values a token): "
                     + ", ".join(f"{k}={v}" for k, v in sliced[:12]) + (", ..." if len(sliced) > 12 else ""))
    if est.ddr_bytes:
        lines.append(f"DDR: {est.ddr_bytes / 1e6:,.2f} MB a frame for {len(est.weights())} layers' streamed codes, "
                     f"{est.ddr_gbps:,.2f} GB/s at this frame rate ({_share(use['ddr'])} of the part's "
                     f"{est.part.ddr_gbps:g} GB/s peak)")
    lines.append(f"II {est.ii:,} cycles, latency {est.latency:,} cycles; at {1e3 / est.clock_period:.0f} MHz: "
                 f"{_rate(est.fps)} frames/s, {_duration_ns(est.latency * est.clock_period)}")
    lines.append("(estimate before synthesis: LUTs per product calibrated on yosys mappings; not a Vivado report)")
    if any(lyr.adder_graph for lyr in est.layers):
        lines.append("(R = 1 DA: distributed arithmetic, the products' LUTs are da4ml's own estimate of the layer's "
                     "adder graph)")
    return "\n".join(lines)


def format_frontier(result) -> str:
    """The fitting plans, one per factor-of-two step of frames/s (``FitResult.frontier``)."""
    if len(result.frontier) < 2:
        return ""
    rows = [f"fitting plans from the fastest down, one per halving of frames/s ({len(result.frontier)}):"]
    for e in result.frontier:
        t, u = e.totals(), e.utilisation()
        rows.append(f"  {_rate(e.fps):>12} frames/s  LUTs {t['luts']:>11,.0f} ({_share(u['luts'])})  BRAM18 "
                    f"{t['bram18']:>6,.0f}  URAM {t['uram']:>5,.0f}  DDR {e.ddr_gbps:>6.2f} GB/s  "
                    f"{len(e.weights())} layers off chip  ({e.io_type})")
    return "\n".join(rows)


def format_fit(result, *, per_layer: bool = True) -> str:
    """What ``vecq-hw fit`` chose (or why nothing fits, and what comes closest)."""
    head = f"headroom {_share(result.headroom)}, target {result.target}, {result.candidates} balanced plans tried"
    if result.ok:
        plan = ", ".join(f"{k}={v}" for k, v in result.plan.reuse().items())
        where = ", ".join(f"{k}={v}" for k, v in result.plan.weights().items())
        text = f"plan ({head}): {plan}\n" + (f"weights off chip: {where}\n" if where else "")
        text += format_estimate(result.plan, per_layer=per_layer)
        frontier = format_frontier(result)
        return text + ("\n" + frontier if frontier else "")
    over = ", ".join(f"{r} {_share(u)}" for r, u in result.over_budget().items())
    plan = ", ".join(f"{k}={v}" for k, v in result.closest.reuse().items())
    return (f"NOTHING FITS {result.closest.part.name} at {_share(result.headroom)} ({head}); the closest, fully folded "
            f"({plan}), needs {over}:\n" + format_estimate(result.closest, per_layer=per_layer))
