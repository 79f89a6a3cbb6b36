"""vecq_hw: VecQ low-bit networks from PyTorch to bit-exact HLS C++."""

__version__ = "0.1.0"
