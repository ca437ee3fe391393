"""The export folder's self-description: ``manifest.json`` (and key facts in the ONNX metadata).

Layout of an export folder (``hepgen export RUN -o DIR``)::

    DIR/manifest.json              this description (format FORMAT)
    DIR/generator.onnx             the graph; float32 weights external -> "weights.safetensors"
    DIR/weights.safetensors        default weights (plain model; posterior means if Bayesian)
    DIR/draws/draw_000.safetensors Bayesian posterior draws 0..K-1, same layout as the default
    DIR/noise_layout.txt           one word per noise column: normal | uniform | nuisance (nu, 0 = nominal)
    DIR/weights.txt                the weight files to loop over, one per line (the draws, or
                                   weights.safetensors for a plain model)
    DIR/sofie/generator.hxx        SOFIE C++ (namespace SOFIE_generator) reading any weight file

The tensors of the weight files are listed with their byte ranges, so the folder can be read
without hepgen.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

FORMAT = "hepgen-onnx-export/1"
MANIFEST = "manifest.json"
GRAPH = "generator.onnx"
LOCATION = "weights.safetensors"  # the external-data location the graph names
DRAWS_DIR = "draws"
NOISE_LAYOUT = "noise_layout.txt"
SOFIE_DIR = "sofie"
WEIGHT_LIST = "weights.txt"


@dataclass(frozen=True)
class Port:
    """One graph input or output; ``shape`` excludes the leading (dynamic) batch axis."""

    name: str
    shape: tuple[int, ...]
    description: str
    units: str = ""


def column(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` values of a noise column of layout word ``kind``: N(0, 1), U[0, 1), or 0 for a
    ``"nuisance"`` column (the nominal value of a nuisance parameter, :mod:`hepgen.nuisance`)."""
    if kind == "nuisance":
        return np.zeros(n)
    return rng.standard_normal(n) if kind == "normal" else rng.random(n)


@dataclass(frozen=True)
class GraphSpec:
    """What the generation module computes: its ports and the meaning of its output.

    ``inputs[0]`` is the noise ``[N, noise_dim]`` with ``noise_layout`` (per column "normal"
    or "uniform"), or, for a generator that maps samples, the source events (every column
    "source"; shape the process's, e.g. ``[N, P, 4]``, noise_dim its per-event size); an optional ``inputs[1]`` is a one-hot condition ``[N, C]``. ``outputs[0]``
    is the four-momenta ``[N, len(objects), len(columns)]``; further outputs (multiplicity,
    charges) follow in the module's order.
    """

    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]
    noise_layout: tuple[str, ...]
    objects: tuple[str, ...]
    columns: tuple[str, ...] = ("pt", "eta", "phi", "mass")
    notes: tuple[str, ...] = ()  # what a consumer must know (e.g. a selection to apply)

    def example(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Valid float32 inputs for ``n`` events (noise per layout; one-hot conditions). A
        generator that maps source events (layout ``"source"``) has none to draw: InputError."""
        if "source" in self.noise_layout:
            raise InputError(f"the input {self.inputs[0].name!r} holds source events, which cannot be drawn; "
                             "give source events (hepgen export --source FILE)")
        noise = np.empty((n, len(self.noise_layout)), dtype=np.float32)
        for j, kind in enumerate(self.noise_layout):
            noise[:, j] = column(kind, n, rng)
        feeds = {self.inputs[0].name: noise}
        for port in self.inputs[1:]:
            (c,) = port.shape
            feeds[port.name] = np.eye(c, dtype=np.float32)[rng.integers(0, c, n)]
        return feeds


@dataclass
class ExportManifest:
    """Everything a C++ or Python consumer needs to run the export (see module docstring)."""

    inputs: list[dict]
    outputs: list[dict]
    noise_layout: list[str]  # per noise column: "normal" (N(0,1)) | "uniform" (U[0,1)) | "source" | "nuisance"
    objects: list[str]  # particle order of the output's axis 1
    columns: list[str]  # the output's last axis
    weights: dict  # location, default, draws, tensors
    bayesian: bool
    generator: dict  # family, solver, steps, network summary
    physics: dict  # process, multiplicity fractions with uncertainties, ...
    provenance: dict  # hepgen version, run, card hash, seed, created
    opset: int
    sofie: dict | None
    checks: dict = field(default_factory=dict)  # parity measured at export time
    notes: list[str] = field(default_factory=list)  # what a consumer must know
    format: str = FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"

    @property
    def weight_files(self) -> list[str]:
        """The weight files a consumer iterates over: the draws if Bayesian, else the default."""
        return list(self.weights["draws"]) or [self.weights["default"]]

    @property
    def noise_dim(self) -> int:
        return len(self.noise_layout)


def load_manifest(export_dir: str | Path) -> ExportManifest:
    """Read ``export_dir/manifest.json``; InputError if it is missing or not a hepgen export."""
    path = Path(export_dir) / MANIFEST
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{export_dir} is not a hepgen export folder (no {MANIFEST})") from None
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read {path}: {err}") from None
    if data.get("format") != FORMAT:
        raise InputError(f"{path}: format {data.get('format')!r} is not {FORMAT!r}")
    try:
        return ExportManifest(**data)
    except TypeError as err:
        raise InputError(f"{path}: malformed manifest ({err})") from None
