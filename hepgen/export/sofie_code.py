"""SOFIE C++ code for an exported graph (needs the optional ``sofie`` package).

:func:`generate_header` runs SOFIE's ONNX parser once on the graph and writes a standalone
C++ header (``namespace SOFIE_<name>``, ``struct Session``) whose weights are read at run time
from a safetensors file: any of the export's weight files. Switching Bayesian draw in C++ is
constructing another ``Session`` with another file; the header is generated and compiled once.
The header needs only a C++17 compiler and a BLAS (``sgemm_``), e.g. OpenBLAS.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx

from .graph import ExportError, _quiet_fd
from .weights import layout, read_weights


def available() -> bool:
    try:
        import sofie  # noqa: F401
    except ImportError:
        return False
    return True


def generate_header(model: onnx.ModelProto, name: str, output: str | os.PathLike,
                    reference_weights: str | os.PathLike | None = None) -> Path:
    """Write SOFIE's C++ header for ``model`` (weights in memory) to ``output``.

    SOFIE also writes the weights it expects; they are compared with ``reference_weights``
    (one of the export's weight files, same tensor values): same tensor names, shapes and
    bit-identical values, so SOFIE reads every weight file of the export correctly.
    """
    import sofie

    output = Path(output)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.onnx"
        onnx.save(model, str(path))
        try:
            with _quiet_fd():
                rmodel = sofie.RModelParser_ONNX().parse(str(path), False)
                rmodel.generate(sofie.Options.kSafetensorsWeightFile, -1, False)
                rmodel.output_generated(str(Path(tmp) / f"{name}.hxx"))
        except Exception as err:  # pybind11 turns C++ exceptions into RuntimeError and others
            raise ExportError(f"SOFIE cannot generate C++ for the graph: {err}") from err
        if reference_weights is not None:
            _compare(Path(tmp) / f"{name}.safetensors", Path(reference_weights), model)
        shutil.copyfile(Path(tmp) / f"{name}.hxx", output)
    return output


def _compare(sofie_file: Path, ours: Path, model: onnx.ModelProto) -> None:
    theirs, _ = read_weights(sofie_file)
    mine, _ = read_weights(ours)
    keys = {e.key for e in layout(model)}
    if set(theirs) - keys:
        raise ExportError(f"SOFIE reads tensors the weight files lack: {sorted(set(theirs) - keys)[:3]}")
    for key, arr in theirs.items():
        if mine[key].shape != arr.shape or not np.array_equal(mine[key], arr):
            raise ExportError(f"SOFIE's copy of tensor {key!r} differs from the weight file")
