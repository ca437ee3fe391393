"""Write an export folder from torch generation modules (one per weight set).

:func:`write_export` traces the default module once into the graph, writes one weight file per
weight set with the graph's layout, generates SOFIE's C++ header, and refuses to finish unless
ONNX Runtime reproduces torch for every weight set (:data:`CHECK_EVENTS` events each). The
folder appears atomically: complete, or not at all.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import onnx
import torch
from torch import nn

from .. import __version__
from ..outputs import atomic_directory
from . import sofie_code
from .graph import OPSET, ExportError, check_graph, sofie_check, to_onnx
from .manifest import (DRAWS_DIR, GRAPH, LOCATION, NOISE_LAYOUT, SOFIE_DIR, WEIGHT_LIST, ExportManifest, GraphSpec, Port)
from .runtime import open_session
from .weights import externalize, initializer_values, layout, write_weights

CHECK_EVENTS = 256
TORCH_RTOL = 1e-4  # ONNX Runtime vs torch float32, relative (absolute below |value| = 1)
MAX_OFF_FRACTION = 1e-3  # events allowed beyond it, at least 1 (a discrete choice on a float
# boundary: a mixture component, the pT order of two nearly equal jets)


def max_rel_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-event max |a - b| / max(|b|, 1) (relative, absolute below 1); NaN == NaN."""
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    d = np.abs(a - b) / np.maximum(np.abs(b), 1.0)
    d[np.isnan(a) & np.isnan(b)] = 0.0
    d[np.isnan(a) ^ np.isnan(b)] = np.inf
    return d.max(axis=1)


def module_values(module: nn.Module, model: onnx.ModelProto, traced: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float initializer name -> value for ``module``: its parameters/buffers by name, the rest (constants) from the trace."""
    state = {k: v.detach() for k, v in module.named_parameters()}
    state.update({k: v.detach() for k, v in module.named_buffers() if v is not None})
    out = {}
    for name in traced:
        out[name] = state[name].cpu().float().numpy() if name in state else traced[name]
    return out


def write_export(output: str | os.PathLike, default: nn.Module, draws: Sequence[nn.Module] | Callable[[int], nn.Module] | None,
                 n_draws: int, spec: GraphSpec, *, generator: dict, physics: dict, provenance: dict,
                 force: bool = False, with_sofie: bool = True, check_seed: int = 0,
                 extra_files: dict[str, str] | None = None, inputs: dict[str, np.ndarray] | None = None,
                 progress: Callable[[str], None] | None = None) -> Path:
    """Write the export folder ``output`` (see :mod:`hepgen.export.manifest` for the layout).

    ``default``: the plain generation module (or the Bayesian posterior-mean one); ``draws``:
    the ``n_draws`` Bayesian draw modules (a sequence or ``k -> module``), ``None`` for plain.
    Every module maps ``spec``'s float32 inputs to its float32 output and has the same
    parameter names. Raises :class:`ExportError` when the graph is not SOFIE-compatible or ONNX
    Runtime disagrees with torch beyond :data:`TORCH_RTOL` for any weight set.
    ``extra_files``: name -> text written into the folder too (e.g. the run's card).
    ``inputs``: the graph's inputs for the trace (its first 8 events) and the parity checks (all
    of them, at least 2): source events for a generator that maps samples; default: drawn per
    ``spec`` (:meth:`GraphSpec.example`).
    """
    say = progress or (lambda msg: None)
    rng = np.random.default_rng(check_seed)
    if inputs is not None and min(len(v) for v in inputs.values()) < 2:
        raise ExportError("the export's example inputs need at least 2 events")
    given = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in (inputs or {}).items()}
    traced_from = {k: v[:8] for k, v in given.items()} if inputs is not None else spec.example(8, rng)
    example = {k: torch.from_numpy(v) for k, v in traced_from.items()}
    say("tracing the generator into ONNX")
    model = to_onnx(default, example, [p.name for p in spec.outputs])
    traced = initializer_values(model)
    # The trace's weights must be the module's, by name: otherwise the exporter folded weights
    # into new constants and per-draw weight files would be wrong.
    ref = module_values(default, model, traced)
    for name, value in traced.items():
        if not np.array_equal(ref[name], value):
            raise ExportError(f"graph weight {name!r} does not match the module's tensor of that name")
    get = (lambda k: draws[k]) if isinstance(draws, Sequence) else draws
    check = given if inputs is not None else spec.example(CHECK_EVENTS, rng)
    with atomic_directory(output, force) as tmp:
        files = []
        checks: dict = {"events": len(next(iter(check.values()))), "inputs": "given" if inputs is not None else "drawn",
                        "metric": "max |onnx - torch| / max(|torch|, 1)", "weights": {}}
        graph_ext = externalize(model, LOCATION)
        _set_metadata(graph_ext, spec, generator, physics, provenance, n_draws)
        check_graph(_without_external(graph_ext, model))
        graph_bytes = graph_ext.SerializeToString()
        (tmp / GRAPH).write_bytes(graph_bytes)
        sets = [("default", LOCATION, default)]
        if draws is not None:
            (tmp / DRAWS_DIR).mkdir()
            sets += [(k, f"{DRAWS_DIR}/draw_{k:03d}.safetensors", None) for k in range(n_draws)]
        for label, rel, module in sets:
            say(f"weights {rel}")
            module = module if module is not None else get(label)
            values = module_values(module, model, traced)
            write_weights(tmp / rel, model, values, {"weights": str(label), "hepgen": __version__})
            if label != "default":
                files.append(rel)
            checks["weights"][rel] = _parity(module, graph_bytes, (tmp / rel).read_bytes(), check, spec, rel)
        sofie = {"header": None, "reason": "not requested (--no-sofie)"}
        if with_sofie and not sofie_code.available():
            sofie = {"header": None, "reason": "the sofie package is not installed (pip install 'hepgen[sofie]')"}
        elif with_sofie:
            say("SOFIE C++ header")
            try:
                sofie_ok = sofie_check_model(model, tmp)
                (tmp / SOFIE_DIR).mkdir()
                header = sofie_code.generate_header(model, "generator", tmp / SOFIE_DIR / "generator.hxx", tmp / LOCATION)
            except ExportError as err:
                raise ExportError(f"{err}; export for ONNX Runtime only with --no-sofie") from err
            sofie = {"header": f"{SOFIE_DIR}/{header.name}", "namespace": "SOFIE_generator",
                     "check_model": sofie_ok, "weights": "any weight file of this folder (safetensors)"}
        (tmp / NOISE_LAYOUT).write_text(" ".join(spec.noise_layout) + "\n")
        (tmp / WEIGHT_LIST).write_text("\n".join(files or [LOCATION]) + "\n")
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
        manifest = ExportManifest(
            inputs=[_port(p, "float32") for p in spec.inputs],
            outputs=[_port(p, "float32") for p in spec.outputs],
            noise_layout=list(spec.noise_layout), objects=list(spec.objects), columns=list(spec.columns),
            notes=list(spec.notes),
            weights={"location": LOCATION, "default": LOCATION, "draws": files,
                     "tensors": [asdict(e) for e in layout(model)]},
            bayesian=draws is not None, generator=generator, physics=physics,
            provenance={**provenance, "hepgen_version": __version__,
                        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")},
            opset=OPSET, sofie=sofie, checks=checks,
        )
        (tmp / "manifest.json").write_text(manifest.to_json())
    return Path(output)


def sofie_check_model(model: onnx.ModelProto, tmp: Path) -> bool | None:
    """SOFIE parser's verdict on the graph (None without ``sofie``); ExportError if it says no."""
    path = tmp / ".sofie-check.onnx"
    onnx.save(model, str(path))
    try:
        ok = sofie_check(path)
    finally:
        path.unlink()
    if ok is False:
        raise ExportError("SOFIE's ONNX parser does not support every op of the graph (sofie.onnx.check_model)")
    return ok


def _without_external(graph_ext: onnx.ModelProto, model: onnx.ModelProto) -> onnx.ModelProto:
    """The metadata-carrying graph with its weights back in memory (for the full checker)."""
    out = onnx.ModelProto()
    out.CopyFrom(graph_ext)
    del out.graph.initializer[:]
    out.graph.initializer.extend(model.graph.initializer)
    return out


def _port(p: Port, dtype: str) -> dict:
    return {"name": p.name, "shape": ["batch", *p.shape], "dtype": dtype,
            "description": p.description, "units": p.units}


def _set_metadata(model: onnx.ModelProto, spec: GraphSpec, generator: dict, physics: dict,
                  provenance: dict, n_draws: int) -> None:
    model.producer_name, model.producer_version = "hepgen", __version__
    model.doc_string = (f"hepgen generator: noise {spec.inputs[0].name} -> {spec.outputs[0].name} "
                        f"[batch, {len(spec.objects)}, {len(spec.columns)}] ({', '.join(spec.columns)}); "
                        "see manifest.json")
    facts = {
        "hepgen.format": "hepgen-onnx-export/1",
        "hepgen.version": __version__,
        "hepgen.noise_layout": " ".join(spec.noise_layout),
        "hepgen.objects": " ".join(spec.objects),
        "hepgen.columns": " ".join(spec.columns),
        "hepgen.units": "; ".join(f"{p.name}: {p.units}" for p in spec.outputs),
        "hepgen.generator": json.dumps(generator, sort_keys=True),
        "hepgen.physics": json.dumps(physics, sort_keys=True),
        "hepgen.provenance": json.dumps(provenance, sort_keys=True),
        "hepgen.bayesian_draws": str(n_draws),
        "hepgen.weights": f"{LOCATION} (default); {DRAWS_DIR}/draw_KKK.safetensors (Bayesian draws), same layout",
    }
    del model.metadata_props[:]
    for k, v in facts.items():
        model.metadata_props.add(key=k, value=v)


def torch_outputs(module: nn.Module, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The module's outputs (always a list) for numpy inputs, as numpy float32."""
    with torch.no_grad():
        out = module(*(torch.from_numpy(v) for v in feeds.values()))
    return [t.numpy() for t in (out if isinstance(out, (tuple, list)) else (out,))]


def event_diff(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> np.ndarray:
    """Per-event :func:`max_rel_diff` over every output."""
    return np.max([max_rel_diff(x, y) for x, y in zip(a, b, strict=True)], axis=0)


def _parity(module: nn.Module, graph: bytes, weights: bytes, feeds: dict[str, np.ndarray], spec: GraphSpec, rel: str) -> dict:
    session = open_session(graph, LOCATION, weights)
    ort_out = session.run([p.name for p in spec.outputs], feeds)
    diff = event_diff(ort_out, torch_outputs(module, feeds))
    off = float(np.mean(diff > TORCH_RTOL))
    if np.sum(diff > TORCH_RTOL) > max(1, int(MAX_OFF_FRACTION * len(diff))):
        raise ExportError(f"ONNX Runtime differs from torch for {rel}: {off:.1%} of {len(diff)} events beyond "
                          f"{TORCH_RTOL:g} (max {diff.max():.3g})")
    return {"max_rel_diff": float(np.max(diff[np.isfinite(diff)], initial=0.0)), "fraction_beyond": off}
