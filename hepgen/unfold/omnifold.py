"""OmniFold: unbinned unfolding by iterated classifier reweighting (arXiv:1911.09107).

The simulation gives N events with a particle-level (gen) and a detector-level (reco) feature
vector and their pass flags; the data are M reco-level events. Each iteration ``n`` has two steps,
every classifier trained through :func:`hepgen.validate.classifier.cross_fit` (``folds`` models,
each trained on the other folds and Platt-calibrated). A weight uses the mean of the fold
models' log ratios (a bagged ensemble); out-of-fold weights make the iterations unstable: the
fold that trains step 2 is not the fold step 1 scored, so the difference between the folds'
weights flips sign each iteration and grows (on the toy of tests/test_unfold_baselines.py the
step-1 AUC fell to 0.42 by iteration 5). The out-of-fold scores give step 1's AUC.

1. *pull* (reco level): a classifier between the data and the simulated reco events weighted by
   ``w nu_{n-1}`` gives ``omega_n = nu_{n-1} r(reco)``, ``r = p_data / p_sim`` scaled so that the
   weighted simulation has the data's total weight.
2. *push* (gen level): a classifier between the simulated gen events weighted by ``w omega_n``
   and by ``w`` gives ``nu_n(gen) = p_{w omega_n} / p_w``, scaled to the total of ``w omega_n``.
   ``nu_0 = 1``: the simulation is the prior.

Events failing one selection (the usual extension of OmniFold to acceptance and fakes, steps
1b and 2b):

* events passing gen but not reco (inefficiency) have no reco features: step 1b gives them
  ``omega_n = nu_{n-1} E[omega_n / nu_{n-1} | gen]``, the average pull of reconstructed events with
  the same gen features (a gen-level classifier between the events passing both selections
  weighted by ``w omega_n`` and by ``w nu_{n-1}``);
* events passing reco but not gen (fakes) have no gen features: step 2b gives them
  ``nu_n = E[nu_n | reco]`` (a reco-level classifier between the events passing both, weighted by
  ``w nu_n`` and by ``w``). In step 1 they stand beside the other simulated reco events, so the
  data's fakes are accounted for;
* events failing both carry no information and keep ``nu = omega = 1``.

The result: ``w nu_n`` per iteration, the particle-level weights of the simulated events; a
histogram of the gen features of events passing gen with these weights estimates the data's
particle-level distribution, normalised to the number of data events (with ``data_weights``) that
pass the gen selection, those lost by the reco selection included. Each log ratio is clipped at
``±max_log_weight``. Same inputs and settings, same weights, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..cardfields import ranged
from ..errors import InputError
from ..validate.classifier import MIN_EVENTS, auc, cross_fit



@dataclass(frozen=True)
class OmniFoldSettings:
    """The classifiers of :func:`omnifold` (a card section: check a mapping with
    ``hepgen.cards.build_section(OmniFoldSettings, data, prefix, src)``). CPU-fast defaults."""

    folds: int = ranged(2, ge=2)  # cross-fitting folds per classifier
    epochs: int = ranged(10, ge=1)
    hidden: int = ranged(64, ge=1)
    layers: int = ranged(3, ge=1)
    max_log_weight: float = ranged(5.0, gt=0)  # each step's log ratio is clipped to +- this
    seed: int = ranged(1, ge=0)


@dataclass(frozen=True)
class OmniFoldResult:
    """Per iteration ``n = 1..I``: ``weights`` float64 ``[I, N]``: ``w nu_n``, the particle-level
    weights of the simulated events (use them with the gen features of events passing gen);
    ``pull`` ``[I, N]``: ``w omega_n``, the reco-level weights of step 1; ``auc_reco`` ``[I]``: the
    out-of-fold AUC of step 1's classifier (data vs the simulation weighted by ``w nu_{n-1}``),
    which tends to 1/2 as the iterations converge; ``prior`` ``[N]``: ``w``."""

    weights: np.ndarray
    pull: np.ndarray
    auc_reco: np.ndarray
    prior: np.ndarray

    @property
    def final(self) -> np.ndarray:
        """``[N]``: the particle-level weights after the last iteration."""
        return self.weights[-1]


def _matrix(a, n: int | None, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or (n is not None and len(a) != n):
        raise InputError(f"omnifold: {name} must be [events, features]" + (f" with {n} events" if n else "")
                         + f"; got shape {a.shape}")
    return a


def _vector(a, n: int, name: str, dtype=np.float64) -> np.ndarray:
    a = np.asarray(a, dtype=dtype)
    if a.shape != (n,):
        raise InputError(f"omnifold: {name} must have shape ({n},); got {a.shape}")
    if dtype is np.float64 and (not np.isfinite(a).all() or (a < 0).any() or a.sum() <= 0):
        raise InputError(f"omnifold: {name} must be finite, non-negative, with a positive sum")
    return a


def _finite_rows(x: np.ndarray, mask: np.ndarray, name: str) -> None:
    bad = mask & ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise InputError(f"omnifold: {int(bad.sum())} events passing the selection have non-finite {name} features")


_STEP_IDS = {"1": 1, "1b": 2, "2": 3, "2b": 4}  # seeds the calibration splits of each classifier


class _Steps:
    """One omnifold call: the features, the fold of every simulated event, the classifier settings."""

    def __init__(self, settings: OmniFoldSettings, n_sim: int, log):
        self.s, self.log = settings, log
        rng = np.random.default_rng([settings.seed, 0])
        self.fold = rng.permutation(np.arange(n_sim) % settings.folds)  # one fold per event, all steps

    def ratio(self, step: str, iteration: int, x1, w1, f1, x0, w0, f0, extra=None):
        """Density ratio ``(w1-weighted x1) / (w0-weighted x0)``, scaled so that the reweighted x0
        rows carry w1's total: on the x0 rows and on the ``extra`` points, each the mean over the
        fold models (see the module docstring); also the out-of-fold AUC."""
        s = self.s
        x = np.concatenate([x1, x0])
        y = np.r_[np.ones(len(x1)), np.zeros(len(x0))]
        w = np.r_[w1, w0]
        rng = np.random.default_rng([s.seed, iteration, _STEP_IDS[step]])
        points = x0 if extra is None else np.concatenate([x0, extra])
        fit = cross_fit(x, y, w, np.r_[f1, f0], rng, epochs=s.epochs, hidden=s.hidden, layers=s.layers,
                        extra=points, progress=self.log, label=f"omnifold: iteration {iteration}, step {step}")
        r = np.exp(np.clip(fit.extra, -s.max_log_weight, s.max_log_weight))
        r *= w1.sum() / np.sum(w0 * r[: len(x0)])
        return r[: len(x0)], (None if extra is None else r[len(x0):]), auc(fit.logit, y, w)


def omnifold(gen, reco, pass_gen, pass_reco, data, iterations: int = 4, settings: OmniFoldSettings | None = None,
             weights=None, data_weights=None, log: Callable[[str], None] | None = None) -> OmniFoldResult:
    """Unfold ``data`` (float ``[M, G]``, reco features of events passing the reco selection)
    with the simulated pairs ``gen`` ``[N, F]``, ``reco`` ``[N, G]`` (rows of a failed selection
    are ignored and may be NaN), ``pass_gen``, ``pass_reco`` bool ``[N]``; ``weights`` ``[N]`` /
    ``data_weights`` ``[M]`` default to 1. ``log(str)`` hears each classifier fold. See the module
    docstring; bad input is a one-line InputError."""
    settings = settings or OmniFoldSettings()
    if int(iterations) != iterations or iterations < 1:
        raise InputError(f"omnifold: iterations must be a positive integer, got {iterations!r}")
    gen = _matrix(gen, None, "gen")
    n = len(gen)
    reco, data = _matrix(reco, n, "reco"), _matrix(data, None, "data")
    if data.shape[1] != reco.shape[1]:
        raise InputError(f"omnifold: data has {data.shape[1]} reco features, the simulation {reco.shape[1]}")
    pg, pr = _vector(pass_gen, n, "pass_gen", bool), _vector(pass_reco, n, "pass_reco", bool)
    w = np.ones(n) if weights is None else _vector(weights, n, "weights")
    wd = np.ones(len(data)) if data_weights is None else _vector(data_weights, len(data), "data_weights")
    _finite_rows(gen, pg, "gen")
    _finite_rows(reco, pr, "reco")
    _finite_rows(data, np.ones(len(data), bool), "data")
    both, miss, fake = pg & pr, pg & ~pr, pr & ~pg
    for name, count in (("data events", len(data)), ("simulated events passing both selections", both.sum())):
        if count < MIN_EVENTS * settings.folds:
            raise InputError(f"omnifold: {int(count)} {name}; need at least {MIN_EVENTS * settings.folds} "
                             f"({MIN_EVENTS} per cross-fitting fold)")

    steps = _Steps(settings, n, log)
    fd = np.random.default_rng([settings.seed, 1]).permutation(np.arange(len(data)) % settings.folds)
    f = steps.fold
    nu = np.ones(n)
    out_w, out_pull, aucs = [], [], []
    for it in range(1, int(iterations) + 1):
        # step 1: data vs simulation at reco level
        omega = np.ones(n)
        r, _, a = steps.ratio("1", it, data, wd, fd, reco[pr], (w * nu)[pr], f[pr])
        omega[pr] = nu[pr] * r
        aucs.append(a)
        if miss.any():  # step 1b: the pull of reconstructed events, carried to the lost ones by their gen features
            _, r_miss, _ = steps.ratio("1b", it, gen[both], (w * omega)[both], f[both], gen[both], (w * nu)[both],
                                       f[both], extra=gen[miss])
            omega[miss] = nu[miss] * r_miss
        # step 2: gen level, pulled weights vs the prior
        nu = np.ones(n)
        r, _, _ = steps.ratio("2", it, gen[pg], (w * omega)[pg], f[pg], gen[pg], w[pg], f[pg])
        nu[pg] = r
        if fake.any():  # step 2b: the push of events passing both, carried to the fakes by their reco features
            _, r_fake, _ = steps.ratio("2b", it, reco[both], (w * nu)[both], f[both], reco[both], w[both], f[both],
                                       extra=reco[fake])
            nu[fake] = r_fake
        out_w.append(w * nu)
        out_pull.append(w * omega)
    return OmniFoldResult(np.stack(out_w), np.stack(out_pull), np.array(aucs), w)
