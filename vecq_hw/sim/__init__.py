"""Bit-accurate numpy simulator over the integer model (see ``simulator.py``)."""

from . import alq  # noqa: F401  (registers the kernels of ALQ's native kinds)
from . import pq  # noqa: F401  (registers the kernels of the PQ kinds)
from . import gnn  # noqa: F401  (registers the kernels of the graph kinds: node_dense, gcn_aggregate)
from .simulator import SimResult, Simulator, simulate

__all__ = ["SimResult", "Simulator", "simulate"]
