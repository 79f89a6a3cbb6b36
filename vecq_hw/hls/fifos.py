"""io_stream FIFO depths sized from the dataflow schedule, not guessed (issue 28).

Every tensor of an io_stream design is a FIFO of *tokens* (one token = one pixel, all its
channels, or a slice of them: :mod:`.packs`; a vector is one token). A tensor read by several layers goes through hls4ml's Clone,
which writes each token to its outputs in order (``clone_stream``: res1, then res2, ...). Along
a chain, any depth >= 1 keeps the dataflow alive; where two paths from one fork meet again (a
residual ``add``, which reads one token of each input per output, the first input first), the
short path must buffer what the long path consumes before its first outputs arrive, or the fork
blocks and the design deadlocks. hls4ml's default (every stream as deep as its tensor) avoids
that by buffering whole frames everywhere.

The schedule of each kernel is its *need*: ``need[c - 1]`` = input tokens it has read when it
writes its c-th output token (``Mapping.stream_need``; e.g. our line-buffer conv writes output
row oh after reading input rows up to ``oh * stride + kh - 1 - pad``). For each add, with A the
path that needs more fork tokens:

* ``N_A(c)``: fork tokens A consumes to deliver its c-th token (the needs composed);
* ``Cap_B(c)``: fork tokens path B holds at most while the add waits for A's token c + 1:
  every FIFO of B full (depths d_i) and every kernel of B blocked writing its next token after
  reading what that token needs; plus the one token the clone gives A before it blocks on B when
  A's output comes first, and the one the add reads from B before waiting on A when B is its
  first input.

The design deadlocks exactly when ``N_A(c + 1) > Cap_B(c)`` for some c, so the smallest depth of
one FIFO of B that avoids it is a search over that inequality; the FIFO of B whose enlargement
costs the fewest bits is chosen. Every other FIFO gets ``DEFAULT_DEPTH``. A kind without a need
(or a path that is not a chain) falls back to frame-deep FIFOs at that add's inputs, which
cannot deadlock. ``vecq_hw.hls.csim.dataflow_check`` runs the generated C++ with FIFOs of these
depths in one thread per process and reports a deadlock, which is how the tests check the
computation (one token less deadlocks, the computed depth does not). No hls4ml import here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import ir
from .mappings import mapping_for, stream_tokens
from .packs import slices

#: the depth of every FIFO the schedule does not ask more of (Vitis HLS's default for a dataflow channel);
#: a tensor of one token (a vector) gets 1, as hls4ml gives it
DEFAULT_DEPTH = 2


@dataclass
class Fifo:
    """One io_stream FIFO: the tensor of ``src`` on its way to ``dst`` (None: into src's clone)."""

    src: str
    dst: str | None
    tokens: int  # per frame
    width: int  # bits per token
    depth: int = DEFAULT_DEPTH
    reason: str = ""  # why it is deeper than the default

    @property
    def name(self) -> str:
        return f"{self.src}->{self.dst or '(clone)'}"

    @property
    def bits(self) -> int:
        return self.depth * self.width


def tokens(shape, s: int = 1) -> int:
    """Tokens per frame of an io_stream tensor whose pixels are ``s`` tokens each (:mod:`.packs`)."""
    return stream_tokens(shape) * int(s)


def _fifos(model: ir.Model, readers: dict, s: dict) -> dict[tuple, Fifo]:
    shapes, out = model.shapes(), {}
    for layer in model.layers:
        rs = readers.get(layer.name) or []
        t = tokens(shapes[layer.name], s[layer.name])
        width = int(shapes[layer.name][-1]) // s[layer.name] * int(layer.out_type.width)
        if len(rs) > 1 and not isinstance(layer, ir.Input):
            out[(layer.name, None)] = Fifo(layer.name, None, t, width)
        if len(rs) == 1 and isinstance(layer, ir.Input):
            continue  # the top function's input stream itself
        for r in rs:
            out[(layer.name, r)] = Fifo(layer.name, r, t, width)
    return out


def _path(model: ir.Model, readers: dict, start: str):
    """(fork, [layers from the fork's side to start]) walking back a chain of one-input,
    one-reader layers; None when the walk meets anything else."""
    by_name, chain, cur = {lyr.name: lyr for lyr in model.layers}, [], start
    while len(readers.get(cur) or []) <= 1:
        layer = by_name[cur]
        if len(layer.inputs) != 1:
            return None
        chain.append(cur)
        cur = layer.inputs[0]
    return cur, chain[::-1]


def _needs(nodes: dict, chain: list[str], s: dict):
    """(need array, input tokens per frame) of the chain's kernels (None if one kind has none).
    With sliced packs (s: tokens per pixel of each tensor) a kernel's need in pixels becomes one
    in tokens: output pixel j's s_out tokens all leave once its need[j] input pixels (s_in tokens
    each) are in; a tied kernel (one pack in, one out) needs one token per token."""
    out = []
    for name in chain:
        node = nodes[name]
        mapping, s_in, s_out = mapping_for(node), s[node.layer.inputs[0]], s[name]
        need = mapping.stream_need(node)
        if need is None:
            return None
        if mapping.pack_rule(node) == "tied":
            need = np.arange(1, tokens(node.out_shape, s_out) + 1, dtype=np.int64)
        else:
            need = np.repeat(np.asarray(need, dtype=np.int64), s_out) * s_in
        out.append((need, tokens(node.in_shapes[0], s_in)))
    return out


def _compose(needs, counts: np.ndarray) -> np.ndarray:
    """Fork tokens a chain consumes to deliver ``counts`` tokens at its end (counts >= 1)."""
    c = counts.copy()
    for need, _ in reversed(needs):
        c = need[np.minimum(c, need.size) - 1]
    return c


def _capacity(needs, depths, held: np.ndarray, fork_tokens: int) -> np.ndarray:
    """Fork tokens a chain holds when its reader has taken ``held`` tokens and every FIFO
    (depths[0]: fork -> first kernel, ..., depths[-1]: last kernel -> reader) is full: each
    kernel is blocked writing its next token after reading what that token needs, or, with
    every output written, has read its whole input."""
    x = held + depths[-1]
    for (need, total), d in zip(reversed(needs), reversed(depths[:-1])):
        trying = np.minimum(x + 1, need.size)  # the output it is trying to write
        x = np.where(x >= need.size, total, need[trying - 1]) + d
    return np.minimum(x, fork_tokens)


def _ok(need_a, needs_b, depths_b, join_tokens, fork_tokens, a_first_at_fork, b_first_at_join) -> bool:
    c = np.arange(join_tokens, dtype=np.int64)
    want = _compose(need_a, c + 1)
    held = c + (1 if b_first_at_join else 0)
    have = _capacity(needs_b, depths_b, held, fork_tokens) + (1 if a_first_at_fork else 0)
    return bool(np.all(want <= np.minimum(have, fork_tokens)))


def _smallest_depth(check, lo: int, hi: int) -> int:
    """The smallest d in [lo, hi] with check(d) (check is monotone; hi must pass)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if check(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


@dataclass
class _Join:
    """One add and the two chains from their common fork (paths[x]: from the fork's side to x)."""

    add: str
    fork: str
    paths: dict
    needs: dict
    fork_tokens: int
    join_tokens: int


def _join(model, nodes, readers, fifos, add, s):
    """The add's two chains to one fork with known needs, or None."""
    a, b = add.inputs
    pa, pb = _path(model, readers, a), _path(model, readers, b)
    if pa is None or pb is None or pa[0] != pb[0]:
        return None
    needs = {a: _needs(nodes, pa[1], s), b: _needs(nodes, pb[1], s)}
    if needs[a] is None or needs[b] is None:
        return None
    return _Join(add.name, pa[0], {a: pa[1], b: pb[1]}, needs, tokens(nodes[pa[0]].out_shape, s[pa[0]]),
                 fifos[(a, add.name)].tokens)


def _widen_short_path(j: _Join, order, fifos, long_in: str, short_in: str, first_in: str) -> None:
    """Deepen the cheapest FIFO of the path to ``short_in`` until the path to ``long_in`` can
    always get the fork tokens it needs (a no-op when it already can)."""
    chain = j.paths[short_in]
    stops = chain + [j.add]
    fs = [fifos[e] for e in [(j.fork, stops[0])] + list(zip(chain, stops[1:]))]
    a_first = order[j.fork].index((j.paths[long_in] + [j.add])[0]) < order[j.fork].index(stops[0])

    def passes(depths):
        return _ok(j.needs[long_in], j.needs[short_in], depths, j.join_tokens, j.fork_tokens, a_first,
                   short_in == first_in)

    current = [f.depth for f in fs]
    if passes(current):
        return
    best = None  # (extra bits, index, depth)
    for i, f in enumerate(fs):
        with_depth = lambda d, i=i: current[:i] + [d] + current[i + 1:]  # noqa: E731
        if not passes(with_depth(max(f.tokens, current[i]))):
            continue
        d = _smallest_depth(lambda d: passes(with_depth(d)), current[i], max(f.tokens, current[i]))
        if best is None or (d - current[i]) * f.width < best[0]:
            best = ((d - current[i]) * f.width, i, d)
    _, i, d = best if best is not None else (0, 0, j.fork_tokens)
    fs[i].depth, fs[i].reason = d, f"{j.add}: the path from '{j.fork}' through '{long_in}' needs it"


def _join_key(model, readers, order, fifos, add, s):
    """Everything _size_join reads, for the memo (None: the add is not two chains from one fork)."""
    paths = [_path(model, readers, src) for src in add.inputs]
    if any(p is None for p in paths) or paths[0][0] != paths[1][0]:
        return None
    fork = paths[0][0]
    edges = [e for _, chain in paths for e in zip([fork] + chain, chain + [add.name])]
    return (add.name, tuple(order[fork]), tuple((n, s[n]) for n in [fork] + paths[0][1] + paths[1][1]),
            tuple(fifos[e].depth for e in edges))


def _size_join(model, nodes, readers, order, fifos, add, s, memo: dict | None = None) -> None:
    """Size the FIFOs of one add's two paths; ``memo``: {key: the depths set} shared by calls on
    one model (``fit`` plans the FIFOs of many pack choices that share most joins)."""
    key = _join_key(model, readers, order, fifos, add, s) if memo is not None else None
    if key is not None and key in memo:
        for e, depth, reason in memo[key]:
            fifos[e].depth, fifos[e].reason = depth, reason
        return
    before = {e: (f.depth, f.reason) for e, f in fifos.items()}
    _size_join_now(model, nodes, readers, order, fifos, add, s)
    if key is not None:
        memo[key] = [(e, f.depth, f.reason) for e, f in fifos.items() if (f.depth, f.reason) != before[e]]


def _size_join_now(model, nodes, readers, order, fifos, add, s) -> None:
    j = _join(model, nodes, readers, fifos, add, s)
    if j is None:
        for src in add.inputs:  # frame-deep inputs cannot deadlock
            f = fifos[(src, add.name)]
            f.depth, f.reason = max(f.depth, f.tokens), f"{add.name}: schedule unknown, a whole frame"
        return
    a, b = add.inputs
    _widen_short_path(j, order, fifos, a, b, a)
    _widen_short_path(j, order, fifos, b, a, a)


def plan_fifos(model: ir.Model, *, default_depth: int = DEFAULT_DEPTH, clone_order: dict | None = None,
               packs: dict | None = None, memo: dict | None = None) -> list[Fifo]:
    """Every io_stream FIFO of the design with its depth. ``clone_order``: {source: its readers in
    the clone's output order} (default: the order of ``model.consumers()``, which is hls4ml's);
    ``packs``: {layer: values per token} of sliced streams (:mod:`.packs`; default whole pixels);
    ``memo``: a dict kept between calls on the same model (and default depth), to reuse the joins
    whose packs and depths did not change."""
    readers, s = model.consumers(), slices(model, packs)
    order = {k: list(v) for k, v in readers.items()}
    order.update(clone_order or {})
    fifos = _fifos(model, readers, s)
    nodes = {n.layer.name: n for n in model.nodes()}
    for f in fifos.values():
        f.depth = min(int(default_depth), f.tokens)
    for layer in model.layers:
        if isinstance(layer, ir.Add) and len(layer.inputs) == 2:
            _size_join(model, nodes, readers, order, fifos, layer, s, memo)
    return list(fifos.values())


__all__ = ["DEFAULT_DEPTH", "Fifo", "plan_fifos", "tokens"]
