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

from .. import processes
from ..cards import load_card
from ..errors import HepgenError, InputError
from ..runs import sampler_fields
from ..runlog import read_data_info
from .manifest import GRAPH, ExportManifest, column, load_manifest


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


def providers(device: str = "cpu") -> list:
    """ONNX Runtime execution providers for ``device``: cpu; cuda / cuda:N (the CUDA provider of
    onnxruntime-gpu, ``pip install "hepgen[gpu]"``; an error without it); auto (CUDA where
    onnxruntime-gpu sees a GPU, else the CPU)."""
    import onnxruntime as ort

    cpu = ["CPUExecutionProvider"]
    if device == "cpu":
        return cpu
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if device == "auto":
        return (["CUDAExecutionProvider"] if has_cuda else []) + cpu
    name, _, index = device.partition(":")
    if name != "cuda" or not (index == "" or index.isdigit()):
        raise HepgenError(f"--device {device!r} is not a device (auto, cpu, cuda, cuda:N)")
    if not has_cuda:
        raise HepgenError(f"--device {device}: this onnxruntime has no CUDA execution provider "
                          "(pip install \"hepgen[gpu]\" for onnxruntime-gpu, or use --device cpu)")
    return [("CUDAExecutionProvider", {"device_id": int(index or 0)})] + cpu


def open_session(graph: bytes, location: str, weights: bytes, threads: int = 1, device: str = "cpu"):
    """One ``InferenceSession`` for ``graph`` with the weight file content ``weights``, on
    ``device`` (:func:`providers`)."""
    import onnxruntime as ort

    so = session_options(threads)
    so.add_external_initializers_from_files_in_memory([location], [weights], [len(weights)])
    return ort.InferenceSession(graph, sess_options=so, providers=providers(device))


class OnnxSampler:
    """ONNX Runtime sessions over an export folder; one per weight file.

    ``draws``: which weight files to open — ``None`` = all of the manifest's (every Bayesian
    draw, or the single plain weight set), ``"default"`` = the default weights only (posterior
    means for a Bayesian export), or a list of draw indices. ``device``: :func:`providers`.
    """

    def __init__(self, export_dir: str | os.PathLike, draws=None, threads: int = 1, device: str = "cpu"):
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
            self.sessions.append(open_session(graph, m.weights["location"], blob, threads, device))
        self.input_names = [p["name"] for p in m.inputs]
        self.output_names = [p["name"] for p in m.outputs]

    def __len__(self) -> int:
        return len(self.sessions)

    @property
    def device(self) -> str:
        """The execution provider the sessions run on (e.g. CPUExecutionProvider)."""
        return self.sessions[0].get_providers()[0] if self.sessions else ""

    @property
    def noise_dim(self) -> int:
        return self.manifest.noise_dim

    def draw_noise(self, n: int, seed: int | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
        """Noise ``[n, noise_dim]`` float32 following the manifest's layout (normal / uniform columns)."""
        rng = rng if rng is not None else np.random.default_rng(seed)
        layout = self.manifest.noise_layout
        out = np.empty((n, len(layout)), dtype=np.float32)
        for j, kind in enumerate(layout):
            out[:, j] = column(kind, n, rng)
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


def draw_noise_torch(layout: list[str], n: int, generator=None):
    """Noise ``[n, len(layout)]`` float32 drawn with torch, one call per run of equal columns.

    ``torch.randn`` for "normal" runs and ``torch.rand`` for "uniform" runs, in column order (zeros,
    drawing nothing, for "nuisance" runs):
    the same calls, hence the same numbers, as the torch pipeline's ``draw_noise`` for every
    hepgen family (e.g. CFM: randn(n, D) then rand(n, 3); JetGPT: rand, randn, rand).
    """
    import torch

    if "source" in layout:
        raise HepgenError("this export maps source events; give --source FILE")
    parts, i = [], 0
    while i < len(layout):
        j = i
        while j < len(layout) and layout[j] == layout[i]:
            j += 1
        if layout[i] == "nuisance":  # nu, nominal 0; draws nothing (hepgen.nuisance)
            parts.append(torch.zeros(n, j - i))
        else:
            fn = torch.rand if layout[i] == "uniform" else torch.randn
            parts.append(fn(n, j - i, generator=generator))
        i = j
    return torch.cat(parts, dim=1) if parts else torch.zeros(n, 0)


class OnnxPipeline:
    """ONNX Runtime in place of ``hepgen.pipeline.pipeline(run, draw)``: same interface.

    ``draw=None`` uses the export's default weights (posterior means), ``draw=k`` Bayesian
    draw k's weight file. ``draw_noise(n, generator)`` returns the same noise as the torch
    pipeline for the same generator state, ``pipe(noise)`` the same outputs (torch tensors:
    momenta ``[N, 5, 4]``, n_jets ``[N]``, charge ``[N, 2]``) to float32 precision.
    """

    def __init__(self, export_dir: str | os.PathLike, draw: int | None = None, threads: int = 1, device: str = "cpu"):
        self.onnx = OnnxSampler(export_dir, "default" if draw is None else [draw], threads, device)
        self.device = self.onnx.device
        self.draw = draw
        m = self.onnx.manifest
        self.manifest = m
        self.noise_dim = m.noise_dim
        self.noise_layout = list(m.noise_layout)
        physics = m.physics or {}
        per_draw = physics.get("fractions_per_draw") or []
        self.fractions = physics.get("fractions") if draw is None or not per_draw else per_draw[draw]
        # the multiplicities' measured pass rates (exports before they were recorded: none)
        rates = physics.get("pass_rates_per_draw") or []
        self.pass_rates = physics.get("pass_rates", []) if draw is None or not rates else rates[draw]
        self.max_jets = sum(o.startswith("j") for o in m.objects)

    def eval(self):
        return self

    def record(self) -> dict[str, str]:
        """What generated files record about this draw (the process's, from the manifest)."""
        physics = self.manifest.physics or {}
        per_draw = physics.get("record_per_draw") or []
        return dict(physics.get("record", {}) if self.draw is None or not per_draw else per_draw[self.draw])

    def draw_noise(self, n: int, generator=None):
        return draw_noise_torch(self.manifest.noise_layout, n, generator)

    def __call__(self, noise):
        import torch

        outs = self.onnx.run(noise.detach().cpu().numpy())
        tensors = tuple(torch.from_numpy(v) for v in outs.values())
        return tensors if len(tensors) > 1 else tensors[0]


class OnnxRun:
    """A trained run seen through its export folder, for ``hepgen generate --backend onnx``.

    The same interface as :class:`hepgen.runs.Run`: ``path`` (the export folder), ``card`` (the
    run's card, copied into the export), ``epoch``, ``process``, ``family``, ``bayesian``,
    ``maps_samples``, ``data_info``,
    ``ensemble``, ``pipeline(draw)`` and ``record()``; ``device`` picks the execution provider (:func:`providers`).
    """

    def __init__(self, export_dir: str | os.PathLike, threads: int = 1, device: str = "cpu"):
        self.path = Path(export_dir)
        self.device = device
        providers(device)  # a device this onnxruntime cannot use: refused before any work
        self.manifest = load_manifest(self.path)
        if not (self.path / "card.yaml").is_file():
            raise InputError(f"{self.path} has no card.yaml: not an export of a trained run")
        self.card = load_card(self.path / "card.yaml")
        self.process = processes.get(self.card.process.name)
        self.epoch = self.manifest.provenance.get("epoch", "")
        self.bayesian = bool(self.manifest.bayesian)
        self.ensemble = bool(self.manifest.generator.get("ensemble"))  # its draws are members
        self.family = self.manifest.generator.get("family", "?")
        self.threads = threads
        self.data_info = read_data_info(self.path)  # the run's data.json, copied by the export
        self.maps_samples = "source" in self.manifest.noise_layout  # its input is source events (DiDi)

    def pipeline(self, draw: int | None = None, solver: str | None = None, steps: int | None = None) -> OnnxPipeline:
        if solver is not None or steps is not None:
            raise HepgenError("--solver/--steps are fixed in an ONNX export; re-export with hepgen export --solver/--steps")
        n = len(self.manifest.weights["draws"])
        if draw is not None and not 0 <= draw < n:
            raise InputError(f"Bayesian draw {draw} is not in the export {self.path} (it has {n}; re-export with --bayes-samples)")
        return OnnxPipeline(self.path, draw, self.threads, self.device)

    def record(self, solver: str | None = None, steps: int | None = None) -> dict[str, str]:
        gen = self.manifest.generator
        rec = {"generator": f"hepgen {self.family}", "model_family": self.family,
               "run": str(self.manifest.provenance.get("run", "")), "epoch": str(self.epoch),
               "backend": "onnxruntime", "export": str(self.path)}
        return {**rec, **sampler_fields(gen)}
