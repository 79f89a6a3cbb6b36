"""Automatic bit selection (SGQuant's ABS) for the stored features of a quantised GCN.

SGQuant searches the bit-widths of its quantisation granularities under a memory budget. Here the
granularities searched are the stored features u of each layer and each degree bucket (the widths
that decide the on-chip feature memory); the memory is the average bits per stored value
(:func:`stored_bits`, every node's row counted at its bucket's width). The search is greedy and
driven by the validation nodes only:

    start from the trained widths; while the average exceeds the budget: try taking one bit from
    each (layer, bucket) above ``min_bits``, keep the cut with the best validation accuracy (ties:
    the lower validation loss, then the larger memory saving)

Each try is one evaluation of the QAT model with those types (no retraining inside the search);
the caller fine-tunes at the chosen widths afterwards. Every step is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Selection:
    widths: list
    steps: list = field(default_factory=list)


def stored_bits(convs, widths) -> float:
    """Average bits per stored feature value: Σ_layer Σ_node f_layer * width(layer, bucket(node)) / values."""
    bits = values = 0
    for conv, wl in zip(convs, widths):
        counts = np.bincount(conv.node_bucket.astype(np.int64), minlength=len(wl))
        f = conv.lin.out_features
        bits += f * int(np.dot(counts[:len(wl)], wl))
        values += f * int(counts.sum())
    return bits / values


def select_widths(model, validate, types_of, widths, budget: float, min_bits: int) -> Selection:
    """Greedy descent to ``budget`` average stored bits (see the module docstring): ``types_of(widths)``
    gives the model's types, ``validate()`` its (validation accuracy, validation loss) with them set.
    The model is left with its original types."""
    original = types_of(widths)
    convs = model.convs()
    sel = Selection(widths=[list(w) for w in widths])
    while stored_bits(convs, sel.widths) > budget:
        best = None
        for layer, wl in enumerate(sel.widths):
            for bucket, w in enumerate(wl):
                if w <= min_bits:
                    continue
                trial = [list(v) for v in sel.widths]
                trial[layer][bucket] -= 1
                model.set_types(types_of(trial))
                acc, loss = validate()
                key = (acc, -loss, -stored_bits(convs, trial))
                if best is None or key > best[0]:
                    best = (key, trial, layer, bucket)
        if best is None:
            break  # every width at min_bits: the budget cannot be met
        (acc, neg_loss, neg_bits), sel.widths = best[0], best[1]
        sel.steps.append({"layer": best[2], "bucket": best[3], "widths": [list(w) for w in sel.widths],
                          "val_acc": acc, "val_loss": -neg_loss, "avg_bits": -neg_bits})
    model.set_types(original)
    return sel


__all__ = ["Selection", "select_widths", "stored_bits"]
