"""Plots people look at: weight histograms with their quantisation levels."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_weight_histograms(model, path) -> Path:
    """One panel per VecQ layer: the float weights and the levels levels[c]·unit·alpha they map to.

    Per-channel layers have one alpha per output channel; the panel then shows the levels of
    the channel with the median alpha, so the plot stays readable.
    """
    plt = _pyplot()
    layers = [(n, m) for n, m in model.named_modules() if hasattr(m, "integer_weights")]
    fig, axes = plt.subplots(1, max(len(layers), 1), figsize=(3.6 * max(len(layers), 1), 3), squeeze=False)
    for ax, (name, m) in zip(axes[0], layers):
        w = m.weight.detach().double().cpu().numpy().ravel()
        iw = m.integer_weights()
        alpha = np.asarray(iw.alpha, dtype=np.float64).reshape(-1)
        a = float(np.median(alpha))
        levels = iw.levels.astype(np.float64) * iw.unit * a  # the quantiser's own table
        ax.hist(w, bins=120, color="#4c72b0", alpha=0.8)
        for v in levels:
            ax.axvline(v, color="#c44e52", lw=0.8)
        ax.set_title(f"{name}: {iw.bits}-bit, {len(levels)} levels", fontsize=9)
        ax.set_xlabel("weight")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
