"""The LUTs-vs-throughput plot of the foldings ``fit`` estimated (``FitResult.tried``).

One point per candidate plan: x = frames/s at the clock, y = estimated LUTs (both log scales);
filled = within the budget on every resource, hollow = over it on at least one (so a point below
the LUT line can still be hollow: BRAM or DSPs were the limit). The LUT budget (part x headroom)
is a horizontal line; the chosen plan (or, when nothing fits, the closest) is a star. matplotlib
is imported inside the function (Agg, no display): importing this module costs nothing.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import VecQError

DEFAULT_NAME = "fit_candidates.png"
STYLE = {"io_parallel": ("o", "C1"), "io_stream": ("s", "C0")}  # marker, colour


def write_fit_plot(result, out_dir, name: str = DEFAULT_NAME) -> Path:
    """Write the plot of ``result`` (a ``FitResult``) to ``out_dir``/``name`` and return its path.

    ``name`` is a plain file name: the plot lands inside ``out_dir`` and nowhere else."""
    if Path(name).name != name or not name.endswith(".png"):
        raise VecQError(f"expected a plain file name ending in .png, got {name!r}", field="name")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = result.plan or result.closest
    tried = result.tried or [chosen]
    part = chosen.part
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=100)
    for io, (marker, colour) in STYLE.items():
        for fits in (True, False):
            pts = [e for e in tried if e.io_type == io and e.fits(result.headroom) == fits]
            if pts:
                ax.scatter([e.fps for e in pts], [max(e.total("luts"), 1.0) for e in pts], marker=marker, s=28,
                           facecolors=colour if fits else "none", edgecolors=colour,
                           label=f"{io}, {'fits' if fits else 'over budget'} ({len(pts)})")
    budget = part.luts * result.headroom
    ax.axhline(budget, color="C3", linestyle="--",
               label=f"LUT budget: {result.headroom:.0%} of {part.luts:,} ({part.name})")
    ax.scatter([chosen.fps], [max(chosen.total("luts"), 1.0)], marker="*", s=260, color="C2", edgecolors="k",
               zorder=5, label=("chosen: " if result.ok else "closest (does NOT fit): ")
               + f"{chosen.fps:,.0f} fps, {chosen.total('luts'):,.0f} LUTs, {chosen.io_type}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"throughput (frames/s at {1e3 / chosen.clock_period:.0f} MHz, estimated)")
    ax.set_ylabel("LUTs (estimated before synthesis)")
    ax.set_title(f"{chosen.model} on {part.name}: the {len(tried)} foldings `fit` estimated")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = out_dir / name
    fig.savefig(path)
    plt.close(fig)
    return path


__all__ = ["DEFAULT_NAME", "write_fit_plot"]
