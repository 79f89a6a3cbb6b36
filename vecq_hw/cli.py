"""The `vecq-hw` command: train, export, sim, hls, csim, report, demo.

Each command is a thin shell over the Python API of the same name. Bad input (a
``VecQError``) is printed as its one line and the command exits 2, without a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

from .errors import VecQError


def _clean_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except VecQError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vecq_hw")
def cli():
    """VecQ low-bit networks: PyTorch training -> integer model -> bit-exact HLS C++."""


@cli.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="run folder")
@click.option("--data", "data_root", type=click.Path(file_okay=False), envvar="VECQ_HW_DATA",
              help="dataset folder (default: $VECQ_HW_DATA, then ../shared/datasets)")
@click.option("--resume", is_flag=True, help="continue from the run folder's last checkpoint")
@_clean_errors
def train(recipe, out_dir, data_root, resume):
    """Train a recipe (YAML from configs/) into a run folder."""
    from .train import train as run_training
    metrics = run_training(recipe, out_dir, resume=resume, data_root=data_root)
    click.echo(json.dumps(metrics, indent=2))


@cli.command()
@click.argument("source", type=click.Path(exists=True))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="model folder to write")
@click.option("--scale-bits", default=16, show_default=True, help="significant bits kept of each layer's largest scale")
@click.option("--scale-frac", type=int, default=None, help="fix the scales' fractional bits instead")
@click.option("--multiplier", type=click.Choice(["auto", "dsp", "fabric"]), default="auto", show_default=True,
              help="HLS multiplier binding for 5..8-bit layers")
@click.option("--overwrite", is_flag=True, help="replace an existing model folder")
@click.option("--data", "data_root", type=click.Path(file_okay=False), envvar="VECQ_HW_DATA")
@click.option("--eval-limit", default=1000, show_default=True, help="test images used to report the accuracy effect")
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
    from .export.model_io import load_model, weight_memory_report
    from .report import describe_model
    model = load_model(model_dir)
    click.echo(describe_model(model, weight_memory_report(model)))


@cli.command()
@click.argument("model_dir", type=click.Path())
@click.option("--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help=".npy float array (N,)+input shape, channels-last")
@click.option("--output", "output_path", type=click.Path(dir_okay=False), help=".npy of output values (float64)")
@click.option("--mantissas", is_flag=True, help="write integer mantissas instead of values")
@click.option("--trace", "trace_dir", type=click.Path(file_okay=False), help="write every layer's output here")
@_clean_errors
def sim(model_dir, input_path, output_path, mantissas, trace_dir):
    """Run the bit-accurate simulator on a batch and print per-layer overflow counts."""
    from .flow import simulate_files
    click.echo(simulate_files(model_dir, input_path, output_path, mantissas=mantissas, trace_dir=trace_dir))


@cli.command()
@click.argument("model_dir", type=click.Path())
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="HLS project folder")
@click.option("--backend", type=click.Choice(["Vivado", "Vitis"]), default="Vitis", show_default=True)
@click.option("--io-type", type=click.Choice(["io_parallel", "io_stream"]), default="io_parallel", show_default=True)
@click.option("--reuse-factor", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--strategy", type=click.Choice(["Latency", "Resource"]), default="Latency", show_default=True)
@click.option("--part", default="xcu250-figd2104-2L-e", show_default=True)
@click.option("--clock-period", default=5.0, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--test-inputs", type=click.Path(dir_okay=False),
              help=".npy inputs for the testbench (default: 100 random inputs of the input type)")
@click.option("--project-name", default="myproject", show_default=True)
@_clean_errors
def hls(model_dir, out_dir, backend, io_type, reuse_factor, strategy, part, clock_period, test_inputs, project_name):
    """Generate the HLS project (hls4ml + our low-bit kernels) with an exact testbench."""
    from .flow import generate_hls
    click.echo(generate_hls(model_dir, out_dir, backend=backend, io_type=io_type, reuse_factor=reuse_factor,
                            strategy=strategy, part=part, clock_period=clock_period, test_inputs=test_inputs,
                            project_name=project_name))


@cli.command()
@click.argument("project_dir", type=click.Path(file_okay=False))
@click.option("--opt", default="-O1", show_default=True, help="g++ optimisation level")
@_clean_errors
def csim(project_dir, opt):
    """C-simulate a generated project with g++ and the ap_types headers; exit 1 on any mismatch."""
    from .hls import csim as run_csim
    result = run_csim(project_dir, opt=opt)
    click.echo(result.summary())
    sys.exit(0 if result.ok else 1)


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--data", "data_root", type=click.Path(file_okay=False), envvar="VECQ_HW_DATA")
@click.option("--limit", default=1000, show_default=True, help="test images")
@_clean_errors
def report(run_dir, data_root, limit):
    """Accuracy (float, QAT, simulator, C simulation), mismatches, memory, overflow per layer."""
    from .report import run_report
    click.echo(run_report(run_dir, data_root=data_root, limit=limit))


@cli.command()
@click.option("--out", "out_dir", default="demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--data", "data_root", type=click.Path(file_okay=False), envvar="VECQ_HW_DATA")
@click.option("--recipe", default=None, type=click.Path(dir_okay=False), help="default: configs/demo_lenet5_mnist_w2a8.yaml")
@click.option("--csim-images", default=1000, show_default=True)
@_clean_errors
def demo(out_dir, data_root, recipe, csim_images):
    """Train LeNet-5 (2-bit VecQ, 8-bit activations) on MNIST, export, generate HLS, C-simulate, report."""
    from .flow import run_demo
    run_demo(out_dir, data_root=data_root, recipe=recipe, csim_images=csim_images)


def main(argv=None):
    cli.main(args=argv, prog_name="vecq-hw")


if __name__ == "__main__":
    main()
