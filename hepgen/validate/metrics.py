"""Precision metrics: per-histogram agreement, Bayesian-band coverage, cuts, category fractions.

All functions are pure numpy on :class:`~hepgen.validate.histograms.Binned` / ``Band`` or arrays.
A bin is *trusted* when both the reference and the generated histogram hold at least
``min_entries`` raw events in it; the agreement numbers use trusted bins only.
"""

from __future__ import annotations

import math

import numpy as np

from .. import selection
from ..events import EventSample
from .histograms import Band, Binned


def band_pulls(truth: np.ndarray, truth_err: np.ndarray | float, mean: np.ndarray, std: np.ndarray,
               mean_err: np.ndarray | float = 0.0) -> np.ndarray:
    """``(mean - truth) / sqrt(std^2 + truth_err^2 + mean_err^2)`` per bin ``[B]``, NaN where the
    combined error is 0: ``truth_err`` the reference's statistical error (0 for an exact truth),
    ``mean_err`` the band mean's own (the noise the draws share: one draw's error,
    :func:`hepgen.validate.histograms.pooled`), as in :mod:`hepgen.validate.coverage`."""
    sig = np.sqrt(np.asarray(std) ** 2 + np.asarray(truth_err) ** 2 + np.asarray(mean_err) ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sig > 0, (np.asarray(mean) - np.asarray(truth)) / sig, np.nan)


def band_coverage(truth: np.ndarray, truth_err: np.ndarray | float, mean: np.ndarray, std: np.ndarray,
                  mean_err: np.ndarray | float = 0.0) -> tuple[float, float]:
    """(coverage, pull width) of a Bayesian band against a reference, over the :func:`band_pulls`:
    coverage is the fraction of bins with |pull| <= 1 (a calibrated band gives 0.68), pull width
    their standard deviation (1). Arrays ``[B]``; bins with zero combined error are skipped.
    """
    pull = band_pulls(truth, truth_err, mean, std, mean_err)
    pull = pull[np.isfinite(pull)]
    if not pull.size:
        return math.nan, math.nan
    width = float(np.std(pull, ddof=1)) if pull.size > 1 else math.nan
    return float(np.mean(np.abs(pull) <= 1.0)), width


def deviation(ref: Binned, gen: Binned) -> tuple[np.ndarray, np.ndarray]:
    """(|gen/ref - 1|, its statistical error) per bin; NaN where the reference is empty. The error
    is that of the difference, sqrt(gen.error^2 + ref.error^2) / ref.density (the chi2's
    denominator in :func:`compare`): it is evaluated where the two densities agree, so a
    reference bin that fluctuated up does not shrink it."""
    with np.errstate(divide="ignore", invalid="ignore"):
        dev = np.abs(gen.density / ref.density - 1.0)
        sigma = np.sqrt(gen.error**2 + ref.error**2) / ref.density
    return dev, sigma


def compare(ref: Binned, gen: Binned, band: Band | None = None, min_entries: int = 100) -> dict:
    """Agreement of one histogram: max |gen/ref - 1|, chi2/ndf, and band coverage / pull width."""
    ok = (ref.entries >= min_entries) & (gen.entries >= min_entries) & (ref.density > 0)
    out: dict = {"bins_trusted": int(ok.sum())}
    if not ok.any():
        return out | {"max_abs_dev": None, "chi2_ndf": None, "coverage": None, "pull_width": None}
    dev = deviation(ref, gen)[0][ok]
    var = gen.error[ok] ** 2 + ref.error[ok] ** 2
    chi2 = float(np.sum((gen.density[ok] - ref.density[ok]) ** 2 / var))
    out |= {"max_abs_dev": float(dev.max()), "chi2_ndf": chi2 / int(ok.sum()), "ndf": int(ok.sum())}
    if band is not None:
        cov, width = band_coverage(ref.density[ok], ref.error[ok], band.mean[ok], band.std[ok], gen.error[ok])
        out |= {"coverage": cov, "pull_width": width}
    else:
        out |= {"coverage": None, "pull_width": None}
    return out


# the selection's own count of the events it would drop (Z+jets asks it through its process)
cut_violations = selection.cut_violations


def multiplicity_fractions(sample: EventSample, multiplicities=(1, 2, 3), labels: np.ndarray | None = None,
                           keys: dict | None = None) -> dict[str, float]:
    """Weighted fraction of events per category (plus 'other'): per exclusive jet multiplicity by
    default, else per ``labels`` (int ``[N]``) value in ``multiplicities``, named by ``keys``
    ({label: key}; default ``str(label)``)."""
    nj = sample.n_jets if labels is None else labels
    w = sample.weight
    tot = w.sum()
    keys = keys or {}
    out = {keys.get(k, str(k)): float(w[nj == k].sum() / tot) for k in multiplicities}
    out["other"] = float(w[~np.isin(nj, list(multiplicities))].sum() / tot)
    return out


def time_per_event(info: dict) -> float | None:
    """Generation seconds per event from a sample's provenance, when it says so."""
    for key in ("seconds_per_event", "time_per_event_s", "generation_seconds_per_event"):
        if key in info:
            try:
                return float(info[key])
            except ValueError:
                return None
    for key in ("generation_seconds", "generation_time_s", "generate_seconds"):
        n = info.get("events") or info.get("n_events")
        if key in info and n:
            try:
                return float(info[key]) / float(n)
            except (ValueError, ZeroDivisionError):
                return None
    return None
