"""Iterative Bayesian unfolding (D'Agostini) of one observable, with pyunfold.

The simulated pairs give, per gen bin ``i`` and reco bin ``j`` (weights ``w`` of the simulation):

* the *gen domain*: events that pass the gen selection with the gen value inside ``bins_gen``;
* the response ``R[j, i] = sum w (gen bin i, reco bin j) / sum w (gen bin i)``: the probability
  that an event of gen bin ``i`` passes the reco selection with its reco value in bin ``j``;
  the efficiency ``eps_i = sum_j R[j, i]``: everything else (failing reco, or reco outside
  ``bins_reco``) is inefficiency;
* the fake fraction ``f_j``: the share of simulated reco events in bin ``j`` outside the gen
  domain (failing the gen selection, or gen value outside ``bins_gen``). The data are corrected
  for them, ``d_j -> d_j (1 - f_j)``, before unfolding.

Then, from the prior ``t^0`` (the simulation's gen histogram unless given),
``t_i^{n+1} = sum_j R[j, i] t_i^n / (eps_i sum_k R[j, k] t_k^n) d_j``: the unfolded counts estimate
the number of data events per gen bin, efficiency-corrected (including the events the reco
selection lost). Errors (pyunfold, Adye's propagation through the iterations): ``stat_error``
from the data's Poisson errors, ``mc_error`` from the finite simulation in the response
(multinomial per gen bin, with the effective number of simulated events ``(sum w)^2 / sum w^2``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..validate.calibration import migration_counts
from ..validate.histograms import bin_index


@dataclass(frozen=True)
class IBUResult:
    """Unfolded counts per gen bin. ``counts``, ``stat_error``, ``mc_error``: float64 ``[B]``;
    ``history``: ``[iterations, B]`` counts after each iteration (the last row is ``counts``);
    ``response`` ``[Br, B]``, ``efficiency`` ``[B]``, ``fake_fraction`` ``[Br]``, ``prior`` ``[B]``
    (normalised): what the simulation gave (see the module docstring)."""

    bins_gen: np.ndarray
    bins_reco: np.ndarray
    counts: np.ndarray
    stat_error: np.ndarray
    mc_error: np.ndarray
    history: np.ndarray
    response: np.ndarray
    efficiency: np.ndarray
    fake_fraction: np.ndarray
    prior: np.ndarray

    @property
    def error(self) -> np.ndarray:
        """Total error ``[B]``: data and simulation statistics in quadrature."""
        return np.hypot(self.stat_error, self.mc_error)


def _edges(bins, name: str) -> np.ndarray:
    e = np.asarray(bins, dtype=np.float64)
    if e.ndim != 1 or len(e) < 2 or not np.isfinite(e).all() or np.any(np.diff(e) <= 0):
        raise InputError(f"ibu: {name} must be at least 2 finite, strictly increasing bin edges")
    return e


def _vector(x, n: int | None, name: str, dtype=np.float64) -> np.ndarray:
    a = np.asarray(x, dtype=dtype)
    if a.ndim != 1 or (n is not None and len(a) != n):
        raise InputError(f"ibu: {name} must be 1-D" + (f" with {n} entries (one per simulated event)" if n else "")
                         + f"; got shape {a.shape}")
    return a


def _weights(w, n: int, name: str) -> np.ndarray:
    w = np.ones(n) if w is None else _vector(w, n, name)
    if not np.isfinite(w).all() or (w < 0).any():
        raise InputError(f"ibu: {name} must be finite and non-negative")
    return w


def _bin_name(edges: np.ndarray, i: int) -> str:
    return f"[{edges[i]:g}, {edges[i + 1]:g})"


def ibu(gen_values, reco_values, pass_gen, pass_reco, data_values, bins_gen, bins_reco, iterations: int = 4,
        *, weights=None, data_weights=None, prior=None) -> IBUResult:
    """Unfold the ``data_values`` (float ``[M]``, reco level) to ``bins_gen``; see the module docstring.

    ``gen_values``, ``reco_values`` float ``[N]`` and ``pass_gen``, ``pass_reco`` bool ``[N]``: the
    simulated pairs (values of events failing a selection are ignored and may be NaN);
    ``weights`` ``[N]`` / ``data_weights`` ``[M]``: event weights (default 1); ``prior`` ``[B]``:
    the starting gen distribution (default: the simulation's). Bad input: one-line InputError."""
    if int(iterations) != iterations or iterations < 1:
        raise InputError(f"ibu: iterations must be a positive integer, got {iterations!r}")
    bg, br = _edges(bins_gen, "bins_gen"), _edges(bins_reco, "bins_reco")
    gen = _vector(gen_values, None, "gen_values")
    n = len(gen)
    reco = _vector(reco_values, n, "reco_values")
    pg, pr = _vector(pass_gen, n, "pass_gen", bool), _vector(pass_reco, n, "pass_reco", bool)
    data = _vector(data_values, None, "data_values")
    w, wd = _weights(weights, n, "weights"), _weights(data_weights, len(data), "data_weights")
    every = np.ones(len(data), bool)
    for name, v, ok in (("gen_values", gen, pg), ("reco_values", reco, pr), ("data_values", data, every)):
        bad = ok & ~np.isfinite(v)
        if bad.any():
            raise InputError(f"ibu: {int(bad.sum())} {name} of events passing the selection are not finite")

    ig = np.where(pg, bin_index(gen, bg), -1)
    ir = np.where(pr, bin_index(reco, br), -1)
    in_gen = ig >= 0
    gen_sum = np.bincount(ig[in_gen], weights=w[in_gen], minlength=len(bg) - 1)
    gen_sum2 = np.bincount(ig[in_gen], weights=w[in_gen] ** 2, minlength=len(bg) - 1)
    for i in np.flatnonzero(gen_sum <= 0):
        raise InputError(f"ibu: gen bin {i} {_bin_name(bg, i)} holds no simulated event passing the gen selection; "
                         "merge or narrow the gen bins")
    counts = migration_counts(np.where(in_gen, gen, np.nan), np.where(ir >= 0, reco, np.nan), bg, br, w)  # [Bg, Br]
    response = (counts / gen_sum[:, None]).T  # [Br, Bg]
    efficiency = response.sum(axis=0)
    for i in np.flatnonzero(efficiency <= 0):
        raise InputError(f"ibu: gen bin {i} {_bin_name(bg, i)}: none of its simulated events is reconstructed "
                         "inside bins_reco (efficiency 0); merge the gen bins or widen bins_reco")
    reco_all = np.bincount(ir[ir >= 0], weights=w[ir >= 0], minlength=len(br) - 1)
    matched = counts.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        fake = np.where(reco_all > 0, 1.0 - matched / reco_all, 0.0)
    jd = bin_index(data, br)
    d = np.bincount(jd[jd >= 0], weights=wd[jd >= 0], minlength=len(br) - 1)
    d_err = np.sqrt(np.bincount(jd[jd >= 0], weights=wd[jd >= 0] ** 2, minlength=len(br) - 1))
    if d.sum() <= 0:
        raise InputError("ibu: no data event falls inside bins_reco")
    for j in np.flatnonzero((d > 0) & (matched <= 0)):
        raise InputError(f"ibu: reco bin {j} {_bin_name(br, j)} holds {d[j]:g} data events but no simulated event "
                         "of the gen domain; merge or narrow the reco bins")
    if prior is None:
        prior = gen_sum / gen_sum.sum()
    else:
        prior = _weights(prior, len(bg) - 1, "prior")
        if prior.sum() <= 0:
            raise InputError("ibu: prior must have a positive sum")
        prior = prior / prior.sum()
    corrected, corrected_err = d * (1.0 - fake), d_err * (1.0 - fake)
    n_eff = gen_sum**2 / gen_sum2
    with np.errstate(divide="ignore", invalid="ignore"):
        response_err = np.sqrt(migration_counts(np.where(in_gen, gen, np.nan), np.where(ir >= 0, reco, np.nan),
                                                bg, br, w**2)).T / gen_sum
    return _unfold(corrected, corrected_err, response, response_err, efficiency, efficiency / np.sqrt(n_eff),
                   prior, int(iterations), bg, br, fake)


def _unfold(data, data_err, response, response_err, efficiency, efficiency_err, prior, iterations, bg, br,
            fake) -> IBUResult:
    from pyunfold import iterative_unfold

    # ts_stopping = 0: run exactly `iterations` iterations (no early stop on the test statistic)
    steps = iterative_unfold(data=data, data_err=data_err, response=response, response_err=response_err,
                             efficiencies=efficiency, efficiencies_err=efficiency_err, prior=prior, ts="ks",
                             ts_stopping=0.0, max_iter=iterations, return_iterations=True)
    history = np.stack([np.asarray(u, dtype=np.float64) for u in steps["unfolded"]])
    last = steps.iloc[-1]
    return IBUResult(bg, br, history[-1], np.asarray(last["stat_err"], dtype=np.float64),
                     np.asarray(last["sys_err"], dtype=np.float64), history, response, efficiency, fake, prior)
