"""What ``hepgen integrate`` reports about a weighted sample: metrics, unweighting, the log-weight plot.

:func:`method_metrics` (one method's row of ``metrics.json``):

* ``sigma_pb``, ``error_pb``, ``relative_error``: the stratified estimate
  (:func:`hepgen.integrate.samplers.stratified_estimate`);
* ``unweighting_efficiency``, ``unweighting_efficiency_partial``, ``overweight_fraction``,
  ``cut_efficiency``: ``madnis.integrator.unweighting_metrics`` (arXiv:2001.10028: per
  channel, the maximal weight is the median over bootstrap replicas of the sample's maximum,
  the efficiency ``<w> / w_max``, channels combined by their cross sections; ``partial``
  counts over-weights as accepted with probability 1). Its replicas hold ``replicas x N``
  weights, so the replica count is ``min(1000, 2e7 / N)`` (at least 10);
* ``max_weight_efficiency``: ``<w> / max w`` of the whole sample, the acceptance of the
  unweighted sample this command writes;
* ``training_calls``, ``sample_calls``, ``calls``, ``training_seconds``, ``sampling_seconds``.

:func:`unweight`: hit-or-miss against the sample's largest weight (exact: no over-weights),
events of weight 1. :func:`plot_log_weights`: the distribution of ``log10(w / <w>)`` per method.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .samplers import WeightedRun


def method_metrics(run: WeightedRun, channel_count: int) -> dict[str, float]:
    from madnis.integrator import unweighting_metrics

    w = torch.from_numpy(run.weights)
    replicas = int(max(10, min(1000, 2e7 // max(len(w), 1))))
    if channel_count > 1:
        metrics, _ = unweighting_metrics(w, run.channels, channel_count, replica_count=replicas)
    else:
        metrics = unweighting_metrics(w, replica_count=replicas)
    return {
        "sigma_pb": run.sigma,
        "error_pb": run.error,
        "relative_error": run.error / run.sigma if run.sigma else float("nan"),
        "unweighting_efficiency": metrics.uweff_before_cuts,
        "unweighting_efficiency_partial": metrics.uweff_before_cuts_partial,
        "overweight_fraction": metrics.over_weight_rate,
        "cut_efficiency": metrics.cut_eff,
        "max_weight_efficiency": float(run.weights.mean() / run.weights.max()),
        "relative_weight_stddev": float(run.weights.std() / run.weights.mean()),
        "bootstrap_replicas": replicas,
        "training_calls": run.training_calls,
        "sample_calls": run.sample_calls,
        "calls": run.training_calls + run.sample_calls,
        "training_seconds": run.training_seconds,
        "sampling_seconds": run.sampling_seconds,
    }


def unweight(weights: np.ndarray, rng: np.random.Generator, limit: int) -> np.ndarray:
    """Indices of the events kept by hit-or-miss (``P = w / max w``), at most ``limit``, in order."""
    keep = np.flatnonzero(rng.random(len(weights)) * weights.max() < weights)
    return keep[:limit]


def plot_log_weights(runs: list[WeightedRun], path: Path) -> None:
    """``log10(w / <w>)`` per method, normalised, as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    logs = [np.log10(r.weights[r.weights > 0] / r.weights.mean()) for r in runs]
    lo = min(float(np.quantile(x, 1e-4)) for x in logs)
    hi = max(float(x.max()) for x in logs)
    bins = np.linspace(lo, hi + 1e-9, 80)
    for run, x in zip(runs, logs):
        eff = run.weights.mean() / run.weights.max()
        ax.hist(x, bins=bins, histtype="step", density=True, linewidth=1.5,
                label=f"{run.method} ({run.training_calls + run.sample_calls} calls, <w>/max w = {eff:.3f})")
    ax.set_yscale("log")
    ax.set_xlabel(r"$\log_{10}(w / \langle w \rangle)$")
    ax.set_ylabel("normalised events")
    ax.set_title(r"$pp \to \gamma^*/Z \to \mu^+\mu^-$ (LO), event weights")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
