"""Classifier two-sample test and DCTR weights.

Per category k of the process's split (Z+jets: the exclusive jet multiplicity; a process without
one: all events, :func:`hepgen.processes.base.categories_of`), an MLP learns to separate reference
(label 1) from generated (label 0) events on standardised physics features (:data:`FEATURES`:
muons and jets, :func:`features`, or the named observables alone, :func:`observable_features`).
With balanced classes a calibrated output D gives the density ratio
``w(x) = D/(1-D) = p_ref(x|k) / p_gen(x|k)``; the full ratio multiplies the category-fraction
ratio ``f_ref(k) / f_gen(k)``.

Honesty by construction:

* cross-fitting: events are split into ``folds`` fixed (seeded) folds; the model that scores a
  fold never saw it. Each model trains on 80% of the other folds and is calibrated (Platt scaling
  of the logit) on the remaining 20%. So every event gets an out-of-sample, calibrated D.
* the AUC is computed on those out-of-fold scores; its spread over ``runs`` trainings (new fold
  assignment and initialisation) is reported, and so is the width of the AUC's null
  distribution for the sample sizes, ``sqrt((n1 + n2 + 1) / (12 n1 n2))`` (Mann-Whitney).

:func:`cross_fit` is that training on arrays (cross-fitted, Platt-calibrated logits); the
two-sample test and OmniFold (:mod:`hepgen.unfold.omnifold`) both train through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import kinematics as kin
from .. import observables
from ..events import EventSample
from ..optim import adam
from .histograms import effective_size

MIN_EVENTS = 50  # per class and multiplicity; fewer -> the multiplicity is not tested


def features(sample: EventSample, n_jets: int, extra=("m_mumu",), pairs: bool = True,
             jet_pt_min: float = 20.0) -> tuple[np.ndarray, list[str]]:
    """Classifier inputs for events with exactly ``n_jets`` jets: float64 ``[N, F]`` and names.

    Objects: log pT/GeV (jets: log((pT - jet_pt_min)/GeV), clipped at 0.01 GeV), eta, phi relative to the leading muon (the global azimuth carries no
    information), jets also log(1 + m/GeV); then log of the GeV-valued ``extra`` observables
    (others as they are), then the dR of every jet pair and jet-muon pair. Call on a sample
    that holds only ``n_jets``-jet events.
    """
    mu = sample.padded("Muon", 2)
    jet = sample.padded("Jet", max(n_jets, 1))[:, :n_jets]
    cols, names = [], []
    phi0 = mu[:, 0, 2]
    for tag, arr, n in (("mu", mu, 2), ("j", jet, n_jets)):
        for i in range(n):
            if tag == "j":  # log(pT - pT_min) resolves the region just above the jet threshold
                cols.append(np.log(np.clip(arr[:, i, 0] - jet_pt_min, 1e-2, None)))
            else:
                cols.append(np.log(arr[:, i, 0]))
            cols.append(arr[:, i, 1])
            names += [f"logpt_{tag}{i + 1}", f"eta_{tag}{i + 1}"]
            if not (tag == "mu" and i == 0):
                cols.append(kin.delta_phi(arr[:, i, 2], phi0))
                names.append(f"dphi_{tag}{i + 1}_mu1")
            if tag == "j":
                cols.append(np.log1p(np.clip(arr[:, i, 3], 0, None)))
                names.append(f"logm_{tag}{i + 1}")
    x_extra, extra_names = observable_features(sample, extra)
    cols += list(x_extra.T)
    names += extra_names
    if pairs:
        objs = [f"j{i}" for i in range(1, n_jets + 1)]
        pair_names = [f"dR_{a}{b}" for i, a in enumerate(objs) for b in objs[i + 1:]]
        pair_names += [f"dR_{m}{j}" for m in ("mu1", "mu2") for j in objs]
        vals = observables.compute(sample, pair_names)
        for n in pair_names:
            cols.append(vals[n])
            names.append(n)
    x = np.stack(cols, axis=1) if cols else np.zeros((len(sample), 0))
    return x, names


def observable_features(sample: EventSample, names=()) -> tuple[np.ndarray, list[str]]:
    """The named observables as classifier inputs: float64 ``[N, F]`` and names; GeV-valued ones as
    their log (``log_<name>``, clipped at 1e-3 GeV), the others as they are."""
    cols, out = [], []
    for name in names:
        v = observables.compute(sample, [name])[name]
        if observables.get(name).unit == "GeV":
            v = np.log(np.clip(v, 1e-3, None))
            name = "log_" + name
        cols.append(v)
        out.append(name)
    return (np.stack(cols, axis=1) if cols else np.zeros((len(sample), 0))), out


def _muons_and_jets(sample: EventSample, extra, pairs: bool, jet_pt_min: float):
    return features(sample, int(sample.n_jets.max(initial=0)), extra, pairs, jet_pt_min)


def _observables_only(sample: EventSample, extra, pairs: bool, jet_pt_min: float):
    return observable_features(sample, extra)


# the classifier's input recipes, by the name an observable set gives (classifier.objects):
# fn(sample of one category, extra observables, pairs, jet_pt_min) -> (x [N, F], names)
FEATURES = {"muons_and_jets": _muons_and_jets, "none": _observables_only}


def auc(score: np.ndarray, label: np.ndarray, weight: np.ndarray | None = None) -> float:
    """Weighted ROC AUC = P(score_ref > score_gen) (+1/2 for ties); label 1 = reference."""
    score = np.asarray(score, dtype=np.float64)
    label = np.asarray(label).astype(bool)
    w = np.ones(len(score)) if weight is None else np.asarray(weight, dtype=np.float64)
    order = np.argsort(score, kind="mergesort")
    s, lab, ww = score[order], label[order], w[order]
    # group ties
    uniq, start = np.unique(s, return_index=True)
    wpos = np.add.reduceat(np.where(lab, ww, 0.0), start)
    wneg = np.add.reduceat(np.where(~lab, ww, 0.0), start)
    neg_below = np.cumsum(wneg) - wneg
    num = np.sum(wpos * (neg_below + 0.5 * wneg))
    return float(num / (wpos.sum() * wneg.sum()))


def null_auc_sigma(n_ref: float, n_gen: float) -> float:
    """Standard deviation of the AUC when both samples come from one density (Mann-Whitney)."""
    return float(np.sqrt((n_ref + n_gen + 1) / (12.0 * n_ref * n_gen)))


@dataclass
class MultiplicityResult:
    n_jets: int
    n_ref: int
    n_gen: int
    auc_runs: list[float]
    null_sigma: float
    calibration: tuple[np.ndarray, np.ndarray, np.ndarray]  # mean D, ref fraction, error

    @property
    def auc(self) -> float:
        return float(np.mean(self.auc_runs))

    @property
    def auc_std(self) -> float:
        return float(np.std(self.auc_runs, ddof=1)) if len(self.auc_runs) > 1 else 0.0


@dataclass
class ClassifierResult:
    """Out-of-fold results. ``logw_ref`` / ``logw_gen``: float64 ``[N]``, log of the full density
    ratio p_ref/p_gen per event (averaged over runs); NaN where the multiplicity was not tested.
    ``logw_unseen``: the same for the test's ``unseen`` events (scored by every fold model, none of
    which saw them), None when none were given."""

    per_multiplicity: dict[int, MultiplicityResult]
    auc_total_runs: list[float]
    null_sigma_total: float
    logw_ref: np.ndarray
    logw_gen: np.ndarray
    fractions_ref: dict[int, float] = field(default_factory=dict)
    fractions_gen: dict[int, float] = field(default_factory=dict)
    logw_unseen: np.ndarray | None = None

    @property
    def auc_total(self) -> float:
        return float(np.mean(self.auc_total_runs)) if self.auc_total_runs else float("nan")

    @property
    def auc_total_std(self) -> float:
        r = self.auc_total_runs
        return float(np.std(r, ddof=1)) if len(r) > 1 else 0.0


def _mlp(n_in: int, hidden: int, layers: int):
    import torch

    mods, d = [], n_in
    for _ in range(layers):
        mods += [torch.nn.Linear(d, hidden), torch.nn.SiLU()]
        d = hidden
    mods.append(torch.nn.Linear(d, 1))
    return torch.nn.Sequential(*mods)


def _fit(x, y, w, x_val, seed: int, epochs: int, hidden: int, layers: int, batch: int = 512):
    """Train an MLP with weighted BCE; return logits for ``x_val`` (float64 [M])."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small MLP: one thread is fastest and immune to oversubscription
    try:
        return _fit_inner(torch, x, y, w, x_val, seed, epochs, hidden, layers, batch)
    finally:
        torch.set_num_threads(threads)


def _fit_inner(torch, x, y, w, x_val, seed, epochs, hidden, layers, batch):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = _mlp(x.shape[1], hidden, layers).double()
    opt = adam(net.parameters(), lr=2e-3, weight_decay=1e-5)
    steps = epochs * max(1, int(np.ceil(len(x) / batch)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    xt, yt, wt = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(w)
    loss_fn = torch.nn.BCEWithLogitsLoss(reduction="none")
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            loss = (loss_fn(net(xt[idx]).squeeze(-1), yt[idx]) * wt[idx]).sum() / wt[idx].sum()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.no_grad():
        return [net(torch.from_numpy(v)).squeeze(-1).numpy() for v in x_val]


def _platt(logit: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Fit D = sigmoid(a * logit + b) by weighted log-likelihood on the calibration split."""
    from scipy.optimize import minimize

    def nll(p):
        z = p[0] * logit + p[1]
        # log(1 + e^-z) for y=1, log(1 + e^z) for y=0
        return np.sum(w * np.where(y > 0.5, np.logaddexp(0, -z), np.logaddexp(0, z))) / w.sum()

    res = minimize(nll, x0=np.array([1.0, 0.0]), method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-10})
    return float(res.x[0]), float(res.x[1])


def _balanced(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weights rescaled so both classes carry the same total weight (mean 1)."""
    out = w.astype(np.float64).copy()
    for c in (0, 1):
        m = y == c
        if m.any():
            out[m] *= 0.5 * len(w) / out[m].sum()
    return out


def _calibration_points(d: np.ndarray, y: np.ndarray, w: np.ndarray, bins: int = 10):
    edges = np.unique(np.quantile(d, np.linspace(0, 1, bins + 1)))
    idx = np.clip(np.searchsorted(edges, d, side="right") - 1, 0, len(edges) - 2)
    mean_d, frac, err = [], [], []
    for b in range(len(edges) - 1):
        m = idx == b
        if m.sum() < 2:
            continue
        ww = w[m]
        if effective_size(ww) == 0:
            continue
        f = np.sum(ww * y[m]) / ww.sum()
        mean_d.append(np.average(d[m], weights=ww))
        frac.append(f)
        err.append(np.sqrt(max(f * (1 - f), 1e-12) / effective_size(ww)))
    return np.array(mean_d), np.array(frac), np.array(err)


def _run_mean(a: np.ndarray) -> np.ndarray:
    """Mean over runs (axis 0) ignoring NaN; NaN where every run is NaN (no warning)."""
    ok = np.isfinite(a)
    n = ok.sum(axis=0)
    s = np.where(ok, a, 0.0).sum(axis=0)
    return np.where(n > 0, s / np.maximum(n, 1), np.nan)


@dataclass(frozen=True)
class CrossFit:
    """Calibrated classifier logits. ``logit``: float64 ``[N]``, out of fold (each event scored by
    the model that never saw its fold); ``extra``: float64 ``[M]`` on points outside the training
    set, the mean over the fold models (None when no extra points were given)."""

    logit: np.ndarray
    extra: np.ndarray | None = None


def cross_fit(x: np.ndarray, y: np.ndarray, w: np.ndarray, fold: np.ndarray, rng: np.random.Generator, *,
              epochs: int, hidden: int, layers: int, extra: np.ndarray | None = None, progress=None,
              label: str = "classifier") -> CrossFit:
    """The one classifier training: cross-fitted, Platt-calibrated logits ``log p1(x)/p0(x)``.

    x: float64 ``[N, F]`` (finite); y: ``[N]`` labels 1 / 0; w: ``[N]`` event weights (both classes
    are rescaled to equal total weight, so the logit is the ratio of *normalised* densities);
    fold: int ``[N]`` in ``0..folds-1`` (rows sharing a fold are never scored by a model that saw
    them: give the copies of one event one fold); rng: draws the calibration splits and seeds.
    Per fold, the model trains on 80% of the other folds and is calibrated on the remaining 20%;
    features are standardised on the training split. ``progress(str)`` is called per fold."""
    folds = int(fold.max()) + 1
    w = _balanced(y, w)
    logit = np.zeros(len(x))
    extra_sum = None if extra is None else np.zeros(len(extra))
    for f in range(folds):
        if progress:
            progress(f"{label}, fold {f + 1}/{folds}")
        test = fold == f
        rest = np.flatnonzero(~test)
        rest = rest[rng.permutation(len(rest))]
        n_cal = max(1, len(rest) // 5)
        cal, train = rest[:n_cal], rest[n_cal:]
        mu, sd = x[train].mean(axis=0), x[train].std(axis=0) + 1e-9
        z = (x - mu) / sd
        points = [z[cal], z[test]] + ([] if extra is None else [(extra - mu) / sd])
        l_cal, l_test, *l_extra = _fit(z[train], y[train], _balanced(y[train], w[train]), points,
                                       seed=int(rng.integers(2**31)), epochs=epochs, hidden=hidden, layers=layers)
        a, b = _platt(l_cal, y[cal], w[cal])
        logit[test] = a * l_test + b
        if extra_sum is not None:
            extra_sum += a * l_extra[0] + b
    return CrossFit(logit, None if extra_sum is None else extra_sum / folds)


def two_sample_test(
    reference: EventSample,
    generated: EventSample,
    *,
    multiplicities=(1, 2, 3),
    labels: tuple[np.ndarray, np.ndarray] | None = None,
    objects: str = "muons_and_jets",
    extra=("m_mumu",),
    pairs: bool = True,
    runs: int = 3,
    folds: int = 3,
    epochs: int = 30,
    hidden: int = 64,
    layers: int = 3,
    seed: int = 1,
    jet_pt_min: float = 20.0,
    progress=None,
    unseen: EventSample | None = None,
    unseen_labels: np.ndarray | None = None,
) -> ClassifierResult:
    """Run the classifier test; see the module docstring. ``progress``: callable(str) per training.

    ``unseen``: further events of the generated density (category ``unseen_labels``, default their
    jet multiplicity) that no classifier trains on; each gets the mean logit of the fold models
    of its category (``logw_unseen``, with the fractions of the test's two samples), so DCTR
    weights can be had for more events than the classifier learned from.

    ``labels``: the category of every reference and generated event (int ``[N]`` each; default:
    the jet multiplicity); ``multiplicities``: the categories tested, each on its own; ``objects``:
    the input recipe (a key of :data:`FEATURES`) with the ``extra`` observables and jet ``pairs``."""
    nj_ref, nj_gen = (reference.n_jets, generated.n_jets) if labels is None else labels
    make_features = FEATURES[objects]
    wr, wg = reference.weight, generated.weight
    frac_ref = {k: float(wr[nj_ref == k].sum() / wr.sum()) for k in multiplicities}
    frac_gen = {k: float(wg[nj_gen == k].sum() / wg.sum()) for k in multiplicities}
    logw_ref_runs = np.full((runs, len(reference)), np.nan)
    logw_gen_runs = np.full((runs, len(generated)), np.nan)
    if unseen is not None and unseen_labels is None:
        unseen_labels = unseen.n_jets
    logw_unseen_runs = None if unseen is None else np.full((runs, len(unseen)), np.nan)
    per: dict[int, MultiplicityResult] = {}
    for k in multiplicities:
        mr, mg = nj_ref == k, nj_gen == k
        if mr.sum() < MIN_EVENTS or mg.sum() < MIN_EVENTS or not (wr[mr].sum() > 0 and wg[mg].sum() > 0):
            continue  # too few events, or (negative weights) no positive total weight to normalise
        xr, _ = make_features(reference.select(mr), extra, pairs, jet_pt_min)
        xg, _ = make_features(generated.select(mg), extra, pairs, jet_pt_min)
        x = np.concatenate([xr, xg])
        y = np.concatenate([np.ones(len(xr)), np.zeros(len(xg))])
        w = np.concatenate([wr[mr], wg[mg]])
        finite = np.isfinite(x).all(axis=1)
        x = np.where(np.isfinite(x), x, 0.0)
        wb = _balanced(y, w * finite)
        xu = None
        if unseen is not None and (mu := unseen_labels == k).any():
            xu, _ = make_features(unseen.select(mu), extra, pairs, jet_pt_min)
            finite_u = np.isfinite(xu).all(axis=1)
            xu = np.where(np.isfinite(xu), xu, 0.0)
        aucs, cal_d, cal_y, cal_w = [], [], [], []
        for r in range(runs):
            rng = np.random.default_rng([seed, k, r])
            fold = rng.permutation(np.arange(len(x)) % folds)
            fit = cross_fit(x, y, w * finite, fold, rng, epochs=epochs, hidden=hidden, layers=layers, progress=progress,
                            label=f"classifier: {k} jet(s), run {r + 1}/{runs}", extra=xu)
            logit = fit.logit
            with np.errstate(over="ignore"):  # a classifier that separates perfectly: exp overflows, D = 0 exactly
                d = 1.0 / (1.0 + np.exp(-logit))
            aucs.append(auc(logit, y, wb))
            cal_d.append(d), cal_y.append(y), cal_w.append(wb)
            shift = np.log(frac_ref[k] / frac_gen[k])
            lw = logit + shift
            lw = np.where(finite, lw, np.nan)
            logw_ref_runs[r, np.flatnonzero(mr)] = lw[: len(xr)]
            logw_gen_runs[r, np.flatnonzero(mg)] = lw[len(xr):]
            if xu is not None:
                logw_unseen_runs[r, np.flatnonzero(mu)] = np.where(finite_u, fit.extra + shift, np.nan)
        per[k] = MultiplicityResult(
            k, int(mr.sum()), int(mg.sum()), aucs,
            null_auc_sigma(effective_size(wr[mr]), effective_size(wg[mg])),
            _calibration_points(np.concatenate(cal_d), np.concatenate(cal_y), np.concatenate(cal_w)),
        )
    # pooled over multiplicities: score = log of the full ratio (multiplicity fractions included)
    total = []
    tested_r = np.isfinite(logw_ref_runs[0])
    tested_g = np.isfinite(logw_gen_runs[0])
    for r in range(runs if per else 0):
        s = np.concatenate([logw_ref_runs[r, tested_r], logw_gen_runs[r, tested_g]])
        y = np.concatenate([np.ones(tested_r.sum()), np.zeros(tested_g.sum())])
        w = np.concatenate([wr[tested_r], wg[tested_g]])
        total.append(auc(s, y, w))
    return ClassifierResult(
        per_multiplicity=per,
        auc_total_runs=total,
        null_sigma_total=null_auc_sigma(effective_size(wr[tested_r]), effective_size(wg[tested_g])) if per else float("nan"),
        logw_ref=_run_mean(logw_ref_runs),
        logw_gen=_run_mean(logw_gen_runs),
        fractions_ref=frac_ref,
        fractions_gen=frac_gen,
        logw_unseen=None if logw_unseen_runs is None else _run_mean(logw_unseen_runs),
    )
