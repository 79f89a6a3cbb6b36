"""A paper-size LeNet-5 integer model (32C5-64C5-FC512, random k-bit codes) for estimates and fits.

Random weights: the estimate depends on shapes, widths and k, not on the codes' values.
"""

from __future__ import annotations

import numpy as np

from ... import ir
from ...fixed import FixedType
from ...ir.examples import random_codes, relu_type, weighted_layer


def paper_lenet5(bits: int = 2, *, seed: int = 0, size: int = 28, channels=(32, 64), hidden: int = 512,
                 n_out: int = 10, pad: int = 2) -> ir.Model:
    """conv5x5 -> relu -> maxpool2 -> conv5x5 -> relu -> maxpool2 -> fc hidden -> relu -> fc n_out (8-bit acts)."""
    rng = np.random.default_rng(seed)
    t_in = FixedType(8, 1, False)
    t8 = FixedType(8, 3, True, "AP_RND", "AP_SAT")
    layers: list[ir.Layer] = [ir.Input(name="input_1", out_type=t_in, shape=(size, size, 1))]
    t, c_in = t_in, 1
    for i, c in enumerate(channels):
        layers.append(weighted_layer(ir.Conv2D, f"conv{i + 1}", rng, t, random_codes(rng, (5, 5, c_in, c), bits), bits, "odd",
                                t8, padding=(pad,) * 4))
        r = relu_type(t8)
        layers += [ir.ReLU(name=f"relu{i + 1}", out_type=r), ir.MaxPool2D(name=f"pool{i + 1}", out_type=r)]
        t, c_in = r, c
    layers.append(ir.Flatten(name="flatten", out_type=t))
    n_flat = ir.Model(name="tmp", layers=list(layers)).output_shape[0]
    layers.append(weighted_layer(ir.Dense, "fc1", rng, t, random_codes(rng, (n_flat, hidden), bits), bits, "odd", t8))
    r = relu_type(t8)
    layers.append(ir.ReLU(name="relu3", out_type=r))
    layers.append(weighted_layer(ir.Dense, "fc2", rng, r, random_codes(rng, (hidden, n_out), bits), bits, "odd",
                            FixedType(12, 5, True, "AP_RND", "AP_SAT")))
    return ir.Model(name=f"lenet5_paper_w{bits}", layers=layers).check()
