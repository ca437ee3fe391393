"""The toy models of the seed talks: a learned 2-D density and its Bayesian uncertainty.

``toy_ramp``: x1 ~ U[0, 1], x2 with p(x2) = 2 x2 on [0, 1]; its observable is x2.
``toy_ring``: a Gaussian ring of radius 1 and width 0.1 in the plane; its observable is the radius.
Data are made in code (``simulate.events`` events, the card's seed); coordinates are a
standardisation (:class:`hepgen.coords.ToyCoords`); the pipeline maps noise ``[N, D]`` to
x ``[N, 2]`` in the toy's own coordinates. Toys write no event files: after training,
:func:`toy_report` writes ``generated.npz`` (samples of every draw) and ``toy.png`` (density,
truth, Bayesian band) into the run folder. :func:`draw_histograms` samples each of K posterior
draws of a Bayesian generator (the same noise for every draw); the spread over draws per bin is
the training uncertainty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from scipy.stats import norm
from torch import nn

from ..cards import Card
from ..coords import ToyCoords, ToyInverse
from ..errors import HepgenError
from ..modelcards import draws as default_draws
from ..outputs import atomic_output
from ..pipeline import FrozenSampler, pipeline
from .base import AfterTraining, Log, Selection

RING_RADIUS, RING_WIDTH = 1.0, 0.1


class ToyPipeline(nn.Module):
    """noise ``[N, D]`` -> x ``[N, D]`` in the toy's own coordinates."""

    def __init__(self, sampler: FrozenSampler, coords: ToyCoords):
        super().__init__()
        self.sampler = sampler.module
        self.inverse = ToyInverse(coords, torch.float32)
        self.noise_dim = sampler.noise_dim
        self.noise_layout = list(sampler.noise_layout)
        self._draw_model_noise = sampler.draw_noise

    def draw_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self._draw_model_noise(n, generator).float()

    def record(self) -> dict[str, str]:
        return {}

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        c = noise[:, :0]
        return self.inverse(self.sampler(noise, c))


@dataclass
class ToyHistograms:
    """edges ``[B+1]``; density ``[K, B]`` per posterior draw; mean/std ``[B]`` over draws."""

    edges: np.ndarray
    density: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        return self.density.mean(0)

    @property
    def std(self) -> np.ndarray:
        return self.density.std(0, ddof=1) if len(self.density) > 1 else np.zeros(self.density.shape[1])


class ToyProcess:
    """One toy density (``toy_ramp`` or ``toy_ring``)."""

    settings_class = None
    writes_events = False
    observables = None

    def __init__(self, name: str, index: int):
        self.name, self.index = name, index

    # -- truth --------------------------------------------------------------------------------
    def sample_truth(self, n: int, seed: int) -> np.ndarray:
        """``[n, 2]`` float64 toy events, deterministic in (name, n, seed)."""
        rng = np.random.default_rng([seed, self.index])
        if self.name == "toy_ramp":
            return np.stack([rng.uniform(size=n), np.sqrt(rng.uniform(size=n))], axis=-1)
        r = rng.normal(RING_RADIUS, RING_WIDTH, size=n)
        theta = rng.uniform(0.0, 2 * math.pi, size=n)
        return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=-1)

    def density(self, x: np.ndarray) -> np.ndarray:
        """True density at x ``[N, 2]``."""
        if self.name == "toy_ramp":
            inside = (x[:, 0] >= 0) & (x[:, 0] <= 1) & (x[:, 1] >= 0) & (x[:, 1] <= 1)
            return np.where(inside, 2 * x[:, 1], 0.0)
        r = np.hypot(x[:, 0], x[:, 1])
        gauss = np.exp(-0.5 * ((r - RING_RADIUS) / RING_WIDTH) ** 2) / (RING_WIDTH * math.sqrt(2 * math.pi))
        return np.where(r > 0, gauss / (2 * math.pi * np.where(r > 0, r, 1.0)), 0.0)

    def observable(self, x: np.ndarray) -> np.ndarray:
        """The 1-D observable: x2 for the ramp, the radius for the ring."""
        return x[:, 1] if self.name == "toy_ramp" else np.hypot(x[:, 0], x[:, 1])

    def truth_in_bins(self, edges: np.ndarray) -> np.ndarray:
        """Exact density of the observable averaged over each bin."""
        lo, hi = edges[:-1], edges[1:]
        if self.name == "toy_ramp":
            lo_c, hi_c = np.clip(lo, 0, 1), np.clip(hi, 0, 1)
            return (hi_c**2 - lo_c**2) / (hi - lo)
        return (norm.cdf(hi, RING_RADIUS, RING_WIDTH) - norm.cdf(lo, RING_RADIUS, RING_WIDTH)) / (hi - lo)

    def default_edges(self, bins: int = 10) -> np.ndarray:
        return np.linspace(0, 1, bins + 1) if self.name == "toy_ramp" else np.linspace(0.6, 1.4, bins + 1)

    def coverage_edges(self, bins: int = 12) -> np.ndarray:
        """Bins of the coverage test: the ramp's whole support (the lowest of 12 bins holds 0.7 % of the
        events, where the band should grow), the ring's radius where the truth density is > 0.05."""
        return np.linspace(0, 1, bins + 1) if self.name == "toy_ramp" else np.linspace(0.7, 1.3, bins + 1)

    # -- the Process protocol -----------------------------------------------------------------
    def load_data(self, card: Card, log: Log) -> np.ndarray:
        return self.sample_truth(card.simulate.events, card.seed)

    def validation_reference(self, card: Card, log: Log, simulate: bool = True) -> None:
        """The truth is known in closed form (:meth:`truth_in_bins`): no reference file."""
        return None

    def coords(self, card: Card) -> ToyCoords:
        return ToyCoords(2, nuisances=len(card.model.nuisance))

    def pipeline(self, run, sampler: FrozenSampler, draw: int | None) -> ToyPipeline:
        return ToyPipeline(sampler, run.coords)

    def select(self, out, card: Card) -> Selection:
        x = out[0] if isinstance(out, tuple) else out
        return Selection(np.ones(len(x), dtype=bool), {})

    def to_events(self, out, info):
        raise HepgenError(f"the {self.name} toy writes no event files; sample it with hepgen.pipeline.pipeline(run)")

    def export_spec(self, run, pipe, sampler, draw_pipes):
        raise HepgenError(f"the {self.name} toy has no ONNX export; export a process that writes events")

    def after_training(self, run, tools: AfterTraining, log: Log) -> None:
        toy_report(run, log=log)


TOY_RAMP, TOY_RING = ToyProcess("toy_ramp", 0), ToyProcess("toy_ring", 1)
TOYS = {p.name: p for p in (TOY_RAMP, TOY_RING)}


# ------------------------------------------------------------------------------------------
# the after-training report


def sample_toy(run, n: int, draw: int | None, seed: int) -> np.ndarray:
    """``[n, 2]`` toy events from posterior draw ``draw`` (None = means), noise seeded by ``seed``."""
    pipe = pipeline(run, draw)
    noise = pipe.draw_noise(n, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return pipe(noise).double().numpy()


def draw_histograms(run, n: int, draws: int, edges: np.ndarray | None = None, seed: int = 0) -> ToyHistograms:
    toy = TOYS[run.card.process.name]
    edges = toy.default_edges() if edges is None else edges
    which = list(range(draws)) if run.bayesian else [None]
    dens = []
    for d in which:
        obs = toy.observable(sample_toy(run, n, d, seed))
        counts, _ = np.histogram(obs, bins=edges)
        dens.append(counts / (n * np.diff(edges)))
    return ToyHistograms(edges, np.array(dens))


def plot_toy(toy: ToyProcess, h: ToyHistograms, path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = 0.5 * (h.edges[1:] + h.edges[:-1])
    truth = toy.truth_in_bins(h.edges)
    fig, (ax, rx) = plt.subplots(2, 1, figsize=(5, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.stairs(truth, h.edges, label="truth", color="k")
    ax.stairs(h.mean, h.edges, label=f"generated (mean of {len(h.density)} draws)", color="C0")
    ax.fill_between(c, h.mean - h.std, h.mean + h.std, step=None, alpha=0.3, color="C0", label="Bayesian spread (1 sd)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    ax.set_title(title or toy.name)
    safe = np.where(truth > 0, truth, 1.0)
    rx.errorbar(c, h.mean / safe, yerr=h.std / safe, fmt="o", ms=3, color="C0")
    rx.axhline(1.0, color="k", lw=0.8)
    rx.set_ylabel("gen / truth")
    rx.set_xlabel("x2" if toy.name == "toy_ramp" else "radius")
    rx.set_ylim(0.5, 1.5)
    fig.tight_layout()
    with atomic_output(path, force=True) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def toy_report(run, n: int | None = None, draws: int | None = None, log: Callable[[str], None] = print) -> ToyHistograms:
    """generated.npz (samples of every draw) + toy.png (density, truth, Bayesian band) in the run folder."""
    toy = TOYS[run.card.process.name]
    n = n or run.card.generate.events
    draws = draws or default_draws(run.card.model)
    h = draw_histograms(run, n, draws, seed=run.card.seed)
    samples = sample_toy(run, n, None, run.card.seed)
    with atomic_output(run.path / "generated.npz", force=True) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, x=samples, edges=h.edges, density=h.density)
    plot_toy(toy, h, run.path / "toy.png")
    truth = toy.truth_in_bins(h.edges)
    ok = truth > 0
    dev = np.max(np.abs(h.mean[ok] / truth[ok] - 1))
    rel = np.where(h.mean > 0, h.std / np.maximum(h.mean, 1e-300), 0)
    log(f"{toy.name}: max |gen/truth - 1| over bins {dev:.3f}; relative Bayesian spread per bin "
        + " ".join(f"{r:.3f}" for r in rel) + f"; plot {run.path / 'toy.png'}")
    return h
