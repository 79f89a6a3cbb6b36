"""One rank of a data-parallel test run, started by tests/test_distributed.py the way torchrun
starts ranks (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT in the environment).

    python tests/_dist_worker.py train RECIPE.json OUT DUMP [STOP]
    python tests/_dist_worker.py quantstate DUMP

``train`` runs vecq_hw.train.train (``--resume`` when OUT holds a checkpoint) and saves this
rank's weights and quantiser state after every epoch E to DUMP/rank{R}-epoch{E}.pt;
``quantstate`` builds an adaptive-VecQ model under DDP, lets the ranks
run a different number of forward passes, and saves the quantiser state before and after one
training step with the synchronisation the training loop uses.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch


def _dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)


def run_train(recipe: str, out: str, dump: str, stop: str | None) -> None:
    from vecq_hw.train import train
    from vecq_hw.train.quantstate import quant_state

    rank = int(os.environ["RANK"])

    def hook(model, d, epoch):
        state = {k: v.clone() for k, v in model.state_dict().items()}
        _dump(Path(dump) / f"rank{rank}-epoch{epoch}.pt", {"state": state, "quant": quant_state(model),
                                                           "world": d.world})

    rec = json.loads(Path(recipe).read_text())
    resume = (Path(out) / "checkpoint.pt").exists()
    r = train(rec, out, resume=resume, progress=False, plot=False, threads=1, device="cpu",
              stop_after_epochs=int(stop) if stop else None, _rank_hook=hook)
    _dump(Path(dump) / f"metrics{rank}.pt", {"metrics": json.dumps(r)})


def run_quantstate(dump: str) -> None:
    import torch.distributed as tdist

    from vecq_hw.models import build_model
    from vecq_hw.train import dist as D
    from vecq_hw.train.quantstate import quant_state

    torch.set_num_threads(1)
    d = D.init(D.from_env(), torch.device("cpu"))
    torch.manual_seed(0)
    model = build_model("lenet5", conv_channels=(4, 8), hidden=16,
                        weight_quant={"method": "vecq", "bits": 2, "adaptive": True, "refresh_every": 3})
    net = D.wrap(model, torch.device("cpu"))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(100 + d.rank)  # each rank its own data
    x, y = torch.rand(8, 1, 28, 28, generator=g), torch.randint(0, 10, (8,), generator=g)
    with torch.no_grad():  # uneven evaluation shards: rank r runs r + 1 extra forwards
        for _ in range(d.rank + 1):
            model(x)
    before = quant_state(model)
    opt.zero_grad()
    torch.nn.functional.cross_entropy(net(x), y).backward()
    opt.step()
    D.sync_quant_state(d, model)  # what the loop calls after every step (refresh_every > 1)
    after = quant_state(model)
    _dump(Path(dump) / f"rank{d.rank}.pt", {"before": before, "after": after,
                                            "params": {k: v.detach().clone() for k, v in model.named_parameters()}})
    tdist.barrier()
    D.shutdown(d)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    if sys.argv[1] == "train":
        run_train(*sys.argv[2:5], sys.argv[5] if len(sys.argv) > 5 else None)
    else:
        run_quantstate(sys.argv[2])
