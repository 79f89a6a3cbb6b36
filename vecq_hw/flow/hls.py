"""HLS steps of the flow: generate a project, estimate or fit its folding, C-simulate it.

``hls/`` never runs the simulator: the expected outputs its testbench checks come from here
(``write_hls_project``), and a C simulation that disagrees is a ``ToolError`` raised here.
"""

from __future__ import annotations

from pathlib import Path

from .. import ir
from ..errors import ToolError
from ..hls.csim import DEFAULT_OPT
from ..hls.options import DEFAULTS as HLS_DEFAULTS
from ..hls.options import DISTRIBUTED_ARITHMETIC
from .inputs import count_input_overflow, input_saturation_warning, load_array, random_inputs, to_mantissas


def reuse_map(reuse) -> dict:
    """Per-layer reuse factors: a mapping {layer: R}, or the CLI's ``LAYER=R`` items."""
    if isinstance(reuse, dict):
        return dict(reuse)
    from ..hls.folding import parse_reuse
    return parse_reuse(reuse)


def weights_map(weights) -> dict:
    """Per-layer weight memory: a mapping {layer: mode}, or the CLI's ``LAYER=MODE`` items."""
    if isinstance(weights, dict):
        return dict(weights)
    from ..hls.offchip import parse_weights
    return parse_weights(weights)


def packs_map(packs) -> dict:
    """io_stream packs: a mapping {layer: values per token}, or the CLI's ``LAYER=K`` items."""
    if isinstance(packs, dict):
        return dict(packs)
    from ..hls.packs import parse_packs
    return parse_packs(packs)


def generate_hls(model_dir, out_dir, *, backend=HLS_DEFAULTS.backend, io_type=HLS_DEFAULTS.io_type,
                 reuse_factor=HLS_DEFAULTS.reuse_factor, strategy=HLS_DEFAULTS.strategy, part=HLS_DEFAULTS.part,
                 clock_period=HLS_DEFAULTS.clock_period, test_inputs=None,
                 project_name=HLS_DEFAULTS.project_name, overwrite=False, reuse=None, weights=None,
                 da_max_products=HLS_DEFAULTS.da_max_products, packs=None) -> str:
    """``vecq-hw hls``: the project with the simulator's outputs on ``test_inputs`` (default:
    100 random inputs) as its testbench's expectation. ``reuse``: see :func:`reuse_map`;
    ``weights``: :func:`weights_map`; ``packs``: :func:`packs_map`."""
    from ..hls import HlsOptions
    from ..hls.project import check_out_dir
    from ..ir.io import load_model
    reuse, weights = reuse_map(reuse or {}), weights_map(weights or {})
    options = HlsOptions(backend=backend, io_type=io_type, reuse_factor=reuse_factor, strategy=strategy, part=part,
                         clock_period=clock_period, project_name=project_name, reuse=reuse, weights=weights,
                         da_max_products=da_max_products, packs=packs_map(packs or {}))
    check_out_dir(Path(out_dir), overwrite)  # before any work
    model = load_model(model_dir)
    x, warning = _test_inputs(model, test_inputs)
    lines = [warning] if warning else []
    path = write_hls_project(model, out_dir, options, x, overwrite=overwrite)
    lines += [f"wrote {backend} {io_type} project to {path} with {len(x)} test vectors"]
    lines += [da_summary(model, options)] if options.strategy == DISTRIBUTED_ARITHMETIC else []
    lines += [f"next: vecq-hw csim {path}   (g++ C simulation, exact comparison)"]
    return "\n".join(lines)


def _test_inputs(model: ir.Model, path):
    """(the testbench's inputs: the .npy at ``path``, else 100 random inputs; a warning line or None)."""
    if path is None:
        return random_inputs(model, 100), None
    x = load_array(path, what="test inputs", expect_shape=model.input.shape)
    return x, input_saturation_warning(model, count_input_overflow(model, x))


def estimate_hls(model_dir, *, reuse=None, reuse_factor=1, part=None, clock_period=HLS_DEFAULTS.clock_period,
                 io_type=HLS_DEFAULTS.io_type, weights=None, strategy=HLS_DEFAULTS.strategy,
                 da_max_products=HLS_DEFAULTS.da_max_products, packs=None) -> str:
    """``vecq-hw estimate``: the pre-synthesis estimate of the HLS design with this folding."""
    from ..hls.estimate import estimate
    from ..ir.io import load_model
    from ..report import format_estimate
    est = estimate(load_model(model_dir), reuse_map(reuse or {}), default_reuse=reuse_factor, part=part,
                   clock_period=clock_period, io_type=io_type, weights=weights_map(weights or {}), strategy=strategy,
                   da_max_products=da_max_products, packs=packs_map(packs or {}))
    return format_estimate(est)


def da_summary(model: ir.Model, options) -> str:
    """Which layers the distributed-arithmetic strategy builds from da4ml's adder graph."""
    from ..hls.mappings_da import da_layers
    from ..hls.folding import weighted_nodes
    built = da_layers(model, options)
    kept = [n.layer.name for n in weighted_nodes(model) if n.layer.name not in built]
    return (f"distributed arithmetic (da4ml adder graphs): {', '.join(built) or 'no layer'}"
            + (f"; usual kernels (R > 1, another kind, or above {options.da_max_products} products): "
               f"{', '.join(kept)}" if kept else ""))


def resolve_part(part=None):
    """(the parts-table entry, the full part name for the HLS project): a name with a package and
    speed grade (xc7z020clg400-1) is kept, a short one (xc7z020) gets its table entry's full name;
    None is the table's default."""
    from ..hls.estimate import get_part
    p = get_part(part)
    return p, (str(part) if part and len(str(part)) > len(p.name) else p.hls_part)


def fit_hls(model_dir, out_dir=None, *, part=None, clock_period=HLS_DEFAULTS.clock_period, target="throughput",
            headroom=0.8, io_type=None, backend=HLS_DEFAULTS.backend, overwrite=False, test_inputs=None,
            weights=None, strategy=HLS_DEFAULTS.strategy, da_max_products=HLS_DEFAULTS.da_max_products, packs=None,
            slicing=True):
    """``vecq-hw fit``: choose the folding for ``part``, print it, write the HLS project with it
    (its testbench checks ``test_inputs``, a .npy, as ``hls`` does; default: 100 random inputs).
    ``weights``: placements the search keeps (:func:`weights_map`); ``packs``: io_stream packs it
    keeps (:func:`packs_map`), the others chosen unless ``slicing`` is False.

    Returns (text, ok); nothing is written when nothing fits."""
    from ..hls.estimate import fit
    from ..hls import HlsOptions
    from ..hls.project import check_out_dir
    from ..ir.io import load_model
    from ..report import format_fit
    p, hls_part = resolve_part(part)
    # every option the project will carry, and the folder, checked before the search
    HlsOptions(backend=backend, part=hls_part, clock_period=clock_period, strategy=strategy,
               da_max_products=da_max_products)
    if out_dir is not None:
        check_out_dir(Path(out_dir), overwrite)
    model = load_model(model_dir)
    x, warning = _test_inputs(model, test_inputs)
    result = fit(model, p, headroom=headroom, target=target, clock_period=clock_period, io_type=io_type,
                 weights=weights_map(weights or {}), strategy=strategy, da_max_products=da_max_products,
                 packs=packs_map(packs or {}), slicing=slicing)
    text = (f"{warning}\n" if warning else "") + format_fit(result)
    if result.ok and strategy == DISTRIBUTED_ARITHMETIC:
        text += "\n" + da_summary(model, HlsOptions(strategy=strategy, reuse=result.plan.reuse(),
                                                     weights=result.plan.weights(), da_max_products=da_max_products))
    if result.ok and out_dir is not None:
        io_type = result.plan.io_type
        opts = HlsOptions(backend=backend, io_type=io_type, part=hls_part, clock_period=clock_period,
                          reuse=result.plan.reuse(), weights=result.plan.weights(), strategy=strategy,
                          da_max_products=da_max_products, packs=dict(result.plan.packs))
        path = write_hls_project(model, out_dir, opts, x, overwrite=overwrite)
        from ..hls.estimate.plot import write_fit_plot  # matplotlib only when a plot is written
        plot = write_fit_plot(result, path)  # LUTs vs fps of the candidates, inside the project folder
        text += (f"\nwrote {backend} {io_type} project for {hls_part} to {path}\n"
                 f"plot of the {len(result.tried)} foldings estimated: {plot}\nnext: vecq-hw csim {path}")
    return text, result.ok


def write_hls_project(model: ir.Model, out_dir, options, x, *, overwrite=False) -> Path:
    """The HLS project with the simulator's outputs on ``x`` (float values) as its testbench's
    expectation (hls/ does not run the simulator)."""
    from ..hls import write_project
    from ..sim import simulate
    xm = to_mantissas(model, x)
    return write_project(model, out_dir, options, expected=(xm, simulate(model, x_mantissa=xm).output),
                         overwrite=overwrite)


def csim_hls(project_dir, *, opt=DEFAULT_OPT, timeout=None, jobs=None, restart=False, show=print, cache_dir=None):
    """``vecq-hw csim``: C-simulate a generated project (progress on stderr), ``show`` its
    summary, and raise ``ToolError`` when the C++ disagrees with the simulator's outputs.

    Ctrl-C raises ``CsimInterrupted`` (a KeyboardInterrupt); the finished samples are kept."""
    from ..hls.csim import csim
    result = csim(project_dir, opt=opt, timeout=timeout, jobs=jobs, restart=restart, progress=True,
                  cache_dir=cache_dir)
    show(result.summary())
    if not result.ok:  # the generated C++ disagrees with the simulator: a tool failure, not bad input
        raise ToolError(f"{project_dir}: C simulation disagrees with the simulator in {result.mismatches} of "
                        f"{result.n} samples ({result.value_mismatches} output values)")
    return result


def dataflow_hls(project_dir, *, samples=2, show=print):
    """``vecq-hw csim --dataflow``: the io_stream project with FIFOs of their pragma depths, one
    thread per process (hls/dataflow_check.py); a deadlock or a disagreement is a ToolError."""
    from ..hls.dataflow_check import dataflow_check
    r = dataflow_check(project_dir, samples=samples)
    if r.deadlock:
        raise ToolError(f"{project_dir}: the dataflow deadlocks with these FIFO depths: "
                        + " ".join(r.log.split("\n", 1)[0].split()))
    show(f"dataflow check: {r.n} samples through FIFOs of their pragma depths, one thread per process: no deadlock, "
         f"{r.mismatches} mismatching samples")
    if r.mismatches:
        raise ToolError(f"{project_dir}: the dataflow check disagrees with the simulator in {r.mismatches} samples")
    return r
