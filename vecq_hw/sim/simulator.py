"""The bit-accurate simulator over the integer model (``vecq_hw.ir``).

``simulate(model, x)`` runs a batch through the graph (in its topological order) in
fixed-size chunks, so peak memory depends on ``chunk_size``, not on the number of samples
(the output, and the trace when asked for, are the only arrays that grow with N). Within a
chunk an activation is kept until its last reader has run, then dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import ir
from ..errors import VecQError
from ..fixed import FixedType
from .float_requant import carrier_dtype
from .kernels import Kernel, make_kernel


def one_blas_thread():
    """BLAS (numpy's OpenBLAS) on one thread while the simulator runs. Its GEMMs are small (a
    chunk of ~100 samples, an inner dimension of kh*kw*c_in), where OpenBLAS's threads mostly
    wait for each other, spinning: on the 10,000 MNIST test images of the demo model, 2 threads
    took 3x the CPU time of 1 (7.0 s against 2.3 s) and were slower, idle or beside a busy
    process (benchmarks/results/sim_blas.md). The integers computed are the same either way."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


@dataclass
class SimResult:
    """What :func:`simulate` returns.

    ``output``: int64 mantissas of ``out_type``, shape (N,) + the model's output shape.
    ``trace``: layer name -> int64 mantissas of that layer's output (``trace=True`` only;
    the input layer's entry is the converted input).
    ``overflow``: weighted-layer name -> {'saturated', 'wrapped', 'total'} (``count_overflow``
    only): how many values of y, after rounding and before the overflow step, fell outside
    the out_type's range (classified by its overflow mode: AP_SAT/AP_SAT_ZERO/AP_SAT_SYM
    count as saturated, AP_WRAP/AP_WRAP_SM as wrapped), and how many were requantised.
    """

    output: np.ndarray
    out_type: FixedType
    trace: dict[str, np.ndarray] | None = None
    overflow: dict[str, dict[str, int]] | None = field(default=None)

    def values(self) -> np.ndarray:
        return self.out_type.to_float(self.output)


class Simulator:
    """A model compiled into kernels; reusable across calls."""

    def __init__(self, model: ir.Model, *, force_dtype: str | None = None):
        model.check()
        self.model = model
        self.in_type: FixedType = model.input.out_type
        self.in_shape = tuple(int(s) for s in model.input.shape)
        nodes = model.nodes()
        self.kernels: list[Kernel] = [make_kernel(n, force_dtype) for n in nodes[1:]]
        # reads left of each activation, per layer position: who may overwrite what
        readers = model.consumers()
        self._n_readers = {name: len(r) for name, r in readers.items()}
        self.out_shape = tuple(model.output_shape)
        self.out_type = model.output_type

    def _input_source(self, x, x_mantissa):
        """The input array and a per-chunk conversion to mantissas of the input type.

        Conversion happens chunk by chunk, so no N-sized copy of the input is made. The
        mantissas travel in the type's carrier dtype (float32/float64 when that holds them
        exactly, see ``float_requant``): the first GEMM then needs no int64 -> float pass."""
        carrier = carrier_dtype(self.in_type)
        if (x is None) == (x_mantissa is None):
            raise VecQError("simulate needs exactly one of x (float values) or x_mantissa")
        if x is not None:
            arr = np.asarray(x)
            self._check_shape(arr.shape, "x")
            return arr, lambda c: self.in_type.from_float(c, dtype=carrier)
        arr = np.asarray(x_mantissa)
        if arr.dtype.kind not in "iu":
            raise VecQError(f"x_mantissa must hold integers, got dtype {arr.dtype}", field="x_mantissa")
        self._check_shape(arr.shape, "x_mantissa")
        t = self.in_type
        if arr.size and (int(arr.min()) < t.min_mantissa or int(arr.max()) > t.max_mantissa):
            raise VecQError(f"input mantissas outside the input type {t} "
                            f"[{t.min_mantissa}, {t.max_mantissa}]", field="x_mantissa")
        return arr, lambda c: c.astype(carrier)

    def _check_shape(self, shape, name):
        if tuple(shape[1:]) != self.in_shape or len(shape) != len(self.in_shape) + 1:
            raise VecQError(f"expected an array of shape (N,)+{self.in_shape}, got {tuple(shape)}",
                            field=name)

    def run(self, x=None, *, x_mantissa=None, trace=False, count_overflow=False,
            chunk_size=None) -> SimResult:
        if chunk_size is None:
            chunk_size = auto_chunk_size(self.model)
        if int(chunk_size) < 1:
            raise VecQError(f"chunk_size must be positive, got {chunk_size}", field="chunk_size")
        chunk_size = int(chunk_size)
        src, convert = self._input_source(x, x_mantissa)
        n = src.shape[0]
        output = np.empty((n,) + self.out_shape, dtype=np.int64)
        traces = None
        if trace:
            traces = {}
            for k in [None] + self.kernels:
                layer, shape = (self.model.input, self.in_shape) if k is None else (k.layer, k.out_shape)
                traces[layer.name] = np.empty((n,) + tuple(shape), dtype=np.int64)
        counts = None
        if count_overflow:
            counts = {k.layer.name: {"saturated": 0, "wrapped": 0, "total": 0}
                      for k in self.kernels if k.requantises}
        with one_blas_thread():
            self._run_chunks(src, convert, chunk_size, output, traces, counts)
        return SimResult(output=output, out_type=self.out_type, trace=traces, overflow=counts)

    def _run_chunks(self, src, convert, chunk_size, output, traces, counts) -> None:
        n, in_name = src.shape[0], self.model.input.name
        for start in range(0, n, chunk_size):
            h = convert(src[start:start + chunk_size])
            if traces is not None:
                traces[in_name][start:start + chunk_size] = h
            live = {in_name: h}
            left = dict(self._n_readers)
            for k in self.kernels:
                xs = []
                for src_name in k.layer.inputs:
                    left[src_name] -= 1
                    # a kernel may overwrite its input: hand over the array itself only to its last reader
                    xs.append(live.pop(src_name) if left[src_name] == 0 else live[src_name].copy())
                c = None if counts is None else counts.get(k.layer.name)
                h = k.run(xs[0], c) if len(xs) == 1 else k.run_many(xs, c)
                live[k.layer.name] = h
                if traces is not None:
                    traces[k.layer.name][start:start + chunk_size] = h
            output[start:start + chunk_size] = h


def simulate(model: ir.Model, x=None, *, x_mantissa=None, trace: bool = False,
             count_overflow: bool = False, chunk_size: int | None = None) -> SimResult:
    """Run ``model`` bit-accurately on a batch.

    ``x``: float array of shape (N,) + input shape (channels-last), converted to the input
    type with ``from_float``; or ``x_mantissa``: int mantissas already in the input type.
    """
    return Simulator(model).run(x, x_mantissa=x_mantissa, trace=trace,
                                count_overflow=count_overflow, chunk_size=chunk_size)


#: working-set budget per chunk, in values of the widest per-sample intermediate (im2col included)
CHUNK_BUDGET = 1 << 24


def auto_chunk_size(model: ir.Model) -> int:
    """Samples per chunk: as many as keep the widest intermediate under CHUNK_BUDGET values.

    Small networks get big chunks (numpy's per-call overhead dominates them); a LeNet-sized
    CNN gets about a hundred. Memory is bounded either way, whatever the batch size.
    """
    widest = 1
    for node in model.nodes():
        per = int(np.prod(node.out_shape))
        if isinstance(node.layer, ir.Conv2D):  # the im2col matrix
            per = max(per, int(np.prod(node.out_shape[:2])) * int(np.prod(node.layer.codes.shape[:3])))
        elif node.in_shapes:
            per = max(per, int(np.prod(node.in_shapes[0])))
        widest = max(widest, per)
    return int(max(1, min(1 << 12, CHUNK_BUDGET // widest)))

