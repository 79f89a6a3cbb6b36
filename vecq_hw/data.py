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
import pickle
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
    "CIFAR10_MD5",
    "load_cifar10",
    "cifar10_folder",
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

    Layout ``(N, 1, 28, 28)`` (``(N, C, H, W)`` images, e.g. CIFAR-10, keep theirs);
    ``flatten=True`` gives ``(N, 784)``.
    """
    import torch

    x = torch.from_numpy(np.asarray(images, dtype=np.float32) / np.float32(256.0))
    if flatten:
        x = x.reshape(x.shape[0], -1)
    elif x.ndim == 3:  # (N, H, W) grey images get their channel axis; (N, C, H, W) stays
        x = x.unsqueeze(1)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    return x.contiguous(), y


def make_dataset(name: str, split: str, root=None, limit=None, *, flatten: bool = False):
    """A ``TensorDataset`` of normalised images and labels."""
    from torch.utils.data import TensorDataset

    return TensorDataset(*to_tensors(*load_dataset(name, split, root, limit), flatten=flatten))


def make_loader(dataset, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False, sampler=None, workers: int = 0, pin_memory: bool = False):
    """A DataLoader; shuffling is driven by its own seeded generator (or by ``sampler``).

    The generator is exposed as ``loader.generator`` so a training loop can checkpoint its
    state and resume with the same order. ``sampler`` replaces the shuffle (the training loop
    passes its distributed epoch sampler). ``workers`` > 0 and ``pin_memory`` are for feeding a
    GPU: the sampler still runs in the main process, so the batches are the same.
    """
    import torch
    from torch.utils.data import DataLoader

    gen = torch.Generator()
    gen.manual_seed(int(seed))
    extra = {"persistent_workers": True} if workers > 0 else {}
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle if sampler is None else False,
                      sampler=sampler, generator=gen, num_workers=int(workers),
                      pin_memory=bool(pin_memory), drop_last=drop_last, **extra)


# ----------------------------------------------------------------------------- CIFAR-10

#: the folder name of the official "python version" archive (cifar-10-python.tar.gz)
CIFAR10_FOLDER = "cifar-10-batches-py"
_CIFAR10_SPLITS = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
#: published md5 of every file of cifar-10-batches-py (the same table torchvision checks)
CIFAR10_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}


class _PlainUnpickler(pickle.Unpickler):
    """Unpickler for the CIFAR batches: plain containers plus numpy array reconstruction.

    The official files are Python 2 pickles of dicts holding bytes, lists of ints and one
    uint8 ndarray. Any other global (a class, a function such as ``os.system``) is refused, so
    a tampered file cannot run code while we read it.
    """

    _NUMPY = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    _RECONSTRUCT = np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's array rebuild function

    def find_class(self, module, name):
        if (module, name) in self._NUMPY:
            return self._NUMPY[(module, name)]
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            return self._RECONSTRUCT
        if (module, name) == ("_codecs", "encode"):  # how Python 3 writes bytes at protocol 2
            return _latin1_encode
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a data file")


def _latin1_encode(text, encoding="latin1"):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("only latin-1 byte strings are allowed")
    return text.encode("latin1")


def _load_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            blob = _PlainUnpickler(f, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError,
            IndexError, KeyError) as exc:
        raise DatasetError(f"cannot read CIFAR-10 batch ({' '.join(str(exc).split())})",
                           file=str(path)) from None
    if not isinstance(blob, dict):
        raise DatasetError(f"expected a pickled dict with b'data' and b'labels', got "
                           f"{type(blob).__name__}", file=str(path))
    data = blob.get(b"data", blob.get("data"))
    labels = blob.get(b"labels", blob.get("labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"expected b'data' as a uint8 array of shape (N, 3072), got {got}",
                           file=str(path))
    if not isinstance(labels, list) or len(labels) != data.shape[0] or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 9 for v in labels):
        raise DatasetError(f"expected b'labels' as a list of {data.shape[0]} integers in 0..9",
                           file=str(path))
    return data, np.asarray(labels, dtype=np.int64)


def cifar10_folder(root=None) -> Path:
    """The folder holding ``data_batch_1`` etc.: ``root``, ``root/cifar-10-batches-py`` or
    ``root/cifar10/cifar-10-batches-py`` (``root`` None: the usual data folders)."""
    looked = []
    for cand, _why in _candidate_roots(root):
        for folder in (cand, cand / CIFAR10_FOLDER, cand / "cifar10" / CIFAR10_FOLDER):
            looked.append(str(_pretty(folder)))
            if (folder / "test_batch").is_file() or (folder / "data_batch_1").is_file():
                return folder
    raise DatasetError(f"no CIFAR-10 folder ({CIFAR10_FOLDER} with data_batch_1..5, test_batch) "
                       f"found; looked in {', '.join(looked)} (pass root= or set ${ENV_VAR})",
                       file="cifar10")


def load_cifar10(split: str = "train", root=None, limit: int | None = None, *,
                 md5: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 from the official "python version" batches: ``(images uint8 (N, 3, 32, 32),
    labels int64 (N,))``, channels-first as stored (the R, G, B planes of each row).

    Every file read is first checked against ``md5`` (default :data:`CIFAR10_MD5`, the
    published checksums); pass your own table for hand-made files. The pickles are read with
    a restricted unpickler (plain data and numpy arrays only). ``limit`` keeps the first N.
    """
    if split not in _CIFAR10_SPLITS:
        raise DatasetError(f"unknown split {split!r}; expected 'train' or 'test'", file="cifar10")
    if limit is not None and (not isinstance(limit, (int, np.integer)) or limit < 1):
        raise DatasetError(f"limit must be a positive integer, got {limit!r}", file="cifar10")
    table = CIFAR10_MD5 if md5 is None else md5
    folder = cifar10_folder(root)
    xs, ys, n = [], [], 0
    for fname in _CIFAR10_SPLITS[split]:
        path = folder / fname
        if not path.is_file():
            raise DatasetError(f"missing CIFAR-10 file {fname} in {_pretty(folder)}; expected "
                               f"{', '.join(_CIFAR10_SPLITS[split])}", file=str(path))
        want = table.get(fname)
        if want is None:
            raise DatasetError(f"no md5 given for {fname}; the md5 table must list every file read",
                               file=str(path))
        got = _md5(path)
        if got != want:
            raise DatasetError(f"md5 mismatch for {fname} in {_pretty(folder)}: got {got}, expected "
                               f"{want}; the file is corrupt or not the official CIFAR-10 batch",
                               file=str(path))
        x, y = _load_cifar_batch(path)
        xs.append(x)
        ys.append(y)
        n += len(y)
        if limit is not None and n >= limit:
            break
    images = np.concatenate(xs).reshape(-1, 3, 32, 32)
    labels = np.concatenate(ys)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return np.ascontiguousarray(images), labels
