"""The `vecq-hw` command: train, export, check, sim, hls, estimate, fit, csim, report, demo, rtl,
rtlsim, synth, qonnx, import-qonnx.

Each command is a thin shell over one function of :mod:`vecq_hw.flow`, the only orchestrator:
this module imports the flow, the back ends' option modules (for their defaults and choices)
and the errors, nothing else of vecq_hw (tests/test_cli_imports.py). Every failure a user can
cause or meet is one line on stderr, ``error: ...``, and an exit status that says whose it is:

    0  success
    2  bad input: a file, recipe, option or argument we refuse (``VecQError``, click usage errors)
    3  a tool we run failed: compiler or link error, crash, timeout, or a C/RTL simulation that
       disagrees with the simulator (``ToolError``)
    130  ``csim`` interrupted (the samples finished so far are kept)

Anything else (a traceback, exit 1) is a bug in vecq_hw.
"""

from __future__ import annotations

import errno
import functools
import json
import math
import os
import re
import sys
import warnings

import click

from .errors import ToolError, VecQError
from .hls import options as hls_options
from .rtl import options as rtl_options


EXIT_BAD_INPUT = 2
EXIT_TOOL_FAILED = 3
EXIT_INTERRUPTED = 130


#: a default object repr, '<ast.BoolOp object at 0x7f...>': says nothing to a user
_OBJECT_REPR = re.compile(r"<([A-Za-z_][\w.]*) object at 0x[0-9a-fA-F]+>")


def _fail(message, status: int):
    line = _OBJECT_REPR.sub(lambda m: f"a {m.group(1)} object", " ".join(str(message).split()))
    click.echo("error: " + line, err=True)  # always one line
    sys.exit(status)


def _clean_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except VecQError as exc:
            _fail(exc, EXIT_BAD_INPUT)
        except ToolError as exc:
            _fail(exc, EXIT_TOOL_FAILED)
        except OSError as exc:  # a path we were told to read or write: missing, unwritable, full
            if exc.errno == errno.EPIPE:  # `vecq-hw ... | head`: click handles a closed stdout
                raise
            where = exc.filename if exc.filename is not None else ""
            _fail(f"{where}: {exc.strerror or exc}" if where else (exc.strerror or exc), EXIT_BAD_INPUT)
    return wrapper


class _FiniteFloat(click.FloatRange):
    """A float option in a range that is also finite: click's FloatRange lets 'nan' and 'inf' through."""

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv


FINITE_POSITIVE = _FiniteFloat(min=0, min_open=True)


def _strategy_options(fn):
    """--strategy and --da-max-products (hls, estimate, fit: one definition)."""
    fn = click.option("--da-max-products", default=hls_options.DEFAULTS.da_max_products, show_default=True,
                      type=click.IntRange(min=1),
                      help="distributed_arithmetic: largest layer (products per output vector or pixel) built "
                           "from da4ml's adder graph; da4ml's solve time grows fast with it")(fn)
    return click.option("--strategy", type=click.Choice(list(hls_options.STRATEGIES)),
                        default=hls_options.DEFAULTS.strategy, show_default=True,
                        help="distributed_arithmetic: layers at R = 1 from da4ml's adder graphs (hls4ml's name)")(fn)

_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """A Python warning (ours, numpy's) as one ``warning: ...`` line, without its source line."""
    return f"warning: {' '.join(str(message).split())} ({category.__name__})\n"


class _OneLineGroup(click.Group):
    """click's usage errors as one line (``error: ...``, exit 2) instead of Usage/Try/Error."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        warnings.formatwarning = _one_line_warning
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _NO_ARGS_IS_HELP as exc:  # `vecq-hw` alone: the help text, as click prints it
            click.echo(exc.format_message(), err=True)
            sys.exit(EXIT_BAD_INPUT)
        except click.UsageError as exc:
            cmd = exc.ctx.command_path if exc.ctx is not None else (prog_name or "vecq-hw")
            _fail(f"{exc.format_message()} (see: {cmd} --help)", EXIT_BAD_INPUT)
        except click.ClickException as exc:  # e.g. a file click could not open
            _fail(exc.format_message(), EXIT_BAD_INPUT)
        except click.Abort:
            _fail("aborted", 1)
        # --help/--version return their exit code here; a command returns None
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=_OneLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vecq_hw")
def cli():
    """VecQ low-bit networks: PyTorch training -> integer model -> bit-exact HLS C++."""


@cli.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="run folder")
@click.option("--data", "data_root", type=click.Path(file_okay=False), envvar="VECQ_HW_DATA",
              help="dataset folder (default: $VECQ_HW_DATA, then ../shared/datasets)")
@click.option("--resume", is_flag=True, help="continue from the run folder's last checkpoint")
@click.option("--overwrite", is_flag=True, help="delete the run folder's previous run and start over")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
              help="where to train (default: the recipe's train.device, auto = cuda if available)")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch threads per process (default: recipe, else the cores this process may use)")
@click.option("--nproc", type=click.IntRange(min=1), default=None,
              help="data-parallel processes on this machine: runs torchrun --standalone itself")
@_clean_errors
def train(recipe, out_dir, data_root, resume, overwrite, device, threads, nproc):
    """Train a recipe (YAML from configs/) into a run folder.

    Data-parallel: `--nproc N` here, or `torchrun [rendezvous flags] --nproc-per-node N -m
    vecq_hw.cli train RECIPE --out DIR` (multi-node); the global batch is train.batch_size.
    """
    from .flow import launch_training, quiet_rank, train_recipe
    how = dict(data_root=data_root, resume=resume, overwrite=overwrite, device=device, threads=threads)
    if nproc is not None:
        sys.exit(launch_training(recipe, out_dir, nproc, **how))
    try:
        metrics = train_recipe(recipe, out_dir, **how)
    except VecQError:
        if quiet_rank():  # a valid multi-process world: rank 0 prints the line for all ranks
            sys.exit(EXIT_BAD_INPUT)
        raise
    if metrics is not None:  # rank 0 (or a single process)
        click.echo(json.dumps(metrics, indent=2))


@cli.command()
@click.argument("source", type=click.Path(exists=True))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="model folder to write")
@click.option("--scale-bits", default=16, show_default=True, type=int,
              help="significant bits kept of each layer's largest scale (range checked by the exporter)")
@click.option("--scale-frac", type=int, default=None, help="fix the scales' fractional bits instead")
@click.option("--multiplier", type=click.Choice(["auto", "dsp", "fabric"]), default="auto", show_default=True,
              help="HLS multiplier binding for 5..8-bit layers")
@click.option("--overwrite", is_flag=True, help="replace an existing model folder")
@click.option("--data", "data_root", type=click.Path(file_okay=False), envvar="VECQ_HW_DATA")
@click.option("--eval-limit", default=1000, show_default=True, type=click.IntRange(min=0),
              help="test images used to report the accuracy effect (0: none)")
@_clean_errors
def export(source, out_dir, scale_bits, scale_frac, multiplier, overwrite, data_root, eval_limit):
    """Export a trained run folder (or its model.pt) to model.yaml + integer tables."""
    from .flow import export_run
    report = export_run(source, out_dir, scale_bits=scale_bits, scale_frac=scale_frac, multiplier=multiplier,
                        overwrite=overwrite, data_root=data_root, eval_limit=eval_limit)
    click.echo(report.text())


@cli.command()
@click.argument("model_dir", type=click.Path())
@_clean_errors
def check(model_dir):
    """Validate a model folder and print its layers and weight memory."""
    from .flow import describe_model_dir
    click.echo(describe_model_dir(model_dir))


@cli.command()
@click.argument("model_dir", type=click.Path())
@click.option("--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help=".npy array (N,)+input shape, channels-last, of input values (any numeric dtype; read in "
                   "blocks: memory grows with the outputs, not with the inputs)")
@click.option("--output", "output_path", type=click.Path(dir_okay=False), help=".npy of output values (float64)")
@click.option("--mantissas", is_flag=True, help="write integer mantissas instead of values")
@click.option("--trace", "trace_dir", type=click.Path(file_okay=False), help="write every layer's output here")
@_clean_errors
def sim(model_dir, input_path, output_path, mantissas, trace_dir):
    """Run the bit-accurate simulator on a batch and print per-layer overflow counts."""
    from .flow import simulate_files
    click.echo(simulate_files(model_dir, input_path, output_path, mantissas=mantissas, trace_dir=trace_dir,
                              warn=lambda line: click.echo(line, err=True)))


@cli.command()
@click.argument("model_dir", type=click.Path())
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="HLS project folder")
@click.option("--backend", type=click.Choice(list(hls_options.BACKENDS)), default=hls_options.DEFAULTS.backend,
              show_default=True)
@click.option("--io-type", type=click.Choice(list(hls_options.IO_TYPES)), default=hls_options.DEFAULTS.io_type,
              show_default=True)
@click.option("--reuse-factor", default=1, show_default=True, type=click.IntRange(min=1),
              help="default reuse factor R of every weighted layer (R products share one multiplier slot, II = R)")
@click.option("--reuse", "reuse", multiple=True, metavar="LAYER=R",
              help="one weighted layer's reuse factor (repeat the option; R must divide the layer's products)")
@click.option("--weights", "weights", multiple=True, metavar="LAYER=MODE",
              help="where a weighted layer keeps its codes: onchip (a ROM, default), offchip (read from DDR over "
                   "AXI every pass), uram (loaded once from DDR into UltraRAM); io_stream, repeatable")
@click.option("--pack", "packs", multiple=True, metavar="LAYER=K",
              help="io_stream: LAYER's output stream carries K of its channels a token (K divides them; default: "
                   "whole pixels); an activation or add shares its input's pack; repeatable")
@_strategy_options
@click.option("--part", default=hls_options.DEFAULTS.part, show_default=True)
@click.option("--clock-period", default=hls_options.DEFAULTS.clock_period, show_default=True, type=FINITE_POSITIVE)
@click.option("--test-inputs", type=click.Path(dir_okay=False),
              help=".npy inputs for the testbench (default: 100 random inputs of the input type)")
@click.option("--project-name", default="myproject", show_default=True,
              help="top function and file names: a C identifier, not a C++ keyword")
@click.option("--overwrite", is_flag=True, help="replace an existing HLS project folder (only one we wrote)")
@_clean_errors
def hls(model_dir, out_dir, backend, io_type, reuse_factor, reuse, weights, packs, strategy, da_max_products, part,
        clock_period, test_inputs, project_name, overwrite):
    """Generate the HLS project (hls4ml + our low-bit kernels) with an exact testbench."""
    from .flow import generate_hls
    click.echo(generate_hls(model_dir, out_dir, backend=backend, io_type=io_type, reuse_factor=reuse_factor,
                            strategy=strategy, part=part, clock_period=clock_period, test_inputs=test_inputs,
                            project_name=project_name, overwrite=overwrite, reuse=reuse, weights=weights,
                            da_max_products=da_max_products, packs=packs))


@cli.command()
@click.argument("model_dir", type=click.Path())
@click.option("--reuse-factor", default=1, show_default=True, type=click.IntRange(min=1),
              help="default reuse factor of every weighted layer")
@click.option("--reuse", "reuse", multiple=True, metavar="LAYER=R", help="one layer's reuse factor (repeatable)")
@click.option("--weights", "weights", multiple=True, metavar="LAYER=MODE",
              help="onchip | offchip | uram: where a layer keeps its codes (repeatable; see `vecq-hw hls --help`)")
@click.option("--pack", "packs", multiple=True, metavar="LAYER=K",
              help="io_stream: LAYER's output stream carries K of its channels a token (K divides them; default: "
                   "whole pixels); an activation or add shares its input's pack; repeatable")
@click.option("--part", default=None, help="FPGA part (configs/hardware/parts.yaml; default: its 'default')")
@click.option("--clock-period", default=hls_options.DEFAULTS.clock_period, show_default=True, type=FINITE_POSITIVE)
@click.option("--io-type", type=click.Choice(list(hls_options.IO_TYPES)), default=hls_options.DEFAULTS.io_type,
              show_default=True)
@_strategy_options
@_clean_errors
def estimate(model_dir, reuse_factor, reuse, weights, packs, part, clock_period, io_type, strategy, da_max_products):
    """Estimate LUTs, FFs, DSPs, BRAM, II, latency and frames/s of the HLS design, per layer, before synthesis."""
    from .flow import estimate_hls
    click.echo(estimate_hls(model_dir, reuse=reuse, reuse_factor=reuse_factor, part=part, clock_period=clock_period,
                            io_type=io_type, weights=weights, strategy=strategy, da_max_products=da_max_products,
                            packs=packs))


@cli.command()
@click.argument("model_dir", type=click.Path())
@click.option("--part", required=True, help="FPGA part (configs/hardware/parts.yaml)")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="write the HLS project with the chosen folding here")
@click.option("--clock-period", default=hls_options.DEFAULTS.clock_period, show_default=True, type=FINITE_POSITIVE)
@click.option("--target", type=click.Choice(["throughput", "latency"]), default="throughput", show_default=True)
@click.option("--headroom", default=0.8, show_default=True, type=click.FloatRange(min=0, max=1, min_open=True),
              help="fraction of every resource of the part the design may use")
@click.option("--io-type", type=click.Choice(list(hls_options.IO_TYPES)), default=None,
              help="default: try both and keep the better plan")
@click.option("--test-inputs", type=click.Path(dir_okay=False),
              help=".npy inputs for the written project's testbench (default: 100 random inputs of the input type)")
@click.option("--weights", "weights", multiple=True, metavar="LAYER=MODE",
              help="keep this layer's codes where given (onchip | offchip | uram); the others fit chooses")
@click.option("--pack", "packs", multiple=True, metavar="LAYER=K",
              help="io_stream: LAYER's output stream carries K of its channels a token (K divides them; default: "
                   "whole pixels); an activation or add shares its input's pack; repeatable")
@click.option("--no-slicing", is_flag=True,
              help="io_stream: keep whole pixels a token where --pack gives none (default: the narrowest pack "
                   "that keeps each plan's II)")
@click.option("--overwrite", is_flag=True, help="replace an existing HLS project folder (only one we wrote)")
@_strategy_options
@_clean_errors
def fit(model_dir, part, out_dir, clock_period, target, headroom, io_type, test_inputs, weights, packs, no_slicing,
        overwrite, strategy, da_max_products):
    """Choose the per-layer folding that fits PART at the best balanced throughput; write the project.

    Exits 1 when nothing fits (the closest plan is printed)."""
    from .flow import fit_hls
    text, ok = fit_hls(model_dir, out_dir, part=part, clock_period=clock_period, target=target, headroom=headroom,
                       io_type=io_type, overwrite=overwrite, test_inputs=test_inputs, weights=weights,
                       strategy=strategy, da_max_products=da_max_products, packs=packs, slicing=not no_slicing)
    click.echo(text)
    if not ok:
        sys.exit(1)


@cli.command()
@click.argument("project_dir", type=click.Path(file_okay=False))
@click.option("--opt", default="-O3", show_default=True, type=click.Choice(["-O0", "-O1", "-O2", "-O3", "-Os", "-Og"]),
              help="g++ optimisation level (hls.csim.DEFAULT_OPT)")
@click.option("--timeout", type=FINITE_POSITIVE, default=None,
              help="stop after this many seconds, build included (default: no limit); finished shards are kept")
@click.option("--jobs", type=click.IntRange(min=1), default=None, help="testbench processes at once (default: twice the CPUs)")
@click.option("--restart", is_flag=True, help="discard the samples kept from an earlier unfinished run")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="shared precompiled headers (default: $VECQ_HW_CACHE, else ~/.cache/vecq_hw; at most "
                   "$VECQ_HW_CACHE_MB megabytes, default 1024, least recently used removed first)")
@click.option("--dataflow", is_flag=True,
              help="then run 2 samples with every FIFO as deep as its pragma and one thread per process "
                   "(io_stream): a FIFO too shallow for the schedule deadlocks (exit 3)")
@_clean_errors
def csim(project_dir, opt, timeout, jobs, restart, cache_dir, dataflow):
    """C-simulate a generated project with g++ and the ap_types headers; exit 3 on any mismatch.

    Progress goes to stderr. Ctrl-C stops the testbench processes; the samples finished so far are
    kept, and running the command again continues from there."""
    from .flow import CsimInterrupted, csim_hls, dataflow_hls
    try:  # a disagreement with the simulator raises ToolError (exit 3) after the summary
        csim_hls(project_dir, opt=opt, timeout=timeout, jobs=jobs, restart=restart, show=click.echo,
                 cache_dir=cache_dir)
        if dataflow:
            dataflow_hls(project_dir, show=click.echo)
    except CsimInterrupted as exc:
        click.echo(f"interrupted: {exc}", err=True)
        sys.exit(EXIT_INTERRUPTED)


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--data", "data_root", type=click.Path(file_okay=False), envvar="VECQ_HW_DATA")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(min=1),
              help="test images C-simulated")
@_clean_errors
def report(run_dir, data_root, limit):
    """Accuracy (float, QAT, simulator, C simulation), mismatches, memory, overflow per layer."""
    from .flow import report_run
    report_run(run_dir, data_root=data_root, limit=limit, show=click.echo)  # a disagreement: exit 3 after it


@cli.command()
@click.option("--out", "out_dir", default="demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--data", "data_root", type=click.Path(file_okay=False), envvar="VECQ_HW_DATA")
@click.option("--recipe", default=None, type=click.Path(dir_okay=False), help="default: configs/demo_lenet5_mnist_w2a8.yaml")
@click.option("--csim-images", default=1000, show_default=True, type=click.IntRange(min=1))
@_clean_errors
def demo(out_dir, data_root, recipe, csim_images):
    """Train LeNet-5 (2-bit VecQ, 8-bit activations) on MNIST, export, generate HLS, C-simulate, report."""
    from .flow import run_demo
    run_demo(out_dir, data_root=data_root, recipe=recipe, csim_images=csim_images)


@cli.command()
@click.argument("model_dir", type=click.Path())
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="RTL project folder")
@click.option("--flavor", type=click.Choice(list(rtl_options.FLAVORS)), default=rtl_options.DEFAULTS.flavor,
              show_default=True)
@click.option("--latency-cutoff", default=rtl_options.DEFAULTS.latency_cutoff, show_default=True,
              type=_FiniteFloat(min=0), help="da4ml delay units per pipeline stage; 0 = one combinational block")
@click.option("--clock-period", default=rtl_options.DEFAULTS.clock_period, show_default=True, type=FINITE_POSITIVE,
              help="ns, written into the xdc/sdc constraints")
@click.option("--part", default=rtl_options.DEFAULTS.part, show_default=True)
@click.option("--max-adder-bits", default=rtl_options.DEFAULTS.max_adder_bits, show_default=True,
              type=click.IntRange(min=1), help="refuse models whose estimated size is larger")
@click.option("--overwrite", is_flag=True, help="replace an existing RTL project folder")
@_clean_errors
def rtl(model_dir, out_dir, flavor, latency_cutoff, clock_period, part, max_adder_bits, overwrite):
    """Trace a model folder with da4ml and write Verilog/VHDL plus Vivado/Quartus scripts."""
    from .flow import generate_rtl
    opts = rtl_options.RtlOptions(flavor=flavor, latency_cutoff=latency_cutoff, clock_period=clock_period, part=part,
                                  max_adder_bits=max_adder_bits)
    click.echo(generate_rtl(model_dir, out_dir, opts, overwrite=overwrite))


@cli.command()
@click.argument("project_dir", type=click.Path(file_okay=False))
@click.option("--inputs", "input_path", type=click.Path(dir_okay=False),
              help=".npy input mantissas (integers) or values (floats), (N,)+input shape")
@click.option("-n", "n", default=2000, show_default=True, type=click.IntRange(min=1),
              help="random inputs (the HLS testbench's generator and seed) when --inputs is not given")
@_clean_errors
def rtlsim(project_dir, input_path, n):
    """Verilate the RTL; compare it and da4ml's interpreter with the simulator exactly (exit 3 on any mismatch)."""
    from .flow import simulate_rtl_files
    simulate_rtl_files(project_dir, input_path, n=n, show=click.echo)  # a mismatch: exit 3 after the summary


@cli.command()
@click.argument("project_dir", type=click.Path(file_okay=False))
@click.option("--part", default=None, help="Xilinx part (default: the project's)")
@click.option("--dsp", is_flag=True, help="allow DSP inference (default: LUTs and carry chains only)")
@click.option("--retime", is_flag=True, help="let yosys retime flip-flops (synth_xilinx -retime)")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="also write the report here")
@_clean_errors
def synth(project_dir, part, dsp, retime, json_path):
    """yosys synth_xilinx counts (LUTs, carry, FFs, DSPs, BRAMs, depth); not Vivado post-route results."""
    from .flow import synth_rtl
    click.echo(synth_rtl(project_dir, part=part, dsp=dsp, retime=retime, json_path=json_path))


@cli.command()
@click.argument("model_dir", type=click.Path())
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help=".onnx file to write")
@click.option("--overwrite", is_flag=True, help="replace an existing file")
@_clean_errors
def qonnx(model_dir, out_path, overwrite):
    """Write a model folder as a QONNX graph (Quant nodes + ONNX) for hls4ml and FINN (docs/QONNX.md)."""
    from .flow import export_qonnx_file
    click.echo(export_qonnx_file(model_dir, out_path, overwrite=overwrite))


@cli.command("import-qonnx")
@click.argument("onnx_path", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="model folder to write")
@click.option("--overwrite", is_flag=True, help="replace an existing model folder")
@_clean_errors
def import_qonnx(onnx_path, out_dir, overwrite):
    """Read a QONNX graph (e.g. a Brevitas export) into a model folder; refuse what is not exact, naming the node."""
    from .flow import import_qonnx_file
    click.echo(import_qonnx_file(onnx_path, out_dir, overwrite=overwrite))


#: set for this process unless the user set them, before anything loads torch (libgomp reads
#: them when it loads): an OpenMP thread that waits for work sleeps at once instead of spinning
#: for ~300,000 rounds. A spinning thread keeps a core from whatever else runs, and beside a busy
#: process it stalls the thread it waits for: ``benchmarks/results/train_threads.md``.
OPENMP_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def main(argv=None):
    for key, value in OPENMP_ENV.items():
        os.environ.setdefault(key, value)
    cli.main(args=argv, prog_name="vecq-hw")


if __name__ == "__main__":
    main()
