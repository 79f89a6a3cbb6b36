"""MNIST and Fashion-MNIST from their official IDX ``.gz`` files, md5-checked.

The data folder is searched in this order (the first one that exists wins):

1. the ``root`` argument;
2. the environment variable ``VECQ_HW_DATA``;
3. ``../shared/datasets`` relative to the current directory;
4. ``../shared/datasets`` relative to the repository root (the folder above the package).

Inside a data folder, the files of a dataset are looked for in the subfolder named like the
dataset (``mnist/``, ``fashion-mnist/``) and, failing that, in the folder itself.

Every file is checked against the md5 published for the official distribution before it is
parsed (once per process and file). A missing or corrupt file is one
:class:`vecq_hw.errors.DatasetError` naming the file and where it was looked for.

Images are uint8 ``(N, 28, 28)``, labels int64 ``(N,)``. For PyTorch, :func:`to_tensors` gives
float32 images ``x / 256`` in ``[0, 1)``: every value is an exact multiple of ``2**-8``, so it is
representable in ``ap_ufixed<8,0>`` and the input quantiser is the identity on it.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from .errors import DatasetError

__all__ = [
    "DATASETS",
    "MD5",
    "ENV_VAR",
    "find_root",
    "load_dataset",
    "read_idx",
    "to_tensors",
    "make_loader",
    "num_classes",
]

ENV_VAR = "VECQ_HW_DATA"

#: dataset name -> (subfolder, {split: (images file, labels file)})
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
DATASETS = ("mnist", "fashion-mnist")

#: published md5 checksums of the official distributions (dataset -> file -> md5)
MD5 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}

_EXPECTED_COUNT = {"train": 60000, "test": 10000}

# (resolved path, size, mtime_ns) -> md5 hex of files already verified in this process
_md5_cache: dict[tuple[str, int, int], str] = {}
# (resolved path, size, mtime_ns, limit) -> parsed arrays
_array_cache: dict[tuple, np.ndarray] = {}


def num_classes(name: str) -> int:
    _check_name(name)
    return 10


def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")


def _candidate_roots(root) -> list[tuple[Path, str]]:
    if root is not None:
        return [(Path(root), "the root argument")]
    out: list[tuple[Path, str]] = []
    env = os.environ.get(ENV_VAR)
    if env:
        out.append((Path(env), f"${ENV_VAR}"))
    out.append((Path.cwd() / ".." / "shared" / "datasets", "../shared/datasets from the current directory"))
    repo = Path(__file__).resolve().parent.parent
    out.append((repo / ".." / "shared" / "datasets", "../shared/datasets from the repository root"))
    return out


def find_root(name: str, root=None) -> Path:
    """The folder holding the files of dataset ``name`` (not checked for completeness)."""
    _check_name(name)
    looked = []
    for cand, why in _candidate_roots(root):
        for folder in (cand / name, cand):
            looked.append(str(_pretty(folder)))
            if (folder / _FILES["train"][0]).exists() or (folder / _FILES["test"][0]).exists():
                return folder
        if root is not None or cand.is_dir():
            # an explicit root, or an existing data folder, is where the files should be
            return cand / name if (cand / name).is_dir() else cand
    raise DatasetError(
        f"no data folder for dataset {name!r} with {_FILES['train'][0]} etc. found; looked in "
        f"{', '.join(looked)} (set ${ENV_VAR} or pass root=)",
        file=name,
    )


def _pretty(p: Path) -> Path:
    try:
        return p.resolve()
    except OSError:  # pragma: no cover
        return p


def _md5(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    hit = _md5_cache.get(key)
    if hit is not None:
        return hit
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    _md5_cache[key] = digest
    return digest


def read_idx(path, *, expect_magic: int | None = None, limit: int | None = None) -> np.ndarray:
    """Parse a gzip-compressed (or raw) IDX file of unsigned bytes into a uint8 array.

    Any malformation (bad gzip stream, bad magic, wrong data length) raises DatasetError.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DatasetError(f"cannot read gzip IDX data ({exc})", file=str(path)) from None
    if len(raw) < 4:
        raise DatasetError("truncated IDX file: no header", file=str(path))
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    magic = struct.unpack(">I", raw[:4])[0]
    if zero != 0 or dtype_code != 0x08 or ndim == 0 or (expect_magic is not None and magic != expect_magic):
        want = f"0x{expect_magic:08x}" if expect_magic is not None else "0x000008NN (uint8 data)"
        raise DatasetError(f"bad IDX magic 0x{magic:08x}, expected {want}", file=str(path))
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise DatasetError("truncated IDX file: incomplete header", file=str(path))
    dims = struct.unpack(f">{ndim}I", raw[4:head])
    count = int(np.prod(dims, dtype=np.int64))
    if len(raw) - head != count:
        raise DatasetError(
            f"IDX data length {len(raw) - head} bytes does not match the header's dims {tuple(dims)} "
            f"({count} bytes): truncated or corrupt",
            file=str(path),
        )
    arr = np.frombuffer(raw, dtype=np.uint8, offset=head).reshape(dims)
    if limit is not None:
        arr = arr[:limit]
    return np.ascontiguousarray(arr)


def _require(name: str, folder: Path, fname: str) -> None:
    path = folder / fname
    if not path.is_file():
        present = sorted(p.name for p in folder.glob("*")) if folder.is_dir() else None
        where = f"in {_pretty(folder)}" + ("" if present is not None else " (folder does not exist)")
        raise DatasetError(
            f"missing dataset file {fname} for {name!r} {where}; expected the official files "
            f"{', '.join(sorted(MD5[name]))} (set ${ENV_VAR} or pass root=)",
            file=str(path),
        )


def _load_file(name: str, folder: Path, fname: str, magic: int, *, verify: bool) -> np.ndarray:
    path = folder / fname
    _require(name, folder, fname)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, magic)
    cached = _array_cache.get(key)
    if cached is not None:
        return cached
    if verify:
        want = MD5[name][fname]
        got = _md5(path)
        if got != want:
            raise DatasetError(
                f"md5 mismatch for {fname} in {_pretty(folder)}: got {got}, expected the published "
                f"{want}; the file is corrupt or not the official {name} distribution",
                file=str(path),
            )
    arr = read_idx(path, expect_magic=magic)
    arr.setflags(write=False)
    _array_cache[key] = arr
    return arr


def load_dataset(name: str, split: str = "train", root=None, limit: int | None = None,
                 *, verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Load ``(images uint8 (N,28,28), labels int64 (N,))`` of one split.

    ``limit`` keeps the first ``limit`` samples. ``verify=False`` skips the md5 check (for
    tests on hand-made files); the IDX structure is always checked.
    """
    _check_name(name)
    if split not in _FILES:
        raise DatasetError(f"unknown split {split!r}; expected 'train' or 'test'", file=name)
    if limit is not None and (not isinstance(limit, (int, np.integer)) or limit < 1):
        raise DatasetError(f"limit must be a positive integer, got {limit!r}", file=name)
    folder = find_root(name, root)
    img_f, lab_f = _FILES[split]
    for f in (img_f, lab_f):  # report a missing file before judging the other one
        _require(name, folder, f)
    images = _load_file(name, folder, img_f, 0x00000803, verify=verify)
    labels = _load_file(name, folder, lab_f, 0x00000801, verify=verify)
    if images.ndim != 3:
        raise DatasetError(f"expected 3-D images, got shape {images.shape}", file=str(folder / img_f))
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(
            f"{images.shape[0]} images but {labels.shape[0]} labels in {lab_f}", file=str(folder / lab_f)
        )
    if labels.size and labels.max() > 9:
        raise DatasetError(f"label {labels.max()} out of range 0..9", file=str(folder / lab_f))
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return np.array(images, dtype=np.uint8), labels.astype(np.int64)


# ----------------------------------------------------------------------------- torch helpers

def to_tensors(images: np.ndarray, labels: np.ndarray, *, flatten: bool = False):
    """uint8 images -> float32 tensors ``x / 256`` (exact multiples of 2**-8 in [0, 1)).

    Layout ``(N, 1, 28, 28)``; ``flatten=True`` gives ``(N, 784)``.
    """
    import torch

    x = torch.from_numpy(np.asarray(images, dtype=np.float32) / np.float32(256.0))
    x = x.reshape(x.shape[0], -1) if flatten else x.unsqueeze(1)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    return x.contiguous(), y


def make_dataset(name: str, split: str, root=None, limit=None, *, flatten: bool = False):
    """A ``TensorDataset`` of normalised images and labels."""
    from torch.utils.data import TensorDataset

    return TensorDataset(*to_tensors(*load_dataset(name, split, root, limit), flatten=flatten))


def make_loader(dataset, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False):
    """A single-process DataLoader; shuffling is driven by its own seeded generator.

    The generator is exposed as ``loader.generator`` so a training loop can checkpoint its
    state and resume with the same order.
    """
    import torch
    from torch.utils.data import DataLoader

    gen = torch.Generator()
    gen.manual_seed(int(seed))
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=gen,
                      num_workers=0, drop_last=drop_last)
