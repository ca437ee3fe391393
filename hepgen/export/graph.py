"""torch module -> one checked, SOFIE-compatible ONNX graph.

:func:`to_onnx` traces a generation module with the dynamo exporter (torch >= 2.5), keeps
only the batch axis dynamic, inlines ONNX local functions (SOFIE rejects them) and checks the
result: :func:`check_graph` runs ``onnx.checker`` with full shape inference, refuses random
ops and control flow, and compares every op against :data:`SOFIE_OPS` (the ops this exporter
was verified with against ``sofie`` 0.1.0's ONNX parser). When the ``sofie`` package is
installed, its own parser check runs as well. Anything else is an :class:`ExportError`: a graph
that a C++ framework cannot run is never written.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
import onnx.inliner
from onnx import numpy_helper
import torch
from torch import nn

from ..errors import ExportError

OPSET = 20

# Ops of the default ONNX domain that the export accepts: those SOFIE 0.1.0's ONNX parser
# accepts (each checked with sofie.onnx.check_model on a one-node graph). Not accepted there,
# so avoid them in exportable code: ArgMax, Atan2, Ceil, Round, Sign, Tan, Asin, Acos, Sinh,
# Cosh, Log1p, OneHot, GatherElements, Loop, If, Random*. The parity tests run the ops the
# generators actually use through SOFIE's C++.
SOFIE_OPS = frozenset({
    "Abs", "Add", "And", "Atan", "Cast", "Clip", "Concat", "Constant", "ConstantOfShape", "Cos",
    "CumSum", "Div", "Einsum", "Equal", "Erf", "Exp", "Expand", "Floor", "Gather", "Gemm",
    "Greater", "GreaterOrEqual", "Identity", "IsNaN", "LayerNormalization", "Less",
    "LessOrEqual", "Log", "MatMul", "Max", "Min", "Mod", "Mul", "Neg", "Not", "Or", "Pow",
    "Range", "Reciprocal", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceSum", "Relu",
    "Reshape", "ScatterND", "Shape", "Sigmoid", "Sin", "Slice", "Softmax", "Softplus", "Split",
    "Sqrt", "Squeeze", "Sub", "Tanh", "Tile", "TopK", "Transpose", "Trilu", "Unsqueeze", "Where",
})
FORBIDDEN_OPS = frozenset({
    "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
    "Bernoulli", "Loop", "If", "Scan", "SequenceMap",
})


def weight_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """The float32 parameters and buffers of ``module`` by name (the tensors a draw changes)."""
    out = {k: v for k, v in module.named_parameters()}
    out.update({k: v for k, v in module.named_buffers() if v is not None})
    return {k: v.detach() for k, v in out.items() if v.dtype == torch.float32}


class _Lifted(nn.Module):
    """``module`` with its weights as extra forward inputs, so the exporter cannot fold them.

    The optimizer folds anything computed from initializers alone (``edges[k]``, a sliced
    buffer) into new anonymous constants, which would freeze one draw's values into the graph.
    Weights passed as graph inputs are never folded; they become named initializers again
    afterwards (:func:`_inputs_to_initializers`).
    """

    def __init__(self, module: nn.Module, names: list[str], n_inputs: int):
        super().__init__()
        self.module, self.names, self.n = module, names, n_inputs

    def forward(self, *args):
        weights = dict(zip(self.names, args[self.n:]))
        return torch.func.functional_call(self.module, weights, args[:self.n], strict=False)


def to_onnx(module: nn.Module, inputs: dict[str, torch.Tensor], output_names: Sequence[str],
            opset: int = OPSET) -> onnx.ModelProto:
    """Trace ``module(*inputs.values())`` into an ONNX model with only axis 0 dynamic.

    ``inputs`` maps input names to float32 example tensors ``[batch, ...]`` (batch >= 2, the
    same for all). Every float32 parameter/buffer of ``module`` becomes an initializer under
    its own name (:func:`weight_tensors`), never folded into other constants, so the weights of
    another draw can be substituted by name. The returned model holds its weights in memory,
    has no local functions and has passed :func:`check_graph`.
    """
    module = module.eval()
    weights = weight_tensors(module)
    names = list(weights)
    lifted = _Lifted(module, names, len(inputs)).eval()
    examples = tuple(inputs.values()) + tuple(weights.values())
    batch = torch.export.Dim("batch", min=1)
    dynamic = (tuple({0: batch} for _ in inputs) + tuple(None for _ in names),)  # forward(*args)
    with tempfile.TemporaryDirectory() as tmp, _quiet():
        path = Path(tmp) / "graph.onnx"
        try:
            program = torch.onnx.export(
                lifted, examples, input_names=list(inputs) + names, output_names=list(output_names),
                opset_version=opset, dynamo=True, dynamic_shapes=dynamic, external_data=False,
                optimize=True, verbose=False,
            )
            program.save(str(path), external_data=False)
        except Exception as err:  # the exporter raises many types; keep the cause visible
            raise ExportError(f"torch could not export the generator to ONNX: {str(err).splitlines()[0]}") from err
        model = onnx.load(str(path))
    _inputs_to_initializers(model, weights)
    model = onnx.inliner.inline_local_functions(model)
    del model.functions[:]
    _strip_torch_metadata(model)
    check_graph(model)
    return model


def _inputs_to_initializers(model: onnx.ModelProto, weights: dict[str, torch.Tensor]) -> None:
    """Turn the lifted weight inputs back into initializers of the same name."""
    keep = [v for v in model.graph.input if v.name not in weights]
    used = {v.name for v in model.graph.input} & set(weights)
    del model.graph.input[:]
    model.graph.input.extend(keep)
    for name in sorted(used):
        model.graph.initializer.append(numpy_helper.from_array(weights[name].cpu().numpy(), name))


@contextlib.contextmanager
def _quiet():
    """Silence the exporter's progress prints (stdout) and the deprecation notices torch's
    own exporter code raises internally (not about hepgen's code; nothing to act on)."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        for category in (FutureWarning, DeprecationWarning, UserWarning):
            warnings.filterwarnings("ignore", category=category, module=r"(torch|onnxscript|onnx_ir)(\.|$)")
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*LeafSpec.*")
        log = logging.getLogger("torch.onnx")
        level = log.level
        log.setLevel(logging.ERROR)  # "torchvision is not installed" notices
        try:
            yield
        finally:
            log.setLevel(level)


def _strip_torch_metadata(model: onnx.ModelProto) -> None:
    for value in (*model.graph.input, *model.graph.output, *model.graph.value_info):
        del value.metadata_props[:]
    for node in model.graph.node:
        del node.metadata_props[:]
    for init in model.graph.initializer:
        del init.metadata_props[:]


def op_counts(model: onnx.ModelProto) -> Counter:
    """How often each op type occurs in the main graph (``domain::op`` outside the default domain)."""
    return Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}"
                   for n in model.graph.node)


def check_graph(model: onnx.ModelProto) -> None:
    """Refuse what SOFIE or a C++ framework cannot run; run the ONNX checker with full shape inference.

    Checks: no local functions, no control flow or random ops, only :data:`SOFIE_OPS`, float32
    inputs and outputs whose only symbolic axis is axis 0, and ``onnx.checker.check_model(...,
    full_check=True)``. Raises :class:`ExportError` naming the first problem.
    """
    if len(model.functions):
        raise ExportError(f"graph has {len(model.functions)} ONNX local functions; SOFIE cannot parse them")
    counts = op_counts(model)
    bad = sorted(op for op in counts if op in FORBIDDEN_OPS)
    if bad:
        raise ExportError(f"graph uses random or control-flow ops {', '.join(bad)}; noise must be an input and loops unrolled")
    unsupported = sorted(op for op in counts if op not in SOFIE_OPS)
    if unsupported:
        raise ExportError(f"graph uses ops outside the SOFIE-supported set: {', '.join(unsupported)}")
    _check_slices(model)
    for kind, values in (("input", model.graph.input), ("output", model.graph.output)):
        for value in values:
            tt = value.type.tensor_type
            if tt.elem_type != onnx.TensorProto.FLOAT:
                raise ExportError(f"graph {kind} {value.name!r} is not float32")
            dims = list(tt.shape.dim)
            if not dims or not dims[0].dim_param:
                raise ExportError(f"graph {kind} {value.name!r} has no dynamic batch axis 0")
            if any(not d.HasField("dim_value") for d in dims[1:]):
                raise ExportError(f"graph {kind} {value.name!r} has a dynamic axis other than the batch axis")
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise ExportError(f"ONNX checker rejects the graph: {str(err).splitlines()[0]}") from err


def _check_slices(model: onnx.ModelProto) -> None:
    """SOFIE 0.1.0 sizes a strided Slice as floor((end - start) / step) (ONNX: ceil), so
    ``x[:, 1::3]`` of 6 columns silently has 1 column in C++ instead of 2: refuse steps != 1."""
    consts = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            consts[node.output[0]] = node.attribute[0].t
    for node in model.graph.node:
        if node.op_type != "Slice" or len(node.input) < 5 or not node.input[4]:
            continue
        steps = consts.get(node.input[4])
        if steps is None or np.any(numpy_helper.to_array(steps) != 1):
            raise ExportError(f"graph has a strided Slice ({node.name}); SOFIE sizes it wrongly: "
                              "use contiguous slices (x[:, a:b]) or explicit column lists")


def sofie_check(onnx_path: str | os.PathLike) -> bool | None:
    """SOFIE's own parser check of a saved graph; None when the ``sofie`` package is absent."""
    try:
        import sofie  # noqa: F401
    except ImportError:
        return None
    import sofie

    with _quiet_fd():
        return bool(sofie.RModelParser_ONNX().check_model(os.fspath(onnx_path), False))


@contextlib.contextmanager
def _quiet_fd():
    """Silence C++ code that prints straight to file descriptor 1 (SOFIE's parser)."""
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
