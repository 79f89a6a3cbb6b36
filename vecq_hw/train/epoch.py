"""One epoch's pieces: the data order's seed, the optimizer and its schedule, a training pass
and an evaluation pass (the Trainer, :mod:`.trainer`, strings them together)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + 1) % (2**63 - 1)


def _make_optimizer(rec: dict, model: nn.Module, lr: float, steps_per_epoch: int, epochs: int,
                    params=None):
    """The recipe's optimizer and per-batch learning-rate schedule over ``epochs`` epochs of
    ``steps_per_epoch`` steps; ``params``: what it trains (default every parameter of
    ``model``; a procedure may leave some out, :meth:`.procedure.QuantProcedure.excluded_parameters`)."""
    t = rec["train"]
    params = list(model.parameters()) if params is None else params
    if t["optimizer"] == "adam":
        opt = torch.optim.Adam(params, lr=lr, weight_decay=t["weight_decay"])
    else:
        opt = torch.optim.SGD(params, lr=lr, momentum=t["momentum"],
                              weight_decay=t["weight_decay"])
    total = max(1, steps_per_epoch * epochs)
    kind, step_size, gamma = t["lr_schedule"], t["step_size"], t["gamma"]

    def factor(it: int) -> float:  # stepped once per batch; a Python float: the lr lands in
        if kind == "cosine":       # the checkpoint, which holds plain data only
            return float(0.5 * (1.0 + np.cos(np.pi * min(it, total) / total)))
        if kind == "step":
            return float(gamma ** ((it // max(1, steps_per_epoch)) // step_size))
        return 1.0

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return opt, sched


def _eval_sums(model: nn.Module, loader, device=None) -> tuple[float, int, int]:
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    n = 0
    with torch.no_grad():
        for x, y in loader:
            if device is not None:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            out = model(x)
            loss_sum += nn.functional.cross_entropy(out, y, reduction="sum").double()
            correct += (out.argmax(1) == y).sum()
            n += int(y.numel())
    model.train(was_training)
    return float(loss_sum), int(correct), n


def evaluate(model: nn.Module, loader, device=None) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` in eval mode over ``loader``."""
    loss_sum, correct, n = _eval_sums(model, loader, device)
    return loss_sum / max(n, 1), correct / max(n, 1)


def _train_one_epoch(model, loader, opt, sched, *, desc: str, progress: bool, device=None,
                     before_step=None, after_step=None, loss_fn=None, penalty=None) -> tuple[float, int, int]:
    """One pass over ``loader``; returns (sum of per-sample losses, correct, samples).

    ``before_step()`` runs before each batch's forward pass, ``after_step(lr)`` after each
    optimizer and scheduler step with the learning rate that step used; ``loss_fn(x, out, y)``
    is the training loss (None: the cross-entropy with the labels); ``penalty()`` after the
    forward pass, a tensor added to the loss that is backpropagated (None: nothing; the returned
    sums are the training loss's).

    The sums stay on the device (no host sync per batch); the loss sum is float64 and adds
    the same terms in the same order as summing ``float(loss) * batch`` on the host.
    ``progress`` draws a per-batch bar (the caller decides: terminals only).
    """
    from tqdm.auto import tqdm

    model.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    n = 0
    bar = tqdm(loader, desc=desc, leave=False, disable=not progress, unit="batch", dynamic_ncols=True)
    for i, (x, y) in enumerate(bar):
        if device is not None:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if before_step is not None:
            before_step()
        opt.zero_grad(set_to_none=True)
        out = model(x)
        loss = nn.functional.cross_entropy(out, y) if loss_fn is None else loss_fn(x, out, y)
        extra = penalty() if penalty is not None else None
        (loss if extra is None else loss + extra).backward()
        lr = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
        if after_step is not None:
            after_step(lr)
        b = int(y.numel())
        loss_sum += loss.detach().double() * b
        correct += (out.detach().argmax(1) == y).sum()
        n += b
        if progress and i % 10 == 0:
            bar.set_postfix(loss=f"{float(loss_sum) / n:.4f}", acc=f"{int(correct) / n:.4f}",
                            refresh=False)
    bar.close()
    return float(loss_sum), int(correct), n
