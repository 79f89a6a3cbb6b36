"""vecq_hw.data: IDX parsing, md5 checks, clear errors, torch helpers."""

from __future__ import annotations

import gzip
import shutil
import struct

import numpy as np
import pytest

from vecq_hw import data
from vecq_hw.data import load_dataset, make_loader, read_idx, to_tensors
from vecq_hw.errors import DatasetError, VecQError


def _idx_bytes(arr: np.ndarray, magic: int | None = None) -> bytes:
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    if magic is None:
        magic = 0x00000800 | arr.ndim
    return struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def _write_split(folder, images, labels, split="test", *, img_magic=None, lab_magic=None):
    folder.mkdir(parents=True, exist_ok=True)
    names = data._FILES[split]
    (folder / names[0]).write_bytes(gzip.compress(_idx_bytes(images, img_magic)))
    (folder / names[1]).write_bytes(gzip.compress(_idx_bytes(labels, lab_magic)))
    return folder


@pytest.fixture
def fake():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (7, 28, 28), dtype=np.uint8), rng.integers(0, 10, 7).astype(np.uint8)


@pytest.fixture(scope="module")
def real_root():
    try:
        return data.find_root("mnist").parent
    except DatasetError:
        pytest.skip("MNIST files not available")


def test_read_idx_roundtrip(tmp_path, fake):
    images, labels = fake
    folder = _write_split(tmp_path / "mnist", images, labels)
    x = read_idx(folder / "t10k-images-idx3-ubyte.gz", expect_magic=0x803)
    np.testing.assert_array_equal(x, images)
    x, y = load_dataset("mnist", "test", root=tmp_path, verify=False)
    assert x.dtype == np.uint8 and x.shape == (7, 28, 28)
    assert y.dtype == np.int64 and y.shape == (7,)
    np.testing.assert_array_equal(y, labels)
    x, y = load_dataset("mnist", "test", root=tmp_path / "mnist", limit=3, verify=False)
    assert x.shape == (3, 28, 28) and y.shape == (3,)


def test_bad_magic(tmp_path, fake):
    images, labels = fake
    _write_split(tmp_path / "mnist", images, labels, img_magic=0x00000804)
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte\.gz.*bad IDX magic 0x00000804"):
        load_dataset("mnist", "test", root=tmp_path, verify=False)


def test_truncated_payload_and_gzip(tmp_path, fake):
    images, labels = fake
    folder = _write_split(tmp_path / "mnist", images, labels)
    f = folder / "t10k-images-idx3-ubyte.gz"
    f.write_bytes(gzip.compress(_idx_bytes(images)[:-100]))  # valid gzip, short IDX payload
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte\.gz.*truncated"):
        load_dataset("mnist", "test", root=tmp_path, verify=False)
    good = gzip.compress(_idx_bytes(images))
    f.write_bytes(good[: len(good) // 2])  # broken gzip stream
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte\.gz.*gzip"):
        load_dataset("mnist", "test", root=tmp_path, verify=False)


def test_label_count_mismatch(tmp_path, fake):
    images, labels = fake
    _write_split(tmp_path / "mnist", images, labels[:5])
    with pytest.raises(DatasetError, match="7 images but 5 labels"):
        load_dataset("mnist", "test", root=tmp_path, verify=False)


def test_md5_mismatch_names_file(tmp_path, fake):
    images, labels = fake
    folder = _write_split(tmp_path / "mnist", images, labels)
    with pytest.raises(DatasetError) as ei:
        load_dataset("mnist", "test", root=tmp_path)
    msg = str(ei.value)
    assert "md5 mismatch" in msg and "t10k-images-idx3-ubyte.gz" in msg and str(folder) in msg
    assert data.MD5["mnist"]["t10k-images-idx3-ubyte.gz"] in msg
    assert "\n" not in msg


def test_corrupt_copy_of_real_file(tmp_path, real_root):
    src = real_root / "mnist"
    dst = tmp_path / "mnist"
    dst.mkdir()
    for name in data._FILES["test"]:
        shutil.copy(src / name, dst / name)
    x, y = load_dataset("mnist", "test", root=tmp_path, limit=5)  # intact copies pass
    assert x.shape == (5, 28, 28)
    f = dst / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(f.read_bytes())
    raw[-20] ^= 0xFF
    f.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte\.gz.*md5 mismatch"):
        load_dataset("mnist", "test", root=tmp_path)


def test_missing_file_names_file_and_folder(tmp_path, fake):
    images, labels = fake
    folder = _write_split(tmp_path / "fashion-mnist", images, labels)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError) as ei:
        load_dataset("fashion-mnist", "test", root=tmp_path)
    msg = str(ei.value)
    assert "missing" in msg and "t10k-labels-idx1-ubyte.gz" in msg and str(folder) in msg
    assert isinstance(ei.value, VecQError) and "\n" not in msg
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte\.gz.*does not exist"):
        load_dataset("mnist", "train", root=tmp_path / "nowhere")


def test_env_var_and_bad_names(tmp_path, fake, monkeypatch):
    images, labels = fake
    _write_split(tmp_path / "mnist", images, labels)
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    x, _ = load_dataset("mnist", "test", verify=False)
    assert x.shape == (7, 28, 28)
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("cifar10", "test")
    with pytest.raises(DatasetError, match="unknown split"):
        load_dataset("mnist", "valid")


def test_real_mnist_and_md5_cache(real_root):
    x, y = load_dataset("mnist", "test", root=real_root, limit=100)
    assert x.shape == (100, 28, 28) and y.shape == (100,) and y.max() <= 9
    real = str((real_root / "mnist" / "t10k-images-idx3-ubyte.gz").resolve())
    keys = [k for k in data._md5_cache if k[0] == real]
    assert keys and data._md5_cache[keys[0]] == data.MD5["mnist"]["t10k-images-idx3-ubyte.gz"]


def test_md5_verified_once_per_process(real_root, monkeypatch):
    load_dataset("mnist", "test", root=real_root, limit=3)

    def no_rehash(*a, **k):
        raise AssertionError("md5 recomputed")

    monkeypatch.setattr(data.hashlib, "md5", no_rehash)
    monkeypatch.setattr(data, "_array_cache", {})  # force a re-parse, still no re-hash
    x, _ = load_dataset("mnist", "test", root=real_root, limit=3)
    assert x.shape == (3, 28, 28)


def test_tensors_are_exact_multiples_of_2_pow_minus_8():
    images = np.array([[[0, 1, 128, 255]]], dtype=np.uint8).repeat(2, 0)
    x, y = to_tensors(images, np.array([3, 4]))
    assert x.dtype.is_floating_point and str(x.dtype) == "torch.float32"
    assert x.shape == (2, 1, 1, 4) and y.dtype.__str__() == "torch.int64"
    v = x.numpy().astype(np.float64)
    np.testing.assert_array_equal(v * 256, np.round(v * 256))
    assert v.min() >= 0 and v.max() == 255 / 256 < 1
    xf, _ = to_tensors(images, np.array([3, 4]), flatten=True)
    assert xf.shape == (2, 4)


def test_loader_seeded_shuffle():
    import torch

    ds = torch.utils.data.TensorDataset(torch.arange(50))

    def order(seed):
        return torch.cat([b[0] for b in make_loader(ds, 8, shuffle=True, seed=seed)]).tolist()

    assert order(3) == order(3)
    assert order(3) != order(4)
    assert sorted(order(3)) == list(range(50))


# ----------------------------------------------------------------------------- CIFAR-10

def _cifar_batch(path, n, seed, *, protocol=2, extra=None):
    """A batch in the layout of the official python files: a pickled dict with b'data' uint8
    (n, 3072) (R, G, B planes of each image) and b'labels' a list of ints."""
    import pickle

    rng = np.random.default_rng(seed)
    blob = {b"batch_label": b"testing batch", b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
    if extra is not None:
        blob.update(extra)
    path.write_bytes(pickle.dumps(blob, protocol=protocol))
    return blob


def _md5_table(folder):
    import hashlib

    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}


@pytest.fixture
def cifar(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    blobs = [_cifar_batch(folder / f"data_batch_{i}", 3, i) for i in range(1, 6)]
    blobs.append(_cifar_batch(folder / "test_batch", 4, 9, protocol=4))
    return tmp_path, folder, blobs


def test_cifar10_reads_the_python_batches(cifar):
    root, folder, blobs = cifar
    table = _md5_table(folder)
    x, y = data.load_cifar10("train", root=root, md5=table)
    assert x.dtype == np.uint8 and x.shape == (15, 3, 32, 32) and y.dtype == np.int64
    want = np.concatenate([b[b"data"] for b in blobs[:5]])
    np.testing.assert_array_equal(x.reshape(15, 3072), want)
    # channel planes: the first 1024 bytes of a row are the red plane, row-major 32 x 32
    np.testing.assert_array_equal(x[4, 0, 1, 2], blobs[1][b"data"][1][32 + 2])
    np.testing.assert_array_equal(x[4, 2, 31, 31], blobs[1][b"data"][1][3071])
    assert y.tolist() == sum((b[b"labels"] for b in blobs[:5]), [])
    xt, yt = data.load_cifar10("test", root=folder, md5=table, limit=2)
    assert xt.shape == (2, 3, 32, 32) and yt.tolist() == blobs[5][b"labels"][:2]
    t, _ = to_tensors(xt, yt)
    assert t.shape == (2, 3, 32, 32) and float(t.max()) < 1.0


def test_cifar10_checks_the_published_md5(cifar):
    root, folder, _ = cifar
    assert data.CIFAR10_MD5["data_batch_1"] == "c99cafc152244af753f735de768cd75f"
    assert data.CIFAR10_MD5["test_batch"] == "40351d587109b95175f43aff81a1287e"
    with pytest.raises(DatasetError) as ei:  # the default table: these are not the real files
        data.load_cifar10("test", root=root)
    msg = str(ei.value)
    assert "md5 mismatch" in msg and "test_batch" in msg and data.CIFAR10_MD5["test_batch"] in msg
    assert "\n" not in msg
    table = _md5_table(folder)
    (folder / "data_batch_3").write_bytes((folder / "data_batch_3").read_bytes()[:-5])
    with pytest.raises(DatasetError, match=r"data_batch_3.*md5 mismatch"):
        data.load_cifar10("train", root=root, md5=table)


def test_cifar10_refuses_code_in_a_pickle(tmp_path):
    import os
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.makedirs, (str(tmp_path / "executed"),))

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Payload(), b"labels": []}, protocol=2))
    with pytest.raises(DatasetError) as ei:
        data.load_cifar10("test", root=tmp_path, md5=_md5_table(folder))
    assert "not allowed" in str(ei.value) and "\n" not in str(ei.value)
    assert not (tmp_path / "executed").exists()


@pytest.mark.parametrize("extra,match", [
    ({b"data": np.zeros((3, 3072), np.float32)}, "uint8"),
    ({b"data": np.zeros((3, 100), np.uint8)}, "3072"),
    ({b"labels": [1, 2]}, "list of 3 integers"),
    ({b"labels": [1, 2, 10]}, "0..9"),
])
def test_cifar10_bad_content(tmp_path, extra, match):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    _cifar_batch(folder / "test_batch", 3, 0, extra=extra)
    with pytest.raises(DatasetError, match=match):
        data.load_cifar10("test", root=tmp_path, md5=_md5_table(folder))


def test_cifar10_missing_files(tmp_path, cifar):
    root, folder, _ = cifar
    (folder / "data_batch_4").unlink()
    with pytest.raises(DatasetError, match=r"missing CIFAR-10 file data_batch_4"):
        data.load_cifar10("train", root=root, md5=_md5_table(folder))
    with pytest.raises(DatasetError, match="no CIFAR-10 folder"):
        data.load_cifar10("train", root=tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="no md5 given for test_batch"):
        data.load_cifar10("test", root=root, md5={})
