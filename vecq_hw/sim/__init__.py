"""Bit-accurate numpy simulator over the integer model (see ``simulator.py``)."""

from .simulator import SimResult, Simulator, simulate

__all__ = ["SimResult", "Simulator", "simulate"]
