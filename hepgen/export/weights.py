"""Weight files: one safetensors file per weight set, shared by ONNX Runtime and SOFIE.

Every float32 initializer of the exported graph is stored in a `safetensors
<https://huggingface.co/docs/safetensors>`_ file (8-byte little-endian header length, a JSON
header, then the raw little-endian tensors back to back). The same file serves both C++ paths:

- ONNX Runtime reads it as the graph's *external data*: each externalised initializer points
  at ``(location, offset, length)`` inside the file. Every weight file of one export has the
  same layout (same tensors, same order, same offsets), so a session for Bayesian draw ``k``
  is the same graph with the file of draw ``k`` handed in under the graph's location name
  (``AddExternalInitializersFromFilesInMemory`` in C++, the same call in Python).
- SOFIE's generated C++ (``Options.kSafetensorsWeightFile``) reads its weights by name from a
  safetensors file: the header keys are SOFIE's tensor names (``tensor_`` + the ONNX name
  without the characters C++ identifiers cannot hold).

Only float32 tensors are externalised; int64 shape constants stay inside the graph (ONNX
Runtime refuses externalised shape constants). The header's data section starts 64-byte
aligned.
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import InputError

FORMAT = "hepgen-weights-1"
_ALIGN = 64


def sofie_name(onnx_name: str) -> str:
    """The name SOFIE's generated code gives an initializer (``field.net.w`` -> ``tensor_fieldnetw``)."""
    return "tensor_" + re.sub(r"[^A-Za-z0-9_]", "", onnx_name)


@dataclass(frozen=True)
class TensorEntry:
    """One float32 tensor of a weight file: ONNX name, SOFIE name, shape, byte range in the file."""

    onnx_name: str
    key: str
    shape: tuple[int, ...]
    offset: int  # from the start of the file
    length: int  # bytes


def float_initializers(model: onnx.ModelProto) -> list[str]:
    """Names of the float32 initializers of the main graph, in graph order."""
    return [t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]


def layout(model: onnx.ModelProto) -> list[TensorEntry]:
    """The byte layout every weight file of ``model`` has (same for every weight set)."""
    names = float_initializers(model)
    shapes = {t.name: tuple(int(d) for d in t.dims) for t in model.graph.initializer}
    keys = [sofie_name(n) for n in names]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise InputError(f"two graph weights map to the same C++ name {dup!r}; rename the module's parameters")
    header = _header(names, keys, shapes, metadata={"format": FORMAT, "weights": "x" * 64})
    start = _data_start(header)
    entries, pos = [], 0
    for name, key in zip(names, keys):
        nbytes = 4 * int(np.prod(shapes[name], dtype=np.int64))
        entries.append(TensorEntry(name, key, shapes[name], start + pos, nbytes))
        pos += nbytes
    return entries


def _header(names, keys, shapes, metadata: dict[str, str]) -> bytes:
    head: dict = {"__metadata__": dict(metadata)}
    pos = 0
    for name, key in zip(names, keys):
        nbytes = 4 * int(np.prod(shapes[name], dtype=np.int64))
        head[key] = {"dtype": "F32", "shape": list(shapes[name]), "data_offsets": [pos, pos + nbytes]}
        pos += nbytes
    return json.dumps(head, separators=(",", ":")).encode()


def _data_start(header: bytes) -> int:
    # The header is padded (with spaces, as the format allows) so the data starts aligned; a
    # fixed pad width keeps the layout independent of the metadata values.
    return ((8 + len(header) + 256 + _ALIGN - 1) // _ALIGN) * _ALIGN


def write_weights(path: str | os.PathLike, model: onnx.ModelProto, values: dict[str, np.ndarray],
                  metadata: dict[str, str]) -> list[TensorEntry]:
    """Write the weight file for one weight set; returns its layout (identical for every set).

    ``values`` maps every float initializer name of ``model`` to its float32 array; ``metadata``
    (str -> str, e.g. the draw index) goes into the header. Metadata values longer than the
    reserved space are refused (the layout must not depend on them).
    """
    entries = layout(model)
    names = [e.onnx_name for e in entries]
    missing = [n for n in names if n not in values]
    if missing:
        raise InputError(f"weight set lacks tensor {missing[0]!r}")
    meta = {"format": FORMAT, **{k: str(v) for k, v in metadata.items()}}
    header = _header(names, [e.key for e in entries], {e.onnx_name: e.shape for e in entries}, meta)
    start = entries[0].offset if entries else _data_start(header)
    if 8 + len(header) > start:
        raise InputError("weight-file metadata too long for the fixed header size")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", start - 8))
        f.write(header + b" " * (start - 8 - len(header)))
        for e in entries:
            arr = np.asarray(values[e.onnx_name], dtype="<f4")
            if tuple(arr.shape) != e.shape:
                raise InputError(f"tensor {e.onnx_name!r} has shape {tuple(arr.shape)}, the graph wants {e.shape}")
            f.write(arr.tobytes())
    return entries


def read_weights(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(SOFIE key -> float32 array, metadata) of a weight file; InputError if it is not one."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as err:
        raise InputError(f"cannot read weight file {path}: {err.strerror}") from None
    if len(blob) < 8:
        raise InputError(f"weight file {path} is truncated")
    (n,) = struct.unpack("<Q", blob[:8])
    try:
        head = json.loads(blob[8 : 8 + n])
    except (ValueError, UnicodeDecodeError):
        raise InputError(f"weight file {path} has no valid safetensors header") from None
    meta = head.pop("__metadata__", {}) or {}
    out = {}
    for key, info in head.items():
        b, e = info["data_offsets"]
        if 8 + n + e > len(blob) or info.get("dtype") != "F32":
            raise InputError(f"weight file {path} is truncated or has a non-float32 tensor {key!r}")
        out[key] = np.frombuffer(blob, dtype="<f4", count=(e - b) // 4, offset=8 + n + b).reshape(info["shape"])
    return out, meta


def externalize(model: onnx.ModelProto, location: str) -> onnx.ModelProto:
    """A copy of ``model`` whose float32 initializers point into the weight file ``location``."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    entries = {e.onnx_name: e for e in layout(model)}
    for t in out.graph.initializer:
        e = entries.get(t.name)
        if e is None:
            continue
        t.ClearField("raw_data")
        t.ClearField("float_data")
        t.data_location = onnx.TensorProto.EXTERNAL
        del t.external_data[:]
        for k, v in (("location", location), ("offset", str(e.offset)), ("length", str(e.length))):
            t.external_data.add(key=k, value=v)
    return out


def initializer_values(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Float32 initializer name -> array of a model whose data is in memory."""
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer
            if t.data_type == onnx.TensorProto.FLOAT}
