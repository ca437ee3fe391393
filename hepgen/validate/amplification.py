"""GANplification: how many truth events a generated sample is worth (arXiv:2008.06545).

Split the truth distribution of an observable into ``n_q`` quantiles (each holds probability
``q = 1/n_q`` under the truth). A sample of n events drawn from the truth puts fractions ``p_j``
into them with ``E[sum_j (p_j - q)^2] = (1 - q) / n``. The quantile MSE of a generated sample,
``MSE = sum_j (p_j - q)^2``, therefore converts into an *equivalent number of truth events*

    n_equiv = (1 - q) / (MSE - (1 - q) / N_gen - (1 - q) / M),

where the two subtracted terms are the noise of the generated sample itself (N_gen events) and,
when the quantile edges come from a finite truth sample of M events instead of the exact
distribution, the noise of those edges (use ``M = inf`` for an exact truth). The amplification
factor is ``n_equiv / n_train``. When the MSE is at the noise floor the sample is
indistinguishable from truth at this resolution (excess below twice the noise of the MSE,
``2 sqrt(2/n_q)`` times the noise floor): ``n_equiv`` is reported as a lower bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Amplification:
    """``mse``: quantile MSE of the generated sample; ``n_equiv``: equivalent truth events (a lower
    bound when ``bounded``); ``amplification``: n_equiv / n_train (None without n_train)."""

    mse: float
    n_equiv: float
    bounded: bool
    n_quantiles: int
    amplification: float | None


def quantile_edges(truth: np.ndarray, n_quantiles: int) -> np.ndarray:
    """Inner quantile edges ``[n_q - 1]`` of a truth sample (finite values only)."""
    t = np.asarray(truth, dtype=np.float64)
    t = t[np.isfinite(t)]
    return np.quantile(t, np.arange(1, n_quantiles) / n_quantiles)


def quantile_mse(sample: np.ndarray, inner_edges: np.ndarray) -> float:
    """``sum_j (p_j - 1/n_q)^2`` of a sample over the quantile cells given by ``inner_edges``."""
    x = np.asarray(sample, dtype=np.float64)
    x = x[np.isfinite(x)]
    n_q = len(inner_edges) + 1
    p = np.bincount(np.searchsorted(inner_edges, x, side="right"), minlength=n_q) / len(x)
    return float(np.sum((p - 1.0 / n_q) ** 2))


def equivalent_events(
    generated: np.ndarray,
    *,
    truth: np.ndarray | None = None,
    truth_cdf=None,
    n_quantiles: int = 20,
    n_train: int | None = None,
) -> Amplification:
    """The amplification of a 1-D generated sample, against a truth sample or an exact CDF.

    ``truth``: float ``[M]`` truth events (quantiles estimated from them), or ``truth_cdf``: a
    callable F(x) of the exact truth (then the generated values are mapped through F and the
    quantiles are exact). ``generated``: float ``[N_gen]``.
    """
    g = np.asarray(generated, dtype=np.float64)
    g = g[np.isfinite(g)]
    q = 1.0 / n_quantiles
    if truth_cdf is not None:
        u = np.asarray(truth_cdf(g), dtype=np.float64)
        mse = quantile_mse(u, np.arange(1, n_quantiles) / n_quantiles)
        m_inv = 0.0
    else:
        edges = quantile_edges(truth, n_quantiles)
        mse = quantile_mse(g, edges)
        m = np.isfinite(np.asarray(truth, dtype=np.float64)).sum()
        m_inv = 1.0 / m
    excess = mse - (1 - q) / len(g) - (1 - q) * m_inv
    floor = (1 - q) * (1.0 / len(g) + m_inv)
    # an excess below twice its own noise (the MSE of a truth-like sample fluctuates by ~ sqrt(2/n_q)
    # of its mean) is not resolved: report the resolution limit as a lower bound
    resolution = 2.0 * floor * math.sqrt(2.0 / n_quantiles)
    bounded = excess <= resolution
    n_equiv = (1 - q) / (resolution if bounded else excess)
    amp = n_equiv / n_train if n_train else None
    return Amplification(mse, float(n_equiv), bool(bounded), n_quantiles, amp)


def zjets_amplification(generated: dict[str, np.ndarray], truth: dict[str, np.ndarray], n_train: int | None,
                        n_quantiles: int = 20) -> dict[str, dict]:
    """Per observable (names shared by both dicts of float ``[N]`` arrays): the amplification."""
    out = {}
    for name in generated:
        if name not in truth:
            continue
        g, t = generated[name], truth[name]
        if np.isfinite(g).sum() < 10 * n_quantiles or np.isfinite(t).sum() < 10 * n_quantiles:
            continue
        a = equivalent_events(g, truth=t, n_quantiles=n_quantiles, n_train=n_train)
        out[name] = {"mse": a.mse, "n_equiv": a.n_equiv, "lower_bound": a.bounded, "amplification": a.amplification}
    return out
