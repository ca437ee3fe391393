"""Statistical and systematic bands of a nuisance-conditioned run, and its check against a reweighted
reference (docs/systematics.md).

:func:`bands` generates ``events`` events of the run through its pipeline (the same noise for
every setting, kept by the process's selection) and histograms named observables:

* ``nominal`` ``[B]``: every nuisance at 0, weight means (an ensemble: its members pooled,
  :func:`pooled_draws`);
* ``stat`` ``[B]``: the standard deviation over the Bayesian draws (or ensemble members) at nu = 0,
  zeros for a plain run: the training (statistical) uncertainty;
* ``syst_up`` / ``syst_down`` ``[B]`` (>= 0): per nuisance the histogram at the end of its
  variation (:func:`variation_ends`: +-1 for ``psweight``, the range's ends for ``parametric``)
  minus the nominal, the positive and negative shifts of each added in quadrature over the
  nuisances: the systematic uncertainty;
* ``total_up`` / ``total_down``: stat and syst in quadrature.

All histograms are densities normalised to unit area (shape bands; the weight changes the rate
by <w(nu)> on top). :func:`ratio_chi2` compares gen(nu) / gen(0) with the ratio of a reference sample
reweighted by w(x; nu) (:mod:`hepgen.nuisance`) over the unweighted one, bin by bin; :func:`plot_bands`
draws the three bands.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import observables
from ..events import EventSample
from ..nuisance import event_slopes, setting, weight
from ..outputs import atomic_output
from ..pipeline import pipeline


@dataclass
class Bands:
    """One observable's histograms (densities ``[B]``) and bands; see the module docstring."""

    name: str
    edges: np.ndarray
    nominal: np.ndarray
    stat: np.ndarray
    syst_up: np.ndarray
    syst_down: np.ndarray

    @property
    def total_up(self) -> np.ndarray:
        return np.hypot(self.stat, self.syst_up)

    @property
    def total_down(self) -> np.ndarray:
        return np.hypot(self.stat, self.syst_down)


def variation_ends(nus) -> list[tuple[str, float]]:
    """(name, nu) of the systematic band: +-1 (clipped to the range) for psweight, the range's ends
    for parametric."""
    out = []
    for n in nus:
        lo, hi = n.range
        ends = (max(lo, -1.0), min(hi, 1.0)) if n.kind == "psweight" else (lo, hi)
        out += [(n.name, float(v)) for v in ends]
    return out


def pooled_draws(run, draw: int | None) -> list[int | None]:
    """The draws whose events make up draw ``draw``'s sample: ``draw`` itself, except draw None of a
    repulsive ensemble, which is the ensemble's prediction: every member, each on an equal share of
    the noise rows (the mixture of the members; an ensemble has no weight mean, and its member 0
    alone carries one member's training noise)."""
    if draw is None and run.ensemble:
        return list(range(len(run.model.members)))
    return [draw]


def _generated(run, values: dict, events: int, seed: int, draw: int | None) -> tuple[EventSample, np.ndarray]:
    """Every one of the ``events`` noise rows' events (before the selection) and the selection's keep
    mask; the rows are split in equal consecutive blocks over :func:`pooled_draws`, so two settings
    with the same seed pair row by row, member by member."""
    pipes = [pipeline(run, d) for d in pooled_draws(run, draw)]
    noise = pipes[0].draw_noise(events, torch.Generator().manual_seed(seed))
    noise = setting(run.card.model.nuisance, values).fill(noise, pipes[0].noise_layout, torch.Generator().manual_seed(seed + 1))
    parts = []
    with torch.no_grad():
        for pipe, rows in zip(pipes, torch.tensor_split(noise, len(pipes))):
            out = pipe(rows)
            parts.append(out if isinstance(out, tuple) else (out,))
    out = tuple(torch.cat(columns) for columns in zip(*parts))
    sel = run.process.select(tuple(t.double().numpy() for t in out), run.card)
    return run.process.to_events(out), sel.keep


def sample_at(run, values: dict, events: int, seed: int, draw: int | None = None) -> EventSample:
    """``events`` events of ``run`` (Bayesian ``draw``; None: the weight means, or an ensemble's
    pooled members) with the nuisances at ``values`` (name -> value or "prior"), the noise seeded by
    ``seed``, after the selection."""
    sample, keep = _generated(run, values, events, seed, draw)
    return sample.select(np.flatnonzero(keep))


def observed_at(run, values: dict, names: list[str], events: int, seed: int, draw: int | None = None,
                cache: dict | None = None) -> dict[str, np.ndarray]:
    """The observables ``names`` ``[events]`` of :func:`sample_at`'s noise rows, one per row and NaN
    for an event the selection drops, so two settings' arrays pair row by row (the same noise); with
    ``cache`` (a dict kept between calls on the same run) each setting is generated once."""
    key = (tuple(sorted(values.items())), tuple(names), events, seed, draw)
    if cache is None or key not in cache:
        sample, keep = _generated(run, values, events, seed, draw)
        found = {k: np.where(keep, v, np.nan) for k, v in observables.compute(sample, names).items()}
        if cache is None:
            return found
        cache[key] = found
    return cache[key]


def _density(values: np.ndarray, edges: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    ok = np.isfinite(values)
    h = np.histogram(values[ok], edges, weights=None if w is None else w[ok])[0].astype(np.float64)
    return h / max(h.sum(), 1e-300)


def bands(run, names: list[str], edges: dict[str, np.ndarray], events: int, draws: int = 0, seed: int = 1,
          cache: dict | None = None) -> list[Bands]:
    """The :class:`Bands` of each observable in ``names`` (binning ``edges[name]``) from ``events``
    events per setting; ``draws`` Bayesian draws for the statistical band (0: none); ``cache``: as
    :func:`observed_at`'s (shared with :func:`ratio_chi2s`, the nominal and the ends are made once)."""
    def hists(values: dict, draw: int | None = None):
        obs = observed_at(run, values, names, events, seed, draw, cache)
        return {n: _density(obs[n], edges[n]) for n in names}

    nominal = hists({})
    per_draw = [hists({}, k) for k in range(draws)]
    shifts = [hists({name: v}) for name, v in variation_ends(run.card.model.nuisance)]
    out = []
    for n in names:
        stat = np.std([d[n] for d in per_draw], axis=0, ddof=1) if draws > 1 else np.zeros_like(nominal[n])
        d = np.array([s[n] - nominal[n] for s in shifts]).reshape(-1, len(nominal[n]))
        up = np.sqrt(np.sum(np.clip(d, 0, None) ** 2, axis=0))
        down = np.sqrt(np.sum(np.clip(-d, 0, None) ** 2, axis=0))
        out.append(Bands(n, edges[n], nominal[n], stat, up, down))
    return out


def reweighted_ratio(values: np.ndarray, w: np.ndarray, edges: np.ndarray,
                     variance: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ratio, variance, counts) ``[B]`` of the normalised histogram of ``values`` ``[N]`` weighted by
    ``w`` over the unweighted one: per bin the mean weight over the overall mean, r = (S_b / N_b) /
    (S / N). The variance is the delta method's over the events (each event enters S_b, N_b, S, N):
    var r / r^2 = Q_b / S_b^2 - 1 / N_b + 2 (S_b / (N_b S) - Q_b / (S_b S)) + Q / S^2 - 1 / N, with Q
    the sums of w^2; the last two terms, the overall mean weight's own noise, are common to all bins.
    ``variance`` ``[B]``: the weights' variance per bin from more events of the same simulation
    (:func:`pooled_variance`), Q_b = N_b (variance + (S_b / N_b)^2) in place of the bin's own sum:
    with heavy-tailed weights (Pythia's FSR up) a bin of a few hundred events often lacks the rare
    large weights that carry a share of its mean, its mean comes out low and its own spread
    understates the error.
    Non-finite values are left out; empty bins give NaN."""
    ok = np.isfinite(values)
    v, w = values[ok], w[ok]
    n_b, s_b, q_b = (np.histogram(v, edges, weights=ww)[0].astype(np.float64) for ww in (None, w, w**2))
    if variance is not None:
        q_b = pooled_square_sums(n_b, s_b, variance)
    n, s, q = float(len(w)), float(w.sum()), float((w**2).sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (s_b / n_b) / (s / n)
        rel = q_b / s_b**2 - 1 / n_b + 2 * (s_b / (n_b * s) - q_b / (s_b * s)) + q / s**2 - 1 / n
        return r, r**2 * np.clip(rel, 0.0, None), n_b


def pooled_square_sums(n_b: np.ndarray, s_b: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """The bins' sums of w^2 ``[B]`` implied by the weights' pooled variance per bin
    (:func:`pooled_variance`), Q_b = N_b (variance + (S_b / N_b)^2), from the bins' event counts
    N_b and sums of weights S_b; NaN for empty bins."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return n_b * (np.asarray(variance, dtype=np.float64) + (s_b / n_b) ** 2)


def pooled_variance(pairs, edges: np.ndarray) -> np.ndarray:
    """The weights' variance per bin ``[B]`` over all events of ``pairs`` ((values ``[N]``, w ``[N]``)
    of several samples of one simulation, the same weights); NaN for empty bins."""
    n_b, s_b, q_b = (np.zeros(len(edges) - 1) for _ in range(3))
    for values, w in pairs:
        ok = np.isfinite(values)
        n_b += np.histogram(values[ok], edges)[0]
        s_b += np.histogram(values[ok], edges, weights=w[ok])[0]
        q_b += np.histogram(values[ok], edges, weights=w[ok] ** 2)[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        return q_b / n_b - (s_b / n_b) ** 2


def weighted_observables(card, sample: EventSample, fixed, names: list[str]) -> tuple[dict, np.ndarray]:
    """(observables ``names`` of ``sample``, its w(x; nu) ``[N]``) for the card's nuisances at the
    :class:`~hepgen.nuisance.Setting` ``fixed`` (a value None, drawn from the prior, counts as 0)."""
    nu = torch.tensor([[0.0 if v is None else float(v) for v in fixed.values]], dtype=torch.float64)
    w = weight(torch.from_numpy(event_slopes(card, sample)), nu.expand(len(sample), -1)).numpy()
    return observables.compute(sample, names), w


def paired_ratio(v1: np.ndarray, v0: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ratio, variance, counts of v0) ``[B]`` of the normalised histogram of ``v1`` over that of ``v0``,
    two ``[N]`` arrays from the same N noise rows (NaN or outside the edges: in no bin), r_b = (A_b / T1)
    / (C_b / T0). The variance is the delta method's over the rows, which are independent while each
    row's two values are not: var log r_b = sum_i u_i^2 with u_i = 1[v1_i in b] / A_b - 1[v1_i in
    range] / T1 - 1[v0_i in b] / C_b + 1[v0_i in range] / T0 (0 for v1 = v0; for unrelated v1 and v0
    about 1 / A_b + 1 / C_b, the independent counts' Poisson error). Empty bins give NaN."""
    def bins(v):
        inside = np.isfinite(v) & (v >= edges[0]) & (v <= edges[-1])
        b = np.clip(np.searchsorted(edges, np.where(inside, v, edges[0]), side="right") - 1, 0, len(edges) - 2)
        return np.where(inside, b, -1), inside

    b1, in1 = bins(np.asarray(v1, dtype=np.float64))
    b0, in0 = bins(np.asarray(v0, dtype=np.float64))
    t1, t0 = max(in1.sum(), 1), max(in0.sum(), 1)
    ratio, var, counts = (np.full(len(edges) - 1, np.nan) for _ in range(3))
    for b in range(len(edges) - 1):
        e1, e0 = b1 == b, b0 == b
        a, c = e1.sum(), e0.sum()
        counts[b] = c
        if a == 0 or c == 0:
            continue
        u = e1 / a - in1 / t1 - e0 / c + in0 / t0
        ratio[b] = (a / t1) / (c / t0)
        var[b] = ratio[b] ** 2 * float(np.sum(u * u))
    return ratio, var, counts


def ratio_chi2(run, reference: EventSample, name: str, edges: np.ndarray, values: dict, events: int,
               seed: int = 1) -> dict:
    """chi2 / ndf of gen(nu) / gen(0) against reference(nu) / reference(0) for observable ``name``
    (bins with >= 10 reference events); :func:`ratio_chi2s` for one observable."""
    return ratio_chi2s(run, reference, {name: edges}, values, events, seed)[0]


def ratio_chi2s(run, reference: EventSample, edges: dict, values: dict, events: int, seed: int = 1,
                cache: dict | None = None, draw: int | None = None, pool: EventSample | None = None) -> list[dict]:
    """:func:`ratio_chi2` for every observable of ``edges`` (name -> bin edges), from one pair of
    generated samples. Both generated histograms come from the same noise; the reference ratio is
    the reference reweighted by w(x; nu) (its own events' slopes) over itself. Errors: the generated
    ratio's over its noise rows, each row giving a pair of events (:func:`paired_ratio`: the shared
    noise cancels; an earlier version counted the two histograms as independent, which overstated the
    error and understated chi2); the reference ratio's is that of a ratio of mean weights, which it
    is (:func:`reweighted_ratio`). (Counting the reference's two histograms as independent, as an earlier
    version did, inflates that error several times for a weight that varies slowly across a bin, and
    makes chi2 / ndf <= 2 nearly automatic.) ``cache``: as :func:`observed_at`'s, so the nominal
    sample is generated once over calls. ``draw``: the Bayesian draw or ensemble member to check
    (None: the weight means, or an ensemble's pooled members). ``pool``: more events of the
    reference's simulation, for the weights' variance per bin (:func:`pooled_variance`)."""
    nus = run.card.model.nuisance
    fixed = setting(nus, values)
    names = list(edges)
    gen0, gen1 = (observed_at(run, v, names, events, seed, draw, cache) for v in ({}, values))
    obs, ws = zip(*(weighted_observables(run.card, s, fixed, names)
                    for s in (reference,) + ((pool,) if pool is not None else ())))
    ref, w = obs[0], ws[0]
    out = []
    for name in names:
        rg, var_rg, _ = paired_ratio(gen1[name], gen0[name], edges[name])
        var = None if pool is None else pooled_variance([(o[name], ww) for o, ww in zip(obs, ws)], edges[name])
        rr, var_rr, r0 = reweighted_ratio(ref[name], w, edges[name], var)
        ok = (r0 >= 10) & np.isfinite(rg)
        with np.errstate(divide="ignore", invalid="ignore"):  # empty bins are left out (ok)
            chi2 = float(np.sum(((rg - rr) ** 2 / (var_rg + var_rr))[ok]))
        ndf = int(ok.sum())
        out.append({"observable": name, "nuisance": fixed.record(), "chi2": chi2, "ndf": ndf,
                    "chi2_ndf": chi2 / max(ndf, 1), "gen_ratio": rg.tolist(), "ref_ratio": rr.tolist()})
    return out


def weighted_ratio_chi2s(card, sample: EventSample, reference: EventSample, edges: dict, values: dict,
                         pool: EventSample | None = None, simulated: bool = False) -> list[dict]:
    """chi2 / ndf per observable of ``edges`` of two samples that carry their own weight variations:
    ``sample`` (e.g. generated events with learned PSWeight, ``hepgen variations``) weighted by
    w(x; nu) over itself against ``reference`` the same way, both for the nuisances of ``card``'s
    ``model.nuisance`` at ``values``. Errors: :func:`reweighted_ratio`'s of both; bins as in
    :func:`ratio_chi2s` (>= 10 reference events). ``pool``: more events of the reference's
    simulation; the reference's error then takes the weights' variance per bin from both
    (:func:`pooled_variance`), and so does ``sample``'s with ``simulated`` (it is the same
    simulation's events and weights, not a generator's with learned, smooth ones). The records as
    :func:`ratio_chi2s`'s."""
    fixed = setting(card.model.nuisance, values)
    names = list(edges)
    obs, ws = zip(*(weighted_observables(card, s, fixed, names)
                    for s in (sample, reference) + ((pool,) if pool is not None else ())))
    out = []
    for n in names:
        var = None if pool is None else pooled_variance([(obs[i][n], ws[i]) for i in (1, 2)], edges[n])
        rg, vg, _ = reweighted_ratio(obs[0][n], ws[0], edges[n], var if simulated else None)
        rr, vr, c = reweighted_ratio(obs[1][n], ws[1], edges[n], var)
        ok = (c >= 10) & np.isfinite(rg) & np.isfinite(rr)
        with np.errstate(divide="ignore", invalid="ignore"):
            chi2 = float(np.sum(((rg - rr) ** 2 / (vg + vr))[ok]))
        ndf = int(ok.sum())
        out.append({"observable": n, "nuisance": fixed.record(), "chi2": chi2, "ndf": ndf,
                    "chi2_ndf": chi2 / max(ndf, 1), "gen_ratio": rg.tolist(), "ref_ratio": rr.tolist()})
    return out


def training_floor(run, reference: EventSample, edges: dict, values: dict, log=lambda _m: None) -> dict[str, float]:
    """chi2 / ndf per observable of the run's own TRAINING events reweighted by w(x; nu) over themselves
    against the reference's same ratio (both errors :func:`reweighted_ratio`'s; bins as in
    :func:`ratio_chi2s`): what a generator that learned its training sample exactly would score, the
    floor set by the training statistics. ``values``: fixed values only."""
    nus = run.card.model.nuisance
    fixed = setting(nus, values)
    data = run.process.load_data(run.card, log)
    with np.load(run.path / "split.npz") as parts:
        train = data.select(parts["train"])
    names = list(edges)
    out = {}
    ratios = []
    for sample in (train, reference):
        obs, w = weighted_observables(run.card, sample, fixed, names)
        ratios.append({n: reweighted_ratio(obs[n], w, edges[n]) for n in names})
    for n in names:
        (r1, v1, c1), (r0, v0, c0) = ratios[0][n], ratios[1][n]
        ok = (c0 >= 10) & (c1 >= 10)
        diff2, var = ((r1 - r0) ** 2)[ok], (v1 + v0)[ok]
        terms = np.divide(diff2, var, out=np.zeros_like(diff2), where=var > 0)  # w = 1 (nu = 0): both ratios 1, no error
        out[n] = float(terms.sum() / max(int(ok.sum()), 1))
    return out


def plot_bands(all_bands: list[Bands], path: Path) -> Path:
    """One row per observable: the nominal density with the statistical, systematic and combined
    bands (top) and the bands relative to the nominal (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(all_bands), figsize=(4.5 * len(all_bands), 6), squeeze=False,
                             gridspec_kw={"height_ratios": [2, 1]}, sharex="col")
    for j, b in enumerate(all_bands):
        top, low = axes[0, j], axes[1, j]
        nom = np.where(b.nominal > 0, b.nominal, np.nan)
        for lo, hi, color, label in ((b.total_down, b.total_up, "0.8", "stat + syst"),
                                     (b.syst_down, b.syst_up, "tab:orange", "syst (nuisance)"),
                                     (b.stat, b.stat, "tab:blue", "stat (Bayesian draws)")):
            top.stairs(b.nominal + hi, b.edges, baseline=b.nominal - lo, fill=True, color=color, alpha=0.6, label=label)
            low.stairs(1 + hi / nom, b.edges, baseline=1 - lo / nom, fill=True, color=color, alpha=0.6)
        top.stairs(b.nominal, b.edges, color="k", label="nominal (nu = 0)")
        top.set_yscale("log")
        low.set_xlabel(observables.get(b.name).axis_label)
        low.set_ylabel("band / nominal")
        if j == 0:
            top.legend(fontsize=8)
    fig.tight_layout()
    with atomic_output(path, force=True) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
