"""Toy models of the seed talks: the learned density and its Bayesian uncertainty.

``toy_ramp``: the marginal of x2 (truth p(x2) = 2 x2 on [0, 1]); ``toy_ring``: the radius
(truth: Gaussian, R = 1, sigma = 0.1). :func:`draw_histograms` samples each of K posterior
draws of a Bayesian generator (the same noise for every draw) and histograms the observable;
the spread over draws per bin is the training uncertainty. :func:`toy_report` writes
``generated.npz`` and ``toy.png`` into the run folder.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .processes import RING_RADIUS, RING_WIDTH


def observable(name: str, x: np.ndarray) -> np.ndarray:
    """The 1D observable of a toy: x2 for the ramp, the radius for the ring."""
    return x[:, 1] if name == "toy_ramp" else np.hypot(x[:, 0], x[:, 1])


def truth_in_bins(name: str, edges: np.ndarray) -> np.ndarray:
    """Exact probability density averaged over each bin."""
    lo, hi = edges[:-1], edges[1:]
    if name == "toy_ramp":
        lo_c, hi_c = np.clip(lo, 0, 1), np.clip(hi, 0, 1)
        return (hi_c**2 - lo_c**2) / (hi - lo)
    from scipy.stats import norm

    return (norm.cdf(hi, RING_RADIUS, RING_WIDTH) - norm.cdf(lo, RING_RADIUS, RING_WIDTH)) / (hi - lo)


def default_edges(name: str, bins: int = 10) -> np.ndarray:
    return np.linspace(0, 1, bins + 1) if name == "toy_ramp" else np.linspace(0.6, 1.4, bins + 1)


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


def sample_toy(run, n: int, draw: int | None, seed: int) -> np.ndarray:
    """``[n, 2]`` toy events from posterior draw ``draw`` (None = means), noise seeded by ``seed``."""
    from .generate import pipeline

    pipe = pipeline(run, draw)
    noise = pipe.draw_noise(n, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return pipe(noise).double().numpy()


def draw_histograms(run, n: int, draws: int, edges: np.ndarray | None = None, seed: int = 0) -> ToyHistograms:
    name = run.card.process.name
    edges = default_edges(name) if edges is None else edges
    from .nn.bayesian import is_bayesian

    which = list(range(draws)) if is_bayesian(run.model) else [None]
    dens = []
    for d in which:
        obs = observable(name, sample_toy(run, n, d, seed))
        counts, _ = np.histogram(obs, bins=edges)
        dens.append(counts / (n * np.diff(edges)))
    return ToyHistograms(edges, np.array(dens))


def plot_toy(name: str, h: ToyHistograms, path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = 0.5 * (h.edges[1:] + h.edges[:-1])
    truth = truth_in_bins(name, h.edges)
    fig, (ax, rx) = plt.subplots(2, 1, figsize=(5, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.stairs(truth, h.edges, label="truth", color="k")
    ax.stairs(h.mean, h.edges, label=f"generated (mean of {len(h.density)} draws)", color="C0")
    ax.fill_between(c, h.mean - h.std, h.mean + h.std, step=None, alpha=0.3, color="C0", label="Bayesian spread (1 sd)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    ax.set_title(title or name)
    safe = np.where(truth > 0, truth, 1.0)
    rx.errorbar(c, h.mean / safe, yerr=h.std / safe, fmt="o", ms=3, color="C0")
    rx.axhline(1.0, color="k", lw=0.8)
    rx.set_ylabel("gen / truth")
    rx.set_xlabel("x2" if name == "toy_ramp" else "radius")
    rx.set_ylim(0.5, 1.5)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def toy_report(run, n: int | None = None, draws: int | None = None, log: Callable[[str], None] = print) -> ToyHistograms:
    """generated.npz (samples of every draw) + toy.png (density, truth, Bayesian band) in the run folder."""
    name = run.card.process.name
    n = n or run.card.generate.events
    draws = draws or run.card.model.bayes.draws
    h = draw_histograms(run, n, draws, seed=run.card.seed)
    samples = sample_toy(run, n, None, run.card.seed)
    tmp = run.path / f".generated.partial-{os.getpid()}.npz"
    np.savez(tmp, x=samples, edges=h.edges, density=h.density)
    os.replace(tmp, run.path / "generated.npz")
    plot_toy(name, h, run.path / "toy.png")
    truth = truth_in_bins(name, h.edges)
    ok = truth > 0
    dev = np.max(np.abs(h.mean[ok] / truth[ok] - 1))
    rel = np.where(h.mean > 0, h.std / np.maximum(h.mean, 1e-300), 0)
    log(f"{name}: max |gen/truth - 1| over bins {dev:.3f}; relative Bayesian spread per bin "
        + " ".join(f"{r:.3f}" for r in rel) + f"; plot {run.path / 'toy.png'}")
    return h
