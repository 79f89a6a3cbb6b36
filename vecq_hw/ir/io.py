"""The on-disk form of the integer model: ``model.yaml`` + integer tables (docs/FORMAT.md).

``save_model(model, dir)`` writes the folder atomically and deterministically;
``load_model(dir_or_yaml)`` validates every key, type, shape, file reference and table and
refuses anything wrong with one :class:`~vecq_hw.errors.FormatError` line naming the file
and the field, then runs :meth:`vecq_hw.ir.Model.check`. ``load_model(save_model(m)) == m``.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import yaml

from ..errors import FixedTypeError, FormatError
from ..fixed import FixedType
from ..names import identifier_problem
from ..strict_yaml import load_strict_yaml
from . import arith
from .graph import Model
from .layers import LAYER_KINDS, Input, Layer, Weighted
from .packing import LAYOUT, pack_codes, packed_size, unpack_codes

#: the version this code writes; every older one a release wrote keeps loading
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
YAML_NAME = "model.yaml"

#: refuse any table (or activation shape) with more elements than this, before allocating
MAX_ELEMENTS = 1 << 28
#: refuse model.yaml files larger than this before reading them
MAX_YAML_BYTES = 16 << 20
MAX_DIM = 1 << 28
MAX_GEOMETRY = 1 << 16  # stride / padding / pool sizes
MAX_NAME = 200

#: the dtype of every table field (stored little-endian)
TABLE_DTYPES = {"codes": np.dtype("<i1"), "scale": np.dtype("<i8"), "bias": np.dtype("<i8")}
_DTYPE_NAMES = {"codes": "int8", "scale": "int64", "bias": "int64"}

_WEIGHTED_TYPES = ("accum_type", "scale_type", "bias_type")
_TABLES = ("codes", "scale", "bias")
_IMAGE = ("weights_image",)


def layer_keys(cls: type[Layer]) -> tuple[str, ...]:
    """The keys of a kind's record in format v2, in the order they are written."""
    if cls is Input:
        return ("kind", "name", "out_shape", "out_type")
    tables = _TABLES + _IMAGE if issubclass(cls, Weighted) else cls.FILES
    return ("kind", "name", "inputs", "out_shape") + cls.PARAMS + ("out_type",) + tables


#: format v1 (a chain): each record states its in_shape; weights name an encoding, not levels
_V1_COMMON = ("kind", "name")
_V1_WEIGHTED = ("bits", "encoding", "multiplier")
V1_LAYER_KEYS: dict[str, tuple[str, ...]] = {
    "input": _V1_COMMON + ("out_shape", "out_type"),
    "dense": _V1_COMMON + ("in_shape", "out_shape") + _V1_WEIGHTED + _WEIGHTED_TYPES
    + ("out_type",) + _TABLES + _IMAGE,
    "conv2d": _V1_COMMON + ("in_shape", "out_shape") + _V1_WEIGHTED + ("stride", "padding")
    + _WEIGHTED_TYPES + ("out_type",) + _TABLES + _IMAGE,
    "relu": _V1_COMMON + ("in_shape", "out_shape", "out_type"),
    "maxpool2d": _V1_COMMON + ("in_shape", "out_shape", "pool", "stride", "out_type"),
    "avgpool2d": _V1_COMMON + ("in_shape", "out_shape", "pool", "stride", "out_type"),
    "flatten": _V1_COMMON + ("in_shape", "out_shape", "out_type"),
}
TOP_KEYS = ("format_version", "name", "layers")
TABLE_KEYS = ("file", "dtype", "shape", "sha256")
IMAGE_KEYS = ("file", "layout", "bits", "count", "bytes", "sha256")


# --------------------------------------------------------------------------- memory report

def weight_memory_report(model: Model) -> dict[str, Any]:
    """Weight memory of every weighted layer and in total (bits), and the compression vs float32.

    ``{"layers": [per-layer dict], "total": {...}}``, one record per layer with weights (its
    kind's ``weight_memory()``). ``code_bits`` counts the stored weight bits only (k-bit codes;
    ALQ: its bit-planes; PQ: its indices and codebook); ``scale_bias_bits`` the per-channel scale and bias constants at their
    types' widths; ``alpha_bits`` ALQ's alpha constants (0 elsewhere); ``total_bits`` all three.
    ``compression_vs_float32`` is 32 * n_weights / code_bits and
    ``compression_vs_float32_with_scale_bias`` is 32 * n_weights / total_bits; both are 0.0 for a
    model without weights.
    """
    layers = [rec for rec in (layer.weight_memory() for layer in model.layers) if rec is not None]
    n = sum(r["n_weights"] for r in layers)
    code_bits = sum(r["code_bits"] for r in layers)
    sb_bits = sum(r["scale_bias_bits"] for r in layers)
    alpha_bits = sum(r.get("alpha_bits", 0) for r in layers)
    total_bits = code_bits + sb_bits + alpha_bits
    total = {
        "n_weights": n,
        "code_bits": code_bits,
        "scale_bias_bits": sb_bits,
        "alpha_bits": alpha_bits,
        "total_bits": total_bits,
        "image_bytes": sum(r["image_bytes"] for r in layers),
        "float32_bits": 32 * n,
        "compression_vs_float32": (32 * n / code_bits) if code_bits else 0.0,
        "compression_vs_float32_with_scale_bias": (32 * n / total_bits) if code_bits else 0.0,
    }
    return {"layers": layers, "total": total}


# --------------------------------------------------------------------------- save

@dataclass(frozen=True)
class SaveReport:
    """What :func:`save_model` wrote."""

    path: Path  # the model folder
    yaml_path: Path
    files: tuple[str, ...]  # every file written, relative to ``path``
    weight_memory: dict = field(repr=False)

    @property
    def code_bits(self) -> int:
        return self.weight_memory["total"]["code_bits"]

    @property
    def scale_bias_bits(self) -> int:
        return self.weight_memory["total"]["scale_bias_bits"]

    @property
    def compression_ratio(self) -> float:
        """32 * n_weights / code_bits (0.0 without weights)."""
        return self.weight_memory["total"]["compression_vs_float32"]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _npy_bytes(arr: np.ndarray, dtype: np.dtype) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr, dtype=dtype), allow_pickle=False)
    return buf.getvalue()


def _stem(name: str, used: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", name) or "layer"
    base, i = stem, 1
    while stem.lower() in used:  # case-insensitive file systems
        i += 1
        stem = f"{base}_{i}"
    used.add(stem.lower())
    return stem


def _shape_list(shape) -> list[int]:
    return [int(s) for s in shape]


class TableWriter:
    """How a kind with tables of its own (``Layer.FILES``) writes them: each call adds one file,
    named after the layer (``<stem>.<name>.<ext>``), and returns its model.yaml entry."""

    def __init__(self, files: dict[str, bytes], stem: str):
        self.files, self.stem = files, stem

    def npy(self, name: str, arr: np.ndarray, dtype: str) -> dict:
        """A .npy table: ``{file, dtype, shape, sha256}`` (read back by ``_Reader.table``)."""
        data = _npy_bytes(arr, np.dtype(dtype).newbyteorder("<"))
        fname = f"{self.stem}.{name}.npy"
        self.files[fname] = data
        return {"file": fname, "dtype": dtype, "shape": _shape_list(arr.shape), "sha256": _sha256(data)}

    def blob(self, name: str, data: bytes, **keys) -> dict:
        """A raw .bin file: ``{file, **keys, bytes, sha256}`` (read back by ``_Reader.blob``)."""
        fname = f"{self.stem}.{name}.bin"
        self.files[fname] = bytes(data)
        return {"file": fname, **keys, "bytes": len(data), "sha256": _sha256(bytes(data))}


def _layer_record(layer: Layer, out_shape, stem: str, files: dict[str, bytes]) -> dict:
    cls = type(layer)
    if LAYER_KINDS.get(layer.kind) is not cls:
        raise FormatError(f"layer kind '{layer.kind}' has no on-disk form", field=f"layer '{layer.name}'")
    rec: dict[str, Any] = {"kind": layer.kind, "name": layer.name}
    if not isinstance(layer, Input):
        rec["inputs"] = [str(n) for n in layer.inputs]
    rec["out_shape"] = _shape_list(out_shape)
    rec.update(layer.params_to_yaml())
    rec["out_type"] = str(layer.out_type)
    if isinstance(layer, Weighted):
        for t in _TABLES:
            arr = getattr(layer, t)
            data = _npy_bytes(arr, TABLE_DTYPES[t])
            fname = f"{stem}.{t}.npy"
            files[fname] = data
            rec[t] = {"file": fname, "dtype": _DTYPE_NAMES[t], "shape": _shape_list(arr.shape),
                      "sha256": _sha256(data)}
        image = pack_codes(layer.codes, layer.bits)
        fname = f"{stem}.weights.bin"
        files[fname] = image
        rec["weights_image"] = {"file": fname, "layout": LAYOUT, "bits": int(layer.bits),
                                "count": int(layer.codes.size), "bytes": len(image),
                                "sha256": _sha256(image)}
    elif cls.FILES:
        rec.update(layer.files_to_yaml(stem, TableWriter(files, stem)))
    assert tuple(rec) == layer_keys(cls), (tuple(rec), layer.kind)
    return rec


def model_to_files(model: Model) -> dict[str, bytes]:
    """The folder's content, file name -> bytes (model.yaml first). The model must pass check."""
    model.check(where=f"model '{model.name}'")
    files: dict[str, bytes] = {}
    used: set[str] = {"model"}
    records = []
    for node in model.nodes():
        layer = node.layer
        stem = _stem(layer.name, used) if isinstance(layer, Weighted) or layer.FILES else ""
        records.append(_layer_record(layer, node.out_shape, stem, files))
    doc = {"format_version": FORMAT_VERSION, "name": str(model.name), "layers": records}
    text = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100,
                     allow_unicode=True)
    return {YAML_NAME: text.encode("utf-8"), **files}


class _Dumper(yaml.SafeDumper):
    """SafeDumper writing lists of integers (shapes, strides) on one line."""


def _represent_list(dumper, data):
    flow = all(isinstance(x, int) for x in data) or all(isinstance(x, str) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def _write(path: str, data: bytes) -> None:
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def save_model(model: Model, out_dir: str | os.PathLike, *, overwrite: bool = False) -> SaveReport:
    """Write ``model`` to the folder ``out_dir`` (model.yaml + tables + weight images).

    The folder is written into a temporary sibling and renamed into place, so a failure
    leaves nothing behind. An existing ``out_dir`` is refused unless ``overwrite=True``; then
    it must be empty or a model folder (hold a model.yaml), and it is swapped out by rename.
    """
    out = Path(out_dir).absolute()
    where = str(out)
    if out.exists() or out.is_symlink():
        _check_replaceable(out, overwrite)
    files = model_to_files(model)  # validates and builds everything in memory first
    report = weight_memory_report(model)

    # create missing parents; remember the first one so a failure can remove it again
    first_new = None
    for p in reversed(out.parents):
        if not p.exists():
            first_new = p
            break
    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent)
        for name, data in files.items():
            _write(os.path.join(tmp, name), data)
        os.chmod(tmp, 0o755)
        if out.exists() or out.is_symlink():
            _check_replaceable(out, overwrite)
            old = tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent)
            os.rmdir(old)
            os.replace(out, old)
            try:
                os.replace(tmp, out)
            except BaseException:
                os.replace(old, out)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)  # fails (rather than merging) if someone created it meanwhile
        tmp = None
    except OSError as e:
        raise FormatError(f"cannot write the model folder: {e.strerror or e}", file=where) from e
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            if first_new is not None:
                shutil.rmtree(first_new, ignore_errors=True)
    return SaveReport(path=out, yaml_path=out / YAML_NAME, files=tuple(files), weight_memory=report)


def check_model_folder(out_dir, *, overwrite: bool = False) -> Path:
    """What :func:`save_model` will refuse about ``out_dir``, checked before any work (nothing is
    created): a folder above it that is a file, an existing folder without ``overwrite``, a folder
    that is not a model folder."""
    from ..outputs import creatable
    out = creatable(Path(out_dir).absolute(), "--out")
    if out.exists() or out.is_symlink():
        _check_replaceable(out, overwrite)
    return out


def _check_replaceable(out: Path, overwrite: bool) -> None:
    where = str(out)
    if not overwrite:
        raise FormatError("already exists (pass overwrite=True to replace it)", file=where)
    if out.is_symlink() or not out.is_dir():
        raise FormatError("exists and is not a folder; refusing to replace it", file=where)
    if any(out.iterdir()) and not (out / YAML_NAME).is_file():
        raise FormatError(f"is a non-empty folder without a {YAML_NAME}; refusing to replace it",
                          file=where)


# --------------------------------------------------------------------------- YAML reading

# --------------------------------------------------------------------------- validation helpers

def _what(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"a boolean ({v})"
    if isinstance(v, int):
        return f"an integer ({v})"
    if isinstance(v, float):
        return f"a float ({v})"
    if isinstance(v, str):
        s = v if len(v) <= 40 else v[:37] + "..."
        return f"a string ({s!r})"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    return f"a {type(v).__name__}"


class _Reader:
    MAX_GEOMETRY = MAX_GEOMETRY

    def __init__(self, yaml_path: Path):
        self.yaml_path = yaml_path
        self.where = str(yaml_path)
        self.folder = yaml_path.parent
        self.real_folder = os.path.realpath(self.folder)

    def fail(self, fld: str | None, msg: str):
        raise FormatError(msg, file=self.where, field=fld)

    # -- typed fields
    def mapping(self, v, fld, keys):
        if not isinstance(v, dict):
            self.fail(fld, f"expected a mapping, got {_what(v)}")
        for k in v:
            if not isinstance(k, str):
                self.fail(_join(fld, repr(k)), f"unknown key {k!r} (keys are strings)")
        for k in v:
            if k not in keys:
                self.fail(_join(fld, k), f"unknown key (expected only {', '.join(keys)})")
        for k in keys:
            if k not in v:
                self.fail(_join(fld, k), "missing")
        return v

    def int_(self, v, fld, lo, hi):
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(fld, f"expected an integer, got {_what(v)}")
        if not lo <= v <= hi:
            self.fail(fld, f"expected an integer in {lo}..{hi}, got {v}")
        return v

    def str_(self, v, fld, choices=None):
        if not isinstance(v, str):
            self.fail(fld, f"expected a string, got {_what(v)}")
        if choices is not None and v not in choices:
            want = choices[0] if len(choices) == 1 else f"one of {', '.join(choices)}"
            self.fail(fld, f"expected {want}, got {v!r}")
        return v

    def name(self, v, fld):
        self.str_(v, fld)
        if not v or len(v) > MAX_NAME or not v.isprintable():
            self.fail(fld, f"expected a non-empty printable name of at most {MAX_NAME} characters")
        return v

    def ints(self, v, fld, n, lo, hi):
        if not isinstance(v, list):
            self.fail(fld, f"expected a list of {n} integers, got {_what(v)}")
        if len(v) != n:
            self.fail(fld, f"expected {n} integers, got {len(v)}")
        return tuple(self.int_(x, f"{fld}[{i}]", lo, hi) for i, x in enumerate(v))

    def shape(self, v, fld, ndims=(1, 2, 3, 4)):
        if not isinstance(v, list):
            self.fail(fld, f"expected a list of positive integers, got {_what(v)}")
        if len(v) not in ndims:
            self.fail(fld, f"expected {' or '.join(map(str, ndims))} dimensions, got {len(v)}")
        shape = tuple(self.int_(x, f"{fld}[{i}]", 1, MAX_DIM) for i, x in enumerate(v))
        if math.prod(shape) > MAX_ELEMENTS:
            self.fail(fld, f"{list(shape)} has {math.prod(shape)} elements, more than the "
                      f"{MAX_ELEMENTS} allowed")
        return shape

    def fixed(self, v, fld):
        self.str_(v, fld)
        try:
            return FixedType.parse(v)
        except FixedTypeError as e:
            self.fail(fld, e.detail)

    def sha(self, v, fld):
        self.str_(v, fld)
        if not re.fullmatch(r"[0-9a-f]{64}", v):
            self.fail(fld, "expected 64 lowercase hex digits")
        return v

    # -- files
    def path(self, v, fld) -> str:
        self.str_(v, fld)
        if not v or "\\" in v or "\x00" in v or ":" in v:
            self.fail(fld, f"expected a relative path with '/' separators, got {v!r}")
        p = PurePosixPath(v)
        if p.is_absolute() or v.startswith("/"):
            self.fail(fld, f"absolute path {v!r}: file references must be relative to the YAML's folder")
        if ".." in p.parts:
            self.fail(fld, f"path {v!r} leaves the model folder ('..')")
        full = os.path.join(self.folder, *p.parts)
        real = os.path.realpath(full)
        if os.path.commonpath([real, self.real_folder]) != self.real_folder:
            self.fail(fld, f"path {v!r} resolves outside the model folder (symlink?)")
        if not os.path.exists(real):
            self.fail(fld, f"file {v!r} does not exist in the model folder")
        if not os.path.isfile(real):
            self.fail(fld, f"{v!r} is not a regular file")
        return real

    def table(self, spec, fld: str, dtype_name: str, shape_check) -> np.ndarray:
        """A kind's own .npy table (``Layer.files_from_yaml``): ``shape_check(shape, field)``
        refuses a wrong shape before the file is read."""
        return _read_npy(self, spec, fld, dtype_name, shape_check)

    def blob(self, spec, fld: str, keys: tuple[str, ...], nbytes: int) -> bytes:
        """A kind's own raw file of exactly ``nbytes`` bytes (checksum checked)."""
        return _read_blob(self, spec, fld, keys, nbytes)

    def read_file(self, v, fld, max_bytes) -> tuple[str, bytes]:
        real = self.path(v, fld)
        size = os.path.getsize(real)
        if size == 0:
            self.fail(fld, f"{v}: empty file")
        if size > max_bytes:
            self.fail(fld, f"{v}: file is {size} bytes, more than the {max_bytes} its entry allows")
        with open(real, "rb") as f:
            data = f.read(max_bytes + 1)
        return real, data


def _join(fld: str | None, key) -> str:
    return f"{fld}.{key}" if fld else str(key)


# --------------------------------------------------------------------------- load

def _read_table(r: _Reader, spec, fld: str, table: str, shape_check) -> np.ndarray:
    return _read_npy(r, spec, fld, _DTYPE_NAMES[table], shape_check)


def _read_npy(r: _Reader, spec, fld: str, dtype_name: str, shape_check) -> np.ndarray:
    """A .npy table entry ``{file, dtype, shape, sha256}`` of dtype ``dtype_name``, validated."""
    r.mapping(spec, fld, TABLE_KEYS)
    r.str_(spec["dtype"], f"{fld}.dtype", (dtype_name,))
    shape = r.shape(spec["shape"], f"{fld}.shape")
    shape_check(shape, f"{fld}.shape")
    sha = r.sha(spec["sha256"], f"{fld}.sha256")
    fname = spec["file"]
    r.str_(fname, f"{fld}.file")
    dtype = np.dtype(dtype_name).newbyteorder("<")
    nbytes = math.prod(shape) * dtype.itemsize
    _, data = r.read_file(fname, f"{fld}.file", nbytes + 65536)
    got = _sha256(data)
    if got != sha:
        r.fail(f"{fld}.sha256", f"{fname}: checksum mismatch (file has {got})")
    buf = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buf)
        if version == (1, 0):
            hshape, fortran, hdtype = np.lib.format.read_array_header_1_0(buf)
        elif version == (2, 0):
            hshape, fortran, hdtype = np.lib.format.read_array_header_2_0(buf)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except Exception as e:  # noqa: BLE001 - any header problem is a format error
        r.fail(f"{fld}.file", f"{fname}: not a valid .npy file ({' '.join(str(e).split())})")
    if hdtype != dtype:
        r.fail(f"{fld}.dtype", f"{fname}: the file holds {hdtype} data, expected {dtype_name}"
               f" ({dtype.str}); pickled or object arrays are never loaded")
    if fortran:
        r.fail(f"{fld}.file", f"{fname}: Fortran-ordered arrays are not allowed")
    if tuple(hshape) != shape:
        r.fail(f"{fld}.shape", f"{fname}: the file holds shape {list(hshape)}, the YAML says {list(shape)}")
    rest = len(data) - buf.tell()
    if rest < nbytes:
        r.fail(f"{fld}.file", f"{fname}: truncated ({rest} data bytes, expected {nbytes})")
    if rest > nbytes:
        r.fail(f"{fld}.file", f"{fname}: {rest - nbytes} trailing bytes after the array")
    return np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=buf.tell()).reshape(shape).copy()


def _read_blob(r: _Reader, spec, fld: str, keys: tuple[str, ...], nbytes: int, why: str = "") -> bytes:
    """A raw file entry ``{file, *keys, bytes, sha256}`` that must be exactly ``nbytes`` long
    (``why``: how that follows; the other keys are the caller's to check); returns its bytes."""
    r.mapping(spec, fld, ("file",) + tuple(keys) + ("bytes", "sha256"))
    if r.int_(spec["bytes"], f"{fld}.bytes", 1, MAX_ELEMENTS) != nbytes:
        r.fail(f"{fld}.bytes", f"expected {nbytes}{why}, got {spec['bytes']}")
    sha = r.sha(spec["sha256"], f"{fld}.sha256")
    fname = r.str_(spec["file"], f"{fld}.file")
    _, data = r.read_file(fname, f"{fld}.file", nbytes)
    got = _sha256(data)
    if got != sha:
        r.fail(f"{fld}.sha256", f"{fname}: checksum mismatch (file has {got})")
    if len(data) != nbytes:
        r.fail(f"{fld}.file", f"{fname}: truncated ({len(data)} bytes, expected {nbytes})")
    return data


def _read_image(r: _Reader, spec, fld: str, bits: int, codes: np.ndarray) -> None:
    r.mapping(spec, fld, IMAGE_KEYS)
    r.str_(spec["layout"], f"{fld}.layout", (LAYOUT,))
    if r.int_(spec["bits"], f"{fld}.bits", 1, 8) != bits:
        r.fail(f"{fld}.bits", f"expected {bits} (the layer's bits), got {spec['bits']}")
    if r.int_(spec["count"], f"{fld}.count", 1, MAX_ELEMENTS) != codes.size:
        r.fail(f"{fld}.count", f"expected {codes.size} (the codes table's size), got {spec['count']}")
    need = packed_size(codes.size, bits)
    data = _read_blob(r, spec, fld, ("layout", "bits", "count"), need, f" (= ceil({codes.size} * {bits} / 8))")
    fname = spec["file"]
    try:
        unpacked = unpack_codes(data, bits, codes.size)
    except ValueError as e:
        r.fail(f"{fld}.file", f"{fname}: {e}")
    if not np.array_equal(unpacked, codes.reshape(-1)):
        bad = int(np.flatnonzero(unpacked != codes.reshape(-1))[0])
        r.fail(f"{fld}.file", f"{fname}: does not match the codes table (first difference at "
               f"weight {bad})")


def _check_range(r: _Reader, arr: np.ndarray, lo: int, hi: int, fld: str, what: str) -> None:
    if arr.size and (int(arr.min()) < lo or int(arr.max()) > hi):
        bad = arr[(arr < lo) | (arr > hi)].reshape(-1)[0]
        r.fail(fld, f"value {int(bad)} outside {what} [{lo}, {hi}]")


def _load_layer(r: _Reader, rec, i: int, version: int, info: dict, prev: str | None) -> tuple[Layer, tuple]:
    """One record -> (layer, out_shape). ``info``: name -> (shape, type) of the layers before."""
    fld = f"layers[{i}]"
    if not isinstance(rec, dict):
        r.fail(fld, f"expected a mapping, got {_what(rec)}")
    if "kind" not in rec:
        r.fail(f"{fld}.kind", "missing")
    kinds = tuple(V1_LAYER_KEYS) if version == 1 else tuple(LAYER_KINDS)  # kinds registered so far
    kind = r.str_(rec["kind"], f"{fld}.kind", kinds)
    cls = LAYER_KINDS[kind]
    if "name" in rec:
        r.name(rec["name"], f"{fld}.name")
        why = identifier_problem(rec["name"])  # a layer's name reaches the generated C++
        if why:
            r.fail(f"{fld}.name", why)
        fld = f"{fld} ({rec['name']})"
    r.mapping(rec, fld, V1_LAYER_KEYS[kind] if version == 1 else layer_keys(cls))
    name = rec["name"]
    if (i == 0) != (kind == "input"):
        r.fail(f"{fld}.kind", "the first layer, and only the first, must be an input layer")
    if name in info:
        r.fail(f"{fld}.name", f"duplicate layer name '{name}'")
    out_type = r.fixed(rec["out_type"], f"{fld}.out_type")
    stated_out = r.shape(rec["out_shape"], f"{fld}.out_shape", (1, 2, 3))
    if kind == "input":
        return Input(name=name, out_type=out_type, shape=stated_out), stated_out

    if version == 1:  # a chain: the previous layer, whose shape this record restates
        in_shape = r.shape(rec["in_shape"], f"{fld}.in_shape", (1, 2, 3, 4))
        if in_shape != info[prev][0]:
            r.fail(f"{fld}.in_shape", f"{list(in_shape)} does not chain: the previous layer "
                   f"produces {list(info[prev][0])}")
        inputs = (prev,)
    else:
        inputs = _read_inputs(r, rec["inputs"], f"{fld}.inputs", cls, info)
    in_shapes = tuple(info[n][0] for n in inputs)
    in_types = tuple(info[n][1] for n in inputs)

    kw = cls.params_from_yaml(r, rec, fld, in_shapes)
    if issubclass(cls, Weighted):
        kw.update(_read_weight_tables(r, rec, fld, cls, kw, in_shapes))
    elif cls.FILES:
        kw.update(cls.files_from_yaml(r, rec, fld, kw, in_shapes))
    layer = cls(name=name, out_type=out_type, inputs=inputs, **kw)

    def fail(sub, msg):
        r.fail(f"{fld}.{sub}" if sub else fld, msg)

    layer.check(in_shapes, in_types, fail)
    out_shape = tuple(int(s) for s in layer.infer_shape(in_shapes))
    if any(s <= 0 for s in out_shape):
        r.fail(f"{fld}.out_shape", f"the output shape {list(out_shape)} is empty")
    if math.prod(out_shape) > MAX_ELEMENTS:
        r.fail(f"{fld}.out_shape", f"the output shape {list(out_shape)} has more than {MAX_ELEMENTS} elements")
    if out_shape != stated_out:
        r.fail(f"{fld}.out_shape", f"{list(stated_out)} does not match the recomputed {list(out_shape)}")
    return layer, out_shape


def _read_inputs(r: _Reader, v, fld: str, cls: type[Layer], info: dict) -> tuple[str, ...]:
    lo, hi = cls.arity
    if not isinstance(v, list):
        r.fail(fld, f"expected a list of layer names, got {_what(v)}")
    if not lo <= len(v) <= hi:
        want = f"{lo}" if lo == hi else f"{lo} to {hi}"
        r.fail(fld, f"{cls.kind} takes {want} inputs, got {len(v)}")
    for j, src in enumerate(v):
        r.name(src, f"{fld}[{j}]")
        if src not in info:
            r.fail(f"{fld}[{j}]", f"unknown input '{src}': no layer listed before this one has that name "
                   "(layers are listed after their inputs, so a cycle can never be written)")
    return tuple(v)


def _read_weight_tables(r: _Reader, rec, fld: str, cls, kw: dict, in_shapes) -> dict:
    bits = kw["bits"]
    cshape: list = []

    def check_codes(shape, sfld):
        problem = cls.codes_shape_problem(shape, in_shapes)
        if problem:
            where = ("in_shape" if "in_shape" in rec else "inputs") if not problem[0] else None
            r.fail(f"{fld}.{where}" if where else sfld, problem[1])
        cshape[:] = shape

    def check_vec(shape, sfld):
        if shape != (cshape[-1],):
            r.fail(sfld, f"expected [{cshape[-1]}] (one per output channel), got {list(shape)}")

    checks = (("codes", check_codes), ("scale", check_vec), ("bias", check_vec))
    # shapes first (all specs), then file contents
    for t, chk in checks:
        spec = rec[t]
        r.mapping(spec, f"{fld}.{t}", TABLE_KEYS)
        chk(r.shape(spec["shape"], f"{fld}.{t}.shape"), f"{fld}.{t}.shape")
    tables = {t: _read_table(r, rec[t], f"{fld}.{t}", t, chk) for t, chk in checks}
    lo, hi = arith.code_range(bits)
    _check_range(r, tables["codes"], lo, hi, f"{fld}.codes", f"the {bits}-bit code range")
    for t in ("scale", "bias"):
        typ = kw[f"{t}_type"]
        _check_range(r, tables[t], typ.min_mantissa, typ.max_mantissa, f"{fld}.{t}",
                     f"the mantissa range of {typ}")
    _read_image(r, rec["weights_image"], f"{fld}.weights_image", bits, tables["codes"])
    return tables


def _yaml_path(dir_or_yaml: str | os.PathLike) -> Path:
    p = Path(dir_or_yaml)
    if p.is_dir():
        p = p / YAML_NAME
    return p


def load_model(dir_or_yaml: str | os.PathLike) -> Model:
    """Read and validate a model folder (or its model.yaml); raise FormatError on any problem."""
    path = _yaml_path(dir_or_yaml)
    where = str(path)
    if not path.is_file():
        raise FormatError("no such model file" if not path.exists() else "not a file", file=where)
    size = path.stat().st_size
    if size == 0:
        raise FormatError("empty file", file=where)
    if size > MAX_YAML_BYTES:
        raise FormatError(f"file is {size} bytes, more than the {MAX_YAML_BYTES} allowed", file=where)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError(f"not UTF-8 text ({e.reason} at byte {e.start})", file=where) from None
    except OSError as e:
        raise FormatError(f"cannot read: {e.strerror or e}", file=where) from None
    doc = load_strict_yaml(text, file=where, error=FormatError)

    r = _Reader(path)
    if doc is None:
        r.fail(None, "empty YAML document")
    if not isinstance(doc, dict):
        r.fail(None, f"expected a mapping at the top level, got {_what(doc)}")
    if "format_version" not in doc:
        r.fail("format_version", "missing")
    version = r.int_(doc["format_version"], "format_version", 0, 1 << 31)
    if version not in READABLE_VERSIONS:
        r.fail("format_version", f"unsupported version {version}, expected one of "
               f"{', '.join(map(str, READABLE_VERSIONS))}")
    r.mapping(doc, None, TOP_KEYS)
    name = r.name(doc["name"], "name")
    recs = doc["layers"]
    if not isinstance(recs, list):
        r.fail("layers", f"expected a list of layers, got {_what(recs)}")
    if not recs:
        r.fail("layers", "expected at least an input layer")
    layers: list[Layer] = []
    info: dict[str, tuple[tuple, FixedType]] = {}
    for i, rec in enumerate(recs):
        layer, shape = _load_layer(r, rec, i, version, info, layers[-1].name if layers else None)
        info[layer.name] = (shape, layer.out_type)
        layers.append(layer)
    model = Model(name=name, layers=layers)
    model.check(where=where)
    return model
