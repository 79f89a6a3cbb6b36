"""Simulator throughput vs PyTorch float32 and vs hls4ml's C simulation, in one run.

Networks (random VecQ-style weights: 2-bit odd codes, 8-bit activations):
  lenet5: 28x28x1 -> conv5x5x32 same -> relu -> maxpool2 -> conv5x5x64 same -> relu -> maxpool2
          -> flatten -> dense 512 -> relu -> dense 10
  mlp:    16 -> 64 -> 32 -> 32 -> 5 (relu between)

Baselines, same shapes and float weights d*s:
  (a) PyTorch float32 inference (torch.inference_mode, batches of 1024);
  (b) hls4ml C simulation: ``ModelGraph.predict`` of a compiled Vivado/io_parallel model, from
      ``vecq_hw.hls.build_hls_model`` when that exists, else hls4ml's own PyTorch converter on
      the float network (precision pinned to ap_fixed<16,6>); the label says which.

``--threads`` (default 1) sets torch's intra-op threads. The simulator runs its BLAS on one
thread whatever it says (``vecq_hw.sim.simulator.one_blas_thread``: OpenBLAS' thread pool makes
its small GEMMs slower and 3x as costly in CPU, ``results/sim_blas.md``); hls4ml's C simulation
is single-threaded anyway.

Writes benchmarks/results/sim_throughput.json and prints a table.
Usage: python benchmarks/sim_throughput.py [--quick] [--no-hls] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import sys


def _threads_from_argv(argv) -> int:
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if a.startswith("--threads="):
            return int(a.split("=", 1)[1])
    return 1


# BLAS reads these when numpy is first imported: set them before that import
THREADS = _threads_from_argv(sys.argv[1:])
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(THREADS)

import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from vecq_hw import ir  # noqa: E402
from vecq_hw.fixed import FixedType  # noqa: E402
from vecq_hw.sim.simulator import auto_chunk_size
from vecq_hw.sim import Simulator, simulate  # noqa: E402

ACT = FixedType.parse("ap_fixed<8,3,AP_RND,AP_SAT>")       # weighted-layer outputs
RELU = FixedType.parse("ap_ufixed<8,3>")                    # relu outputs (exact)
SCALE = FixedType.parse("ap_ufixed<8,-2>")                  # s_j in [0, 0.25)
BIAS = FixedType.parse("ap_fixed<8,2>")
RESULTS = Path(__file__).resolve().parent / "results"


# -- the networks, as integer models and as float torch modules -------------------------------

def _weighted(rng, cls, name, in_type, shape, out_type, **kw):
    codes = rng.integers(-2, 2, size=shape).astype(np.int8)         # 2-bit codes
    fan_in = int(np.prod(shape[:-1]))
    s = 1.0 / (np.sqrt(fan_in) * 2.0)                               # keeps activations O(1)
    scale = np.clip(SCALE.from_float(np.full(shape[-1], s) * rng.uniform(0.5, 1.5, shape[-1])),
                    1, SCALE.max_mantissa).astype(np.int64)
    bias = BIAS.from_float(rng.normal(0, 0.1, shape[-1])).astype(np.int64)
    acc = ir.accumulator_type(in_type, ir.multipliers(codes, "odd"))
    return cls(name=name, out_type=out_type, bits=2, encoding="odd", codes=codes, scale=scale,
               scale_type=SCALE, bias=bias, bias_type=BIAS, accum_type=acc, **kw)


def lenet5(rng) -> ir.Model:
    t_in = FixedType.parse("ap_ufixed<8,0>")
    L = [ir.Input(name="input", out_type=t_in, shape=(28, 28, 1))]
    L.append(_weighted(rng, ir.Conv2D, "conv1", t_in, (5, 5, 1, 32), ACT, padding=(2, 2, 2, 2)))
    L += [ir.ReLU(name="relu1", out_type=RELU), ir.MaxPool2D(name="pool1", out_type=RELU)]
    L.append(_weighted(rng, ir.Conv2D, "conv2", RELU, (5, 5, 32, 64), ACT, padding=(2, 2, 2, 2)))
    L += [ir.ReLU(name="relu2", out_type=RELU), ir.MaxPool2D(name="pool2", out_type=RELU),
          ir.Flatten(name="flatten", out_type=RELU)]
    L.append(_weighted(rng, ir.Dense, "fc1", RELU, (7 * 7 * 64, 512), ACT))
    L.append(ir.ReLU(name="relu3", out_type=RELU))
    L.append(_weighted(rng, ir.Dense, "fc2", RELU, (512, 10), ACT))
    return ir.Model("lenet5", L).check()


def mlp(rng) -> ir.Model:
    t_in = ACT
    L = [ir.Input(name="input", out_type=t_in, shape=(16,))]
    t = t_in
    sizes = [16, 64, 32, 32, 5]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        L.append(_weighted(rng, ir.Dense, f"fc{i + 1}", t, (a, b), ACT))
        if i < len(sizes) - 2:
            L.append(ir.ReLU(name=f"relu{i + 1}", out_type=RELU))
            t = RELU
    return ir.Model("mlp", L).check()


def float_weights(layer: ir.Weighted):
    w = layer.multipliers().astype(np.float64) * layer.scale_type.to_float(layer.scale)
    return w.astype(np.float32), layer.bias_type.to_float(layer.bias).astype(np.float32)


def torch_model(model: ir.Model) -> nn.Sequential:
    """The same network in float32 PyTorch (NCHW), weights d*s, biases b."""
    mods = []
    for layer, in_shape, _, _ in model.walk():
        if isinstance(layer, ir.Conv2D):
            w, b = float_weights(layer)
            kh, kw, cin, cout = w.shape
            m = nn.Conv2d(cin, cout, (kh, kw), stride=layer.stride, padding=(layer.padding[0], layer.padding[2]))
            m.weight.data = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))
            m.bias.data = torch.from_numpy(b)
        elif isinstance(layer, ir.Dense):
            w, b = float_weights(layer)
            m = nn.Linear(*w.shape)
            m.weight.data = torch.from_numpy(np.ascontiguousarray(w.T))
            m.bias.data = torch.from_numpy(b)
        elif isinstance(layer, ir.ReLU):
            m = nn.ReLU()
        elif isinstance(layer, ir.MaxPool2D):
            m = nn.MaxPool2d(layer.pool, layer.stride)
        elif isinstance(layer, ir.Flatten):
            m = nn.Flatten()  # NCHW order; only the dense weights' row order differs: same cost
        else:
            continue
        mods.append(m)
    return nn.Sequential(*mods).eval()


# -- timing ------------------------------------------------------------------------------------

def best_rate(fn, n, repeats=3, min_time=0.0):
    """Samples/s from the best of ``repeats`` timed calls of fn() (which processes n samples)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n / best, best


def bench_sim(model, x, chunk_size, repeats):
    simulate(model, x[:64], chunk_size=chunk_size)  # warm-up (BLAS threads, page faults)
    rate, secs = best_rate(lambda: simulate(model, x, chunk_size=chunk_size), len(x), repeats)
    return rate, secs


def bench_torch(model, x_nchw, repeats, batch=1024):
    net = torch_model(model)
    xt = torch.from_numpy(x_nchw.astype(np.float32))

    def run():
        with torch.inference_mode():
            for s in range(0, len(xt), batch):
                net(xt[s:s + batch])
    run()
    return best_rate(run, len(xt), repeats)


def hls_graph(model: ir.Model, out_dir: str):
    """A compiled hls4ml ModelGraph of the same network, and a label saying how it was built."""
    try:
        from vecq_hw.hls import build_hls_model  # type: ignore[attr-defined]
    except ImportError:
        build_hls_model = None
    if build_hls_model is not None:
        g = build_hls_model(model, out_dir, backend="Vivado", io_type="io_parallel")
        return g, "vecq_hw.hls.build_hls_model (our kernels, Vivado, io_parallel)", "nhwc"
    import hls4ml
    net = torch_model(model)
    in_shape = tuple(model.input.shape)
    torch_shape = (in_shape[2],) + in_shape[:2] if len(in_shape) == 3 else in_shape
    cfg = hls4ml.utils.config_from_pytorch_model(net, torch_shape, granularity="model",
                                                 default_precision="ap_fixed<16,6>",
                                                 default_reuse_factor=1)
    cfg["Model"]["Strategy"] = "Latency"
    g = hls4ml.converters.convert_from_pytorch_model(net, output_dir=out_dir, hls_config=cfg,
                                                    backend="Vivado", io_type="io_parallel")
    g.compile()
    return g, "hls4ml PyTorch converter, float net, ap_fixed<16,6>, Vivado io_parallel", "nchw"


def bench_hls(model, x_nhwc, n):
    with tempfile.TemporaryDirectory(prefix="vecq_bench_hls_") as d:
        t0 = time.perf_counter()
        g, label, layout = hls_graph(model, os.path.join(d, "prj"))
        build_s = time.perf_counter() - t0
        xs = x_nhwc[:n]
        if layout == "nchw" and xs.ndim == 4:
            xs = xs.transpose(0, 3, 1, 2)
        xs = np.ascontiguousarray(xs.reshape(len(xs), -1), dtype=np.float64)
        g.predict(xs[:2])
        rate, secs = best_rate(lambda: g.predict(xs), n, repeats=1)
    return rate, secs, build_s, label


def peak_memory(model, x_small, x_large, chunk_size):
    """tracemalloc peak of simulate() beyond its own output, for two batch sizes."""
    out = {}
    for name, x in (("small", x_small), ("large", x_large)):
        tracemalloc.start()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        res = simulate(model, x, chunk_size=chunk_size)
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        out[name] = {"n": int(len(x)), "peak_mb": peak / 2**20,
                     "peak_minus_output_mb": (peak - res.output.nbytes) / 2**20}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples (smoke run)")
    ap.add_argument("--no-hls", action="store_true", help="skip the hls4ml C simulation baseline")
    ap.add_argument("--chunk-size", type=int, default=None, help="samples per chunk (default: the simulator's automatic choice)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(THREADS)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    cases = {
        "lenet5": dict(model=lenet5(rng), n=1024 if args.quick else 8192,
                       n_hls=10 if args.quick else 50, repeats=3),
        "mlp": dict(model=mlp(rng), n=20000 if args.quick else 200000,
                    n_hls=2000 if args.quick else 20000, repeats=9),
    }
    rows = {}
    for name, c in cases.items():
        model, n = c["model"], c["n"]
        shape = tuple(model.input.shape)
        t = model.input.out_type
        x = rng.uniform(t.min_value, t.max_value, size=(n,) + shape)
        print(f"[{name}] simulator on {n} samples ...", flush=True)
        sim_rate, sim_s = bench_sim(model, x, args.chunk_size, c["repeats"])
        sim = Simulator(model)
        xm = model.input.out_type.from_float(x)
        simm_rate, _ = best_rate(lambda: sim.run(x_mantissa=xm, chunk_size=args.chunk_size), n,
                                 c["repeats"])
        paths = {k.layer.name: np.dtype(k.dtype).name for k in sim.kernels if k.requantises}
        requant = {k.layer.name: "int64" if k.float_requant is None
                   else np.dtype(k.float_requant.dtype).name for k in sim.kernels if k.requantises}
        x_nchw = x.transpose(0, 3, 1, 2) if x.ndim == 4 else x
        print(f"[{name}] pytorch float32 ...", flush=True)
        torch_rate, torch_s = bench_torch(model, x_nchw, c["repeats"])
        row = dict(n=n, chunk_size=args.chunk_size or auto_chunk_size(model), accumulation=paths,
                   requantisation=requant, repeats=c["repeats"],
                   sim_samples_per_s=sim_rate, sim_seconds=sim_s,
                   sim_from_mantissas_samples_per_s=simm_rate,
                   torch_samples_per_s=torch_rate, torch_seconds=torch_s,
                   sim_vs_torch=sim_rate / torch_rate)
        if not args.no_hls:
            print(f"[{name}] hls4ml C simulation on {c['n_hls']} samples (compiling) ...", flush=True)
            hls_rate, hls_s, build_s, label = bench_hls(model, x, c["n_hls"])
            row.update(hls_samples_per_s=hls_rate, hls_seconds=hls_s, hls_n=c["n_hls"],
                       hls_build_seconds=build_s, hls_baseline=label,
                       sim_vs_hls=sim_rate / hls_rate)
        small, large = (x[: n // 8], x) if name == "lenet5" else (x[: n // 10], x)
        row["memory"] = peak_memory(model, small, large, args.chunk_size)
        rows[name] = row
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = dict(machine=dict(platform=platform.platform(), cpus=os.cpu_count(),
                               python=sys.version.split()[0], numpy=np.__version__,
                               torch=torch.__version__, threads=THREADS,
                               loadavg_at_end=os.getloadavg()),
                  max_rss_mb=ru, results=rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "sim_throughput.json"
    out.write_text(json.dumps(result, indent=2))

    hdr = (f"{'net':8} {'sim/s':>10} {'(mant.)':>10} {'torch/s':>10} {'hls csim/s':>11} {'sim/torch':>9} {'sim/hls':>8}"
           "  sim peak MB beyond output (N small -> large)")
    print()
    print(hdr)
    print("-" * len(hdr))
    for name, r in rows.items():
        m = r["memory"]
        hls = f"{r['hls_samples_per_s']:11.1f}" if "hls_samples_per_s" in r else f"{'-':>11}"
        ratio = f"{r['sim_vs_hls']:8.0f}x" if "sim_vs_hls" in r else f"{'-':>9}"
        print(f"{name:8} {r['sim_samples_per_s']:10.0f} {r['sim_from_mantissas_samples_per_s']:10.0f} "
              f"{r['torch_samples_per_s']:10.0f} {hls} "
              f"{r['sim_vs_torch']:8.2f}x {ratio}  "
              f"{m['small']['peak_minus_output_mb']:.1f} (N={m['small']['n']}) -> "
              f"{m['large']['peak_minus_output_mb']:.1f} (N={m['large']['n']})")
    for name, r in rows.items():
        if "hls_baseline" in r:
            print(f"  {name}: hls baseline = {r['hls_baseline']} (build+compile {r['hls_build_seconds']:.0f} s, "
                  f"{r['hls_n']} samples)")
    print("sim/s: simulate() from float input (includes from_float); (mant.): from x_mantissa")
    print(f"threads={THREADS}, chunk_size={args.chunk_size or 'auto'}, load average at end "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
