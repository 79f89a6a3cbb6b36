"""Edits to the top function hls4ml wrote that its writer has no hook for (issue 28).

* :func:`add_weight_ports`: one ``const ap_uint<W> vecq_wmem<i>[words]`` parameter per streamed
  layer (its m_axi port; the INTERFACE pragma is written by the layer's own call, in the body);
* :func:`bind_fifos_to_uram`: ``BIND_STORAGE ... impl=uram`` beside the STREAM pragma of the
  FIFOs the estimate placed in UltraRAM.

Each edit finds exactly the text hls4ml writes (``void <top>(`` ... ``) {`` in the .cpp, ``);``
in the .h; ``#pragma HLS STREAM variable=<v> depth=``) and refuses anything else with one line,
so a changed hls4ml writer fails loudly rather than silently.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import VecQError


def add_weight_ports(firmware: Path, project: str, ports: list[tuple[str, int, int]]) -> None:
    """``ports``: (name, word bits, words) appended to the top function's parameters."""
    if not ports:
        return
    args = "".join(f",\n    const ap_uint<{bits}> {name}[{words}]" for name, bits, words in ports)
    for fname, close in ((f"{project}.cpp", ") {"), (f"{project}.h", ");")):
        path = firmware / fname
        text = path.read_text()
        m = re.search(rf"^void {re.escape(project)}\(\n(.*?)\n{re.escape(close)}", text, re.S | re.M)
        if m is None or text.count(f"void {project}(") != 1:
            raise VecQError(f"internal: the top function '{project}' is not where hls4ml writes it", file=path)
        path.write_text(text[:m.end(1)] + args + text[m.end(1):])


def bind_fifos_to_uram(firmware: Path, project: str, streams: list[str]) -> None:
    path = firmware / f"{project}.cpp"
    for name in streams:
        text = path.read_text()
        m = re.search(rf"^(\s*)#pragma HLS STREAM variable={re.escape(name)} depth=\d+\s*$", text, re.M)
        if m is None:
            raise VecQError(f"internal: no STREAM pragma for '{name}' in the file hls4ml wrote", file=path)
        line = f"\n{m.group(1)}#pragma HLS BIND_STORAGE variable={name} type=fifo impl=uram"
        path.write_text(text[:m.end()] + line + text[m.end():])


__all__ = ["add_weight_ports", "bind_fifos_to_uram"]
