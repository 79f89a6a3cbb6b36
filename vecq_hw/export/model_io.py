"""Moved to :mod:`vecq_hw.ir.io` (the file format belongs to the integer model); this name
stays so that code written against earlier releases keeps importing."""

from ..ir.io import *  # noqa: F401,F403
from ..ir.io import FORMAT_VERSION, SaveReport, load_model, model_to_files, save_model, weight_memory_report  # noqa: F401
