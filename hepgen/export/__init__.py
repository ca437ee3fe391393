"""ONNX generators for C++ frameworks: one graph, one weight file per Bayesian draw.

``export(run_dir, ...)`` (``hepgen export RUN``) writes an export folder (layout in
:mod:`hepgen.export.manifest`); :class:`~hepgen.export.runtime.OnnxSampler` runs one with ONNX
Runtime; ``export/`` at the repository root holds the C++ consumers (SOFIE, ONNX Runtime C++).
"""

from __future__ import annotations

from .graph import ExportError


def export(run_dir, **kwargs):
    """See :func:`hepgen.export.from_run.export`."""
    from .from_run import export as _export

    return _export(run_dir, **kwargs)


def __getattr__(name):
    if name in ("OnnxSampler", "OnnxPipeline"):
        from . import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ExportError", "export", "OnnxSampler", "OnnxPipeline"]
