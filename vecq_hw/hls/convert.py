"""Integer model (vecq_hw IR) -> hls4ml layer list + config -> ModelGraph.

The hls4ml model is built from a layer list (``ModelGraph.from_layer_list``) over
``model.nodes()`` with every layer's real ``inputs``, never by tracing PyTorch. What each kind
becomes, and every precision it carries, comes from its mapping (:mod:`.mappings`);
:func:`check_pinned` proves against the same mappings that no type in the finished graph was
left to a default (hls4ml's own Clone layers, inserted in io_stream where a tensor is read
twice, must carry their source's type).
"""

from __future__ import annotations

import dataclasses

from hls4ml.model.types import NamedType

from .. import ir
from ..errors import VecQError
from .folding import reuse_plan, streamed_plan
from .layers import register
from .mappings import MAPPINGS, pool_accum_type
from .mappings_da import mapping_for, register_hls_da
from .options import IO_TYPES, STRATEGIES, HlsOptions
from .products import choose_product
from .types import hls_name, precision_of, precision_string, same_precision

__all__ = ["IO_TYPES", "STRATEGIES", "build_graph", "check_pinned", "hls_config", "hls_name", "layer_list",
           "pool_accum_type", "precision_of", "precision_string", "term_type"]


#: hls4ml's Clone copies an io_stream tensor to at most 7 readers
MAX_STREAM_READERS = 7


def term_type(in_type, layer_or_bits):
    """Exact type of one product x * d (a weighted layer's product, or the named k-bit tables')."""
    if isinstance(layer_or_bits, ir.Weighted):
        return choose_product(layer_or_bits, in_type).term
    from .products import _named_term

    return _named_term(in_type, int(layer_or_bits))


def _check_stream_flattens(model: ir.Model) -> None:
    """In io_stream, hls4ml turns a flatten of an image into a Repack (the output) or an alias of
    the pixel stream that only our weighted kernels read correctly (a ReLU after it reads pixels
    as if they were the flat vector: the C simulation disagrees). Refused before anything is written."""
    readers = model.consumers()
    nodes = {node.layer.name: node for node in model.nodes()}
    for node in nodes.values():
        layer = node.layer
        if layer.kind != "flatten" or len(node.in_shapes[0]) == 1:
            continue
        bad = [r for r in readers[layer.name] if mapping_for(nodes[r]).products_per_input(nodes[r]) is None]
        if bad or not readers[layer.name]:
            what = f"read by '{bad[0]}' ({model.layer(bad[0]).kind})" if bad else "the model's output"
            raise VecQError(f"layer '{layer.name}' (flatten) is {what}; in io_stream a flatten of an image may only "
                            "feed weighted layers (dense; use io_parallel)", field="io_type")


def _options(options: HlsOptions | None, kw: dict) -> HlsOptions:
    return HlsOptions.from_kwargs(options, **kw) if kw else (options or HlsOptions())


def resolve_streamed(model: ir.Model, opts: HlsOptions, plan: dict | None = None):
    """(options with ``axi_bits`` resolved from the part, {layer: StreamedLayer}) after checking
    every layer that streams its codes against the part and its folding (hls/offchip.py)."""
    plan = reuse_plan(model, opts) if plan is None else plan
    if not any(mode != "onchip" for mode in opts.weights.values()):
        return opts, streamed_plan(model, plan, opts.weights, io_type=opts.io_type, part=None)  # names only
    from .estimate.parts import get_part

    part = get_part(opts.part)
    if opts.axi_bits is not None:
        part = dataclasses.replace(part, axi_bits=opts.axi_bits)
    return opts.replace(axi_bits=part.axi_bits), streamed_plan(model, plan, opts.weights, io_type=opts.io_type,
                                                               part=part)


def layer_list(model: ir.Model, options: HlsOptions | None = None, *, check: bool = True, **option_kw):
    """The hls4ml layer list and per-layer precision config for an integer model.

    Returns (layers, layer_config, names) where names maps IR layer name -> hls4ml name.
    ``check=False`` skips :meth:`Model.check` (only for tests that break a model on purpose).
    """
    opts = _options(options, option_kw)
    if check:
        model.check()
    if opts.io_type == "io_stream":
        for src, readers in model.consumers().items():
            if len(readers) > MAX_STREAM_READERS:
                raise VecQError(f"layer '{src}' is read by {len(readers)} layers; io_stream copies a stream to "
                                f"at most {MAX_STREAM_READERS} readers (hls4ml's clone)")
        _check_stream_flattens(model)
    plan = reuse_plan(model, opts)  # every per-layer entry names a weighted layer, every R divides its P
    opts, _ = resolve_streamed(model, opts, plan)
    # every kind's hls4ml layer and header, not only this model's: a project copies every
    # registered header, so registering lazily would make its content (and the csim build key)
    # depend on what this process happened to build before
    for m in {id(m): m for m in MAPPINGS.values()}.values():
        m.register_hls()
    register_hls_da()  # the distributed-arithmetic classes too, whatever this project's strategy
    taken: set[str] = set()
    layers, cfg, names = [], {}, {}
    for node in model.nodes():
        layer = node.layer
        mapping = mapping_for(node, opts)
        why = mapping.refuse(node, opts)
        if why:
            raise VecQError(f"layer '{layer.name}' ({layer.kind}): {why}")
        name = hls_name(layer.name, taken)
        names[layer.name] = name
        d = {"name": name, "class_name": mapping.class_name(node, opts)}
        if layer.inputs:
            d["inputs"] = [names[src] for src in layer.inputs]
        d.update(mapping.attrs(node, opts))
        prec = {}
        for key, t in mapping.types(node, opts).items():
            prec[key] = precision_string(t)
            if key != "result":
                d[f"{key}_t"] = NamedType(f"{name}_{key}_t", precision_of(t))
        layers.append(d)
        cfg[name] = {"Precision": prec, "Trace": True, "ReuseFactor": int(d.get("reuse_factor", opts.reuse_factor)),
                     "Strategy": opts.kernel_strategy}
    return layers, cfg, names


def hls_config(model: ir.Model, options: HlsOptions | None = None, *, output_dir="hls_prj", trace=False,
               check=True, **option_kw):
    """(config dict for ModelGraph.from_layer_list, layer list, name map)."""
    from hls4ml.backends import get_backend

    opts = _options(options, option_kw)
    register()
    layers, layer_cfg, names = layer_list(model, opts, check=check)
    config = get_backend(opts.backend).create_initial_config(part=opts.part, clock_period=opts.clock_period,
                                                             io_type=opts.io_type)
    # TraceOutput is read from the top level of the config (hls4ml's HLSConfig.Model ignores it)
    config.update(Backend=opts.backend, OutputDir=str(output_dir), ProjectName=opts.project_name, InputData=None,
                  OutputPredictions=None, TraceOutput=bool(trace))
    config["HLSConfig"] = {
        "Model": {"Precision": {"default": precision_string(model.input.out_type)},
                  "ReuseFactor": int(opts.reuse_factor), "Strategy": opts.kernel_strategy,
                  "BramFactor": 1_000_000_000},
        "LayerName": layer_cfg,
    }
    return config, layers, names


def build_graph(model: ir.Model, options: HlsOptions | None = None, *, output_dir="hls_prj", trace=False,
                check=True, **option_kw):
    """ModelGraph for an integer model (not written, not compiled), plus the name map."""
    from hls4ml.model.graph import ModelGraph

    opts = _options(options, option_kw)
    config, layers, names = hls_config(model, opts, output_dir=output_dir, trace=trace, check=check)
    graph = ModelGraph.from_layer_list(config, layers)
    check_pinned(graph, model, names, opts)
    return graph, names


def _check_types(what: str, node, expected: dict) -> None:
    """Every output variable and every NamedType '<key>_t' of an hls4ml node is as expected."""
    for var in node.variables.values():
        if not same_precision(var.type.precision, expected["result"]):
            raise VecQError(f"{what}: hls4ml output type {var.type.precision} differs from {expected['result']}")
    for key, value in node.attributes.items():
        if not key.endswith("_t") or not isinstance(value, NamedType):
            continue
        want = expected.get(key[:-2])
        if want is None:
            raise VecQError(f"{what}: hls4ml type '{key}' = {value.precision} is not pinned")
        if not same_precision(value.precision, want):
            raise VecQError(f"{what}: hls4ml type '{key}' = {value.precision}, expected {want}")


def check_pinned(graph, model: ir.Model, names: dict[str, str], options: HlsOptions | None = None) -> None:
    """Every type in the hls4ml graph is the one the layer's mapping emits (no default, no 'auto')."""
    opts = options or HlsOptions()
    expected, out_of = {}, {}
    for node in model.nodes():
        expected[names[node.layer.name]] = (node.layer, mapping_for(node, opts).types(node, opts))
        out_of[names[node.layer.name]] = node.layer.out_type
    for node in graph.get_layers():
        if node.class_name == "Clone":
            # hls4ml's io_stream copy of a tensor read twice: it must carry the source's type
            src = node.inputs[0]
            if src not in out_of:
                raise VecQError(f"hls4ml clone layer '{node.name}' reads '{src}', which the integer model lacks")
            want = out_of[src]
            _check_types(f"clone layer '{node.name}'", node, {"result": want})
            continue
        if node.name not in expected:
            raise VecQError(f"hls4ml added a layer '{node.name}' ({node.class_name}) the integer model does not have")
        layer, types = expected[node.name]
        _check_types(f"layer '{layer.name}'", node, types)
