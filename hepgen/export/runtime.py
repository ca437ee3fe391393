"""Run an export folder with ONNX Runtime, the way C++ frameworks do.

:class:`OnnxSampler` reads the graph once and opens one ``InferenceSession`` per weight file
(every Bayesian draw, or the single plain weight set). Each session gets its weight file from
memory under the graph's external-data location name, so one graph serves every draw and no
file is rewritten. Sessions run with one intra- and one inter-op thread by default and with
thread spinning off (spinning ORT pools slow torch in the same process 10-100x).

    sampler = OnnxSampler("exports/zjets")
    noise = sampler.draw_noise(1000, seed=1)        # [N, noise_dim] float32
    p = sampler.run(noise, draw=0)["momenta"]       # [N, P, 4] float32
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from .manifest import GRAPH, ExportManifest, load_manifest


def session_options(threads: int = 1):
    """ONNX Runtime options as CMSSW/Athena use them: fixed thread counts, no spinning."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so


def open_session(graph: bytes, location: str, weights: bytes, threads: int = 1):
    """One ``InferenceSession`` for ``graph`` with the weight file content ``weights``."""
    import onnxruntime as ort

    so = session_options(threads)
    so.add_external_initializers_from_files_in_memory([location], [weights], [len(weights)])
    return ort.InferenceSession(graph, sess_options=so, providers=["CPUExecutionProvider"])


class OnnxSampler:
    """ONNX Runtime sessions over an export folder; one per weight file.

    ``draws``: which weight files to open — ``None`` = all of the manifest's (every Bayesian
    draw, or the single plain weight set), ``"default"`` = the default weights only (posterior
    means for a Bayesian export), or a list of draw indices.
    """

    def __init__(self, export_dir: str | os.PathLike, draws=None, threads: int = 1):
        self.dir = Path(export_dir)
        self.manifest: ExportManifest = load_manifest(self.dir)
        m = self.manifest
        try:
            graph = (self.dir / GRAPH).read_bytes()
        except OSError as err:
            raise InputError(f"cannot read {self.dir / GRAPH}: {err.strerror}") from None
        files = m.weight_files
        if draws == "default":
            files = [m.weights["default"]]
        elif draws is not None:
            bad = [k for k in draws if not 0 <= k < len(files)]
            if bad:
                raise InputError(f"draw {bad[0]} not in the export (it has {len(files)} weight file(s))")
            files = [files[k] for k in draws]
        self.weight_files = files
        self.sessions = []
        for name in files:
            try:
                blob = (self.dir / name).read_bytes()
            except OSError as err:
                raise InputError(f"cannot read weight file {self.dir / name}: {err.strerror}") from None
            self.sessions.append(open_session(graph, m.weights["location"], blob, threads))
        self.input_names = [p["name"] for p in m.inputs]
        self.output_names = [p["name"] for p in m.outputs]

    def __len__(self) -> int:
        return len(self.sessions)

    @property
    def noise_dim(self) -> int:
        return self.manifest.noise_dim

    def draw_noise(self, n: int, seed: int | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
        """Noise ``[n, noise_dim]`` float32 following the manifest's layout (normal / uniform columns)."""
        rng = rng if rng is not None else np.random.default_rng(seed)
        layout = self.manifest.noise_layout
        out = np.empty((n, len(layout)), dtype=np.float32)
        for j, kind in enumerate(layout):
            out[:, j] = rng.standard_normal(n) if kind == "normal" else rng.random(n)
        return out

    def run(self, noise: np.ndarray, condition: np.ndarray | None = None, draw: int = 0) -> dict[str, np.ndarray]:
        """Outputs (name -> float32 array ``[N, ...]``) of weight set ``draw`` for ``noise`` ``[N, noise_dim]``."""
        feeds = {self.input_names[0]: np.ascontiguousarray(noise, dtype=np.float32)}
        if len(self.input_names) > 1:
            if condition is None:
                raise InputError(f"this generator needs a condition input {self.input_names[1]!r}")
            feeds[self.input_names[1]] = np.ascontiguousarray(condition, dtype=np.float32)
        outs = self.sessions[draw].run(self.output_names, feeds)
        return dict(zip(self.output_names, outs))
