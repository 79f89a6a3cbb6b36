"""Cora and CiteSeer (Planetoid, public split) from the offline ``planetoid/<name>.npz`` files, md5-checked.

The data folder is searched as :mod:`vecq_hw.data` does (``root``, ``$VECQ_HW_DATA``,
``../shared/datasets``), in its ``planetoid/`` subfolder or the folder itself. Each ``.npz`` holds
plain arrays (no pickles): the node features as CSR (``x_data``, ``x_indices``, ``x_indptr``,
``x_shape``), ``y`` (-1: an unlabelled node), ``edges`` (2 x E, as published: duplicates kept),
``train_idx``, ``val_idx``, ``test_idx``.

The checksums are not published with these conversions (the raw ``ind.<name>.*`` files were turned
into plain arrays for this project): the md5s below were computed from the files in the shared
data folder (they match its ``MD5SUMS``), so a changed or corrupt file is refused.

:func:`load_planetoid` returns a :class:`Graph`: binary features as a dense ``uint8`` matrix (every
value of both datasets is 0 or 1: one bit per value, exactly), labels, the edge list and the split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import ENV_VAR, _candidate_roots, _md5, _pretty
from .errors import DatasetError

DATASETS = ("cora", "citeseer")
#: computed from the project's shared copies (no published checksum exists for these conversions)
MD5 = {"cora.npz": "cb8e7af2cc974dda69a40caa4f8c93b9", "citeseer.npz": "b778b2f23cca4c63ce69ca5baf981d0e"}
#: (nodes, features, classes) of the published datasets
SIZES = {"cora": (2708, 1433, 7), "citeseer": (3327, 3703, 6)}
_KEYS = ("x_data", "x_indices", "x_indptr", "x_shape", "y", "edges", "train_idx", "val_idx", "test_idx")


@dataclass(frozen=True)
class Graph:
    """One transductive node-classification dataset."""

    name: str
    features: np.ndarray  # uint8 (n_nodes, n_features), 0/1
    labels: np.ndarray  # int64 (n_nodes,), -1 where a node has no label
    edges: np.ndarray  # int64 (2, E) as published
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray

    @property
    def n_nodes(self) -> int:
        return int(self.features.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.labels.max()) + 1

    def subgraph(self, nodes) -> "Graph":
        """The graph induced by ``nodes`` (renumbered in the given order); the split keeps its members."""
        nodes = np.asarray(nodes, dtype=np.int64)
        new = np.full(self.n_nodes, -1, dtype=np.int64)
        new[nodes] = np.arange(nodes.size)
        src, dst = new[self.edges[0]], new[self.edges[1]]
        keep = (src >= 0) & (dst >= 0)

        def part(idx):
            m = new[idx]
            return np.sort(m[m >= 0])
        return Graph(f"{self.name}[{nodes.size}]", self.features[nodes], self.labels[nodes],
                     np.stack([src[keep], dst[keep]]), part(self.train_idx), part(self.val_idx), part(self.test_idx))


def find_file(name: str, root=None) -> Path:
    """``<name>.npz`` in the first data folder that has it (or one clear error naming where it looked)."""
    if name not in DATASETS:
        raise DatasetError(f"unknown graph dataset {name!r}; expected one of {', '.join(DATASETS)}")
    fname, looked = f"{name}.npz", []
    for cand, _ in _candidate_roots(root):
        for folder in (cand / "planetoid", cand):
            looked.append(str(_pretty(folder)))
            if (folder / fname).is_file():
                return folder / fname
    raise DatasetError(f"missing dataset file {fname}; looked in {', '.join(looked)} (expected the Planetoid "
                       f"conversion planetoid/{fname}; set ${ENV_VAR} or pass root=)", file=fname)


def load_planetoid(name: str, root=None, *, verify: bool = True) -> Graph:
    """Load Cora or CiteSeer (the public split); ``verify=False`` skips the md5 (hand-made test files)."""
    path = find_file(name, root)
    if verify:
        got = _md5(path)
        if got != MD5[path.name]:
            raise DatasetError(f"md5 mismatch: got {got}, expected {MD5[path.name]}; the file is corrupt or not "
                               f"the project's {name} conversion", file=str(path))
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in _KEYS}
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetError(f"not a Planetoid .npz with {', '.join(_KEYS)} ({' '.join(str(exc).split())})",
                           file=str(path)) from None
    return _graph(name, arrays, str(path))


def _graph(name: str, a: dict, where: str) -> Graph:
    n, f = (int(v) for v in a["x_shape"])
    indptr, indices, data = a["x_indptr"], a["x_indices"], a["x_data"]
    if indptr.shape != (n + 1,) or indices.shape != data.shape or int(indptr[-1]) != data.size:
        raise DatasetError(f"the feature CSR does not describe an ({n}, {f}) matrix", file=where, field="x_indptr")
    if data.size and (not np.all((data == 0) | (data == 1)) or int(indices.min()) < 0 or int(indices.max()) >= f):
        raise DatasetError("expected binary features inside the matrix", file=where, field="x_data")
    x = np.zeros((n, f), dtype=np.uint8)
    rows = np.repeat(np.arange(n), np.diff(indptr))
    x[rows, indices] = data.astype(np.uint8)
    y, edges = a["y"].astype(np.int64), a["edges"].astype(np.int64)
    bad_edges = edges.ndim != 2 or edges.shape[0] != 2 or (edges.size and (edges.min() < 0 or edges.max() >= n))
    if y.shape != (n,) or bad_edges:
        raise DatasetError(f"expected y of shape ({n},) and edges (2, E) between its nodes", file=where, field="edges")
    split = [a[k].astype(np.int64) for k in ("train_idx", "val_idx", "test_idx")]
    for k, s in zip(("train_idx", "val_idx", "test_idx"), split):
        if s.ndim != 1 or (s.size and (s.min() < 0 or s.max() >= n or np.any(y[s] < 0))):
            raise DatasetError("expected labelled node indices", file=where, field=k)
    return Graph(name, x, y, edges, *split)


__all__ = ["DATASETS", "Graph", "MD5", "SIZES", "find_file", "load_planetoid"]
