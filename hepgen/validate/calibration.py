"""Per-event posterior calibration and migration matrices (unfolding, docs/unfolding.md).

An unfolding generator draws K posterior samples of a particle-level observable for each of N
reco-level events. Given the truth of every event (``truth`` float ``[N]``, ``samples`` float
``[N, K]``, finite):

* :func:`ranks` / :func:`rank_histogram`: the rank of the truth among its own K samples. For a
  calibrated posterior the truth is one more draw from it, so every rank 0..K is equally likely;
  too narrow a posterior piles ranks at 0 and K (U shape), a biased one tilts the histogram.
  Ties (discrete observables) are broken at random, seeded.
* :func:`coverage`: the fraction of events whose central interval at level ``l`` contains the
  truth, with binomial errors. The interval is ``[Q((1-l)/2), Q((1+l)/2)]`` with Weibull plotting
  positions (the order statistic at ``p (K+1)``, linearly interpolated): with them a calibrated
  posterior covers at the nominal level for any K (numpy's default quantile covers 61.5% at
  l = 0.68 with K = 20). A level needs ``K >= 2/(1-l) - 1`` samples (0.68: 6, 0.95: 39).
* :func:`migration`: events per (gen bin, reco bin), the matrix normalised per gen bin
  (``P(reco bin | gen bin)`` among events with both values in range), and for a common binning
  the purity and stability.

Plots in the style of :mod:`.plots`: :func:`rank_plot`, :func:`coverage_plot`, :func:`migration_plot`.
Event weights are optional everywhere; errors then use the effective count ``(sum w)^2 / sum w^2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from ..errors import InputError
from .histograms import bin_index
from .plots import GEN_COLOR, _label, plt, save, use_style

DEFAULT_LEVELS = (0.5, 0.68, 0.8, 0.9)


def _weights(weights, n: int) -> np.ndarray:
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise InputError(f"calibration: weights must be {n} finite, non-negative values with a positive sum")
    return w


def _effective_n(w: np.ndarray) -> float:
    return float(w.sum() ** 2 / np.sum(w**2))


def _check(truth, samples) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(truth, dtype=np.float64)
    samples = np.asarray(samples, dtype=np.float64)
    if truth.ndim != 1 or samples.ndim != 2 or samples.shape[0] != truth.shape[0] or not len(truth):
        raise InputError(f"calibration: need truth [N] and samples [N, K] with N > 0; got {truth.shape} and "
                         f"{samples.shape}")
    bad = ~np.isfinite(truth) | ~np.isfinite(samples).all(axis=1)
    if bad.any():
        raise InputError(f"calibration: {int(bad.sum())} of {len(truth)} events have a non-finite truth or sample; "
                         "select the events where the observable is defined in the truth and in every sample")
    return truth, samples


def ranks(truth: np.ndarray, samples: np.ndarray, seed: int = 0) -> np.ndarray:
    """int64 ``[N]`` in ``0..K``: the number of samples below the truth, ties broken uniformly at random."""
    truth, samples = _check(truth, samples)
    below = np.sum(samples < truth[:, None], axis=1)
    ties = np.sum(samples == truth[:, None], axis=1)
    rng = np.random.default_rng(seed)
    return below + np.floor(rng.random(len(truth)) * (ties + 1)).astype(np.int64)


@dataclass(frozen=True)
class RankHistogram:
    """Rank histogram over B groups of the ranks 0..K. ``fraction`` ``[B]``: weighted fraction of
    events; ``expected`` ``[B]``: its value for a calibrated posterior (ranks per group / (K+1));
    ``error`` ``[B]``: the binomial spread of ``fraction`` around ``expected``; ``edges`` ``[B+1]``:
    group boundaries in rank units (group b holds ranks in ``[edges[b], edges[b+1])``); flatness:
    Pearson ``chi2`` with ``ndf = B - 1`` and its ``p_value``."""

    edges: np.ndarray
    fraction: np.ndarray
    expected: np.ndarray
    error: np.ndarray
    chi2: float
    ndf: int
    p_value: float
    samples: int
    n_eff: float


def rank_histogram(truth: np.ndarray, samples: np.ndarray, *, bins: int | None = None, weights=None,
                   seed: int = 0) -> RankHistogram:
    """The rank histogram of :func:`ranks`; ``bins`` groups of ranks (default: one per rank up to
    K = 49, else 20 groups)."""
    truth, samples = _check(truth, samples)
    r = ranks(truth, samples, seed)
    w = _weights(weights, len(r))
    k = samples.shape[1]
    n_bins = bins or (k + 1 if k < 50 else 20)
    if not 2 <= n_bins <= k + 1:
        raise InputError(f"rank histogram: bins={n_bins} must lie in 2..K+1 = {k + 1}")
    group = np.arange(k + 1) * n_bins // (k + 1)  # rank -> group
    expected = np.bincount(group, minlength=n_bins) / (k + 1)
    fraction = np.bincount(group[r], weights=w, minlength=n_bins) / w.sum()
    n_eff = _effective_n(w)
    chi2 = float(n_eff * np.sum((fraction - expected) ** 2 / expected))
    edges = np.r_[np.searchsorted(group, np.arange(n_bins)), k + 1].astype(np.float64)
    return RankHistogram(edges, fraction, expected, np.sqrt(expected * (1 - expected) / n_eff), chi2,
                         n_bins - 1, float(stats.chi2.sf(chi2, n_bins - 1)), k, n_eff)


def central_interval(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) float64 ``[N]``: the central ``level`` interval of each event's K samples, with
    Weibull plotting positions (see the module docstring); InputError if K cannot resolve it."""
    samples = np.asarray(samples, dtype=np.float64)
    k = samples.shape[1]
    if not 0 < level < 1:
        raise InputError(f"coverage: level {level} must lie in (0, 1)")
    if (1 - level) / 2 * (k + 1) < 1:
        need = int(np.ceil(2 / (1 - level) - 1 - 1e-9))
        raise InputError(f"coverage: {k} posterior samples per event cannot resolve a central {level:.0%} interval "
                         f"(need K >= {need})")
    lo, hi = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2], axis=1, method="weibull")
    return lo, hi


@dataclass(frozen=True)
class Coverage:
    """Coverage of central intervals. ``levels``, ``coverage`` (weighted fraction of events whose
    interval holds the truth), ``error`` (its binomial error, from the observed value),
    ``expected_error`` (the spread of a calibrated posterior's coverage, ``sqrt(l (1-l) / n_eff)``),
    ``width`` (the mean interval width): float64 ``[L]`` each."""

    levels: np.ndarray
    coverage: np.ndarray
    error: np.ndarray
    expected_error: np.ndarray
    width: np.ndarray
    n_eff: float

    def pull(self) -> np.ndarray:
        """``(coverage - level) / expected_error`` ``[L]``: |pull| < 3 for a calibrated posterior."""
        return (self.coverage - self.levels) / self.expected_error


def coverage(truth: np.ndarray, samples: np.ndarray, levels=DEFAULT_LEVELS, weights=None) -> Coverage:
    """Coverage of the central intervals at ``levels`` (see :func:`central_interval`)."""
    truth, samples = _check(truth, samples)
    w = _weights(weights, len(truth))
    n_eff = _effective_n(w)
    levels = np.asarray(levels, dtype=np.float64).reshape(-1)
    cov, width = [], []
    for level in levels:
        lo, hi = central_interval(samples, float(level))
        cov.append(np.sum(w * ((truth >= lo) & (truth <= hi))) / w.sum())
        width.append(np.average(hi - lo, weights=w))
    c = np.array(cov)
    return Coverage(levels, c, np.sqrt(np.clip(c * (1 - c), 1.0 / n_eff, None) / n_eff),
                    np.sqrt(levels * (1 - levels) / n_eff), np.array(width), n_eff)


@dataclass(frozen=True)
class Migration:
    """``counts`` ``[Bg, Br]``: weighted events per (gen bin, reco bin), both values in range;
    ``matrix``: counts normalised per gen bin (rows sum to 1; NaN rows where a gen bin is empty);
    ``purity`` / ``stability`` ``[B]`` (common binning only, else None): the fraction of a reco
    bin's events generated in the same bin, and of a gen bin's events reconstructed in it."""

    bins_gen: np.ndarray
    bins_reco: np.ndarray
    counts: np.ndarray
    matrix: np.ndarray
    purity: np.ndarray | None
    stability: np.ndarray | None


def migration_counts(gen: np.ndarray, reco: np.ndarray, bins_gen, bins_reco, weights=None) -> np.ndarray:
    """float64 ``[Bg, Br]``: summed weights of events per (gen bin, reco bin); events with either
    value outside its bins (or NaN) are not counted."""
    ig, ir = bin_index(gen, bins_gen), bin_index(reco, bins_reco)
    w = np.ones(len(ig)) if weights is None else np.asarray(weights, dtype=np.float64)
    ok = (ig >= 0) & (ir >= 0)
    nr = len(bins_reco) - 1
    flat = np.bincount(ig[ok] * nr + ir[ok], weights=w[ok], minlength=(len(bins_gen) - 1) * nr)
    return flat.reshape(len(bins_gen) - 1, nr)


def migration(gen: np.ndarray, reco: np.ndarray, bins_gen, bins_reco=None, weights=None) -> Migration:
    """The migration matrix of paired values (``gen``, ``reco`` float ``[N]``; NaN = not
    reconstructed / not generated); ``bins_reco`` defaults to ``bins_gen``."""
    bins_gen = np.asarray(bins_gen, dtype=np.float64)
    bins_reco = bins_gen if bins_reco is None else np.asarray(bins_reco, dtype=np.float64)
    counts = migration_counts(gen, reco, bins_gen, bins_reco, weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        matrix = counts / counts.sum(axis=1, keepdims=True)
        same = bins_gen.shape == bins_reco.shape and bool(np.all(bins_gen == bins_reco))
        purity = np.diag(counts) / counts.sum(axis=0) if same else None
        stability = np.diag(matrix).copy() if same else None
    return Migration(bins_gen, bins_reco, counts, matrix, purity, stability)


# ----------------------------------------------------------------------------------- figures


def rank_plot(stem: Path, hists: dict[str, RankHistogram], *, style: str = "CMS") -> list[Path]:
    """Rank histograms (fraction per rank group / expected) with the calibrated expectation and
    its ±1σ binomial band; one line per label."""
    use_style(style)
    fig, ax = plt.subplots(figsize=(8, 7))
    first = next(iter(hists.values()))
    e = first.edges
    ax.fill_between(e, np.r_[1 - first.error / first.expected, 1 - first.error[-1] / first.expected[-1]],
                    np.r_[1 + first.error / first.expected, 1 + first.error[-1] / first.expected[-1]],
                    step="post", color="lightgrey", lw=0, label="calibrated, ±1σ")
    ax.axhline(1.0, color="black", lw=1)
    top = 1.0
    for label, h in hists.items():
        y = h.fraction / h.expected
        ax.stairs(y, h.edges, lw=2, label=f"{label} (χ²/ndf = {h.chi2:.0f}/{h.ndf})")
        top = max(top, float(y.max()))
    ax.set_xlabel(f"rank of the truth among K = {first.samples} samples")
    ax.set_ylabel("fraction / expected")
    ax.set_xlim(e[0], e[-1])
    ax.set_ylim(0, top * 1.6)
    ax.legend(loc="upper right", fontsize="small", frameon=False)
    _label(ax, style)
    fig.subplots_adjust(left=0.16, right=0.95, top=0.92, bottom=0.12)
    return save(fig, stem)


def coverage_plot(stem: Path, results: dict[str, Coverage], *, style: str = "CMS") -> list[Path]:
    """Observed coverage against the nominal level (the diagonal: calibrated), binomial errors."""
    use_style(style)
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="nominal (calibrated posterior)")
    for label, c in results.items():
        ax.errorbar(c.levels, c.coverage, yerr=c.error, fmt="o-", ms=4, label=label)
    ax.set_xlabel("nominal level of the central interval")
    ax.set_ylabel("fraction of events covered")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.25)
    ax.legend(loc="upper left", fontsize="small", frameon=False)
    _label(ax, style)
    fig.subplots_adjust(left=0.16, right=0.95, top=0.92, bottom=0.12)
    return save(fig, stem)


def migration_plot(stem: Path, m: Migration, xlabel: str, *, style: str = "CMS") -> list[Path]:
    """The migration matrix (``P(reco bin | gen bin)``, gen on x, reco on y), with its values."""
    use_style(style)
    fig, ax = plt.subplots(figsize=(9, 7.5), layout="constrained")
    mesh = ax.pcolormesh(m.bins_gen, m.bins_reco, m.matrix.T, cmap="viridis", vmin=0, vmax=1)
    fig.colorbar(mesh, ax=ax, label="P(reco bin | gen bin)")
    cg, cr = 0.5 * (m.bins_gen[1:] + m.bins_gen[:-1]), 0.5 * (m.bins_reco[1:] + m.bins_reco[:-1])
    if m.matrix.size <= 400:
        for i, j in zip(*np.nonzero(m.matrix >= 0.005)):
            ax.text(cg[i], cr[j], f"{m.matrix[i, j]:.2f}", ha="center", va="center", fontsize=9,
                    color="white" if m.matrix[i, j] < 0.5 else "black")
    ax.set_xlabel(f"particle level {xlabel}")
    ax.set_ylabel(f"reco level {xlabel}")
    ax.plot(m.bins_gen[[0, -1]], m.bins_gen[[0, -1]], color=GEN_COLOR, lw=1, ls="--")
    _label(ax, style)
    return save(fig, stem)
