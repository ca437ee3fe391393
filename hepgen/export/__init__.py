"""ONNX generators for C++ frameworks: one graph, one weight file per Bayesian draw.

:func:`hepgen.export.from_run.export` (``hepgen export RUN``) writes an export folder (layout
in :mod:`hepgen.export.manifest`); :class:`~hepgen.export.runtime.OnnxSampler` runs one with
ONNX Runtime; ``export/`` at the repository root holds the C++ consumers (SOFIE, ONNX Runtime
C++). The package itself imports nothing, so the processes can describe their graphs
(:class:`~hepgen.export.manifest.GraphSpec`) without loading ONNX.
"""
