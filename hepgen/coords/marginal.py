"""The dimuon mass drawn from the training sample's line shape (``process.settings.mass_sampling:
marginal``), a condition of the network instead of one of its columns.

    p(event | n) = p(m | n) p(rest | m, n)

p(m | n) is the training sample's own distribution of the (standardised) dimuon-mass column for
each jet multiplicity n; the network learns the rest of the event given it (c = [one-hot n | m]).
A CFM that learns the narrow Z peak as one of 17 columns leaves percent-level wiggles over the
peak (docs/training.md); drawn like this, the line shape is the training sample's by construction,
as precise as its statistics, and the network still learns every correlation with m.

:class:`MassMarginal` (fitted, in the run's coordinates) holds per multiplicity the edges of
:data:`FINE` equal-count bins of the column and the (weighted) count in each. The counts are not
drawn from as they are: a histogram of the training sample carries its statistical fluctuations
into every generated sample, which at 100 000 generated events from 160 000 training events
makes the m_mumu chi2/ndf against an independent sample about 1.45 where 1 is the floor. They are
smoothed by a log-density spline (:func:`fit_log_spline`), between the sample's 5 % and 99.5 %
quantiles (:data:`SMOOTH_RANGE`; the tails keep their histogram), in a coordinate where the line
shape is flat: given the mass itself at :meth:`MassMarginal.fit` (Z+jets does), the logit of the
Z boson's Breit-Wigner CDF (:class:`~hepgen.coords.dimuon.BreitWignerMass` with
:data:`~hepgen.electroweak.Z_MASS` and :data:`~hepgen.electroweak.Z_WIDTH`), in which the peak
becomes a smooth bump a few units wide; else the column itself. (A Breit-Wigner fitted to the
sample's quartiles is 1.5 times as wide as the Z, its peak is left sharper, and the spline then
shifted the Z peak by +0.03 GeV.) The density is
exp(natural cubic spline), maximum likelihood on the binned counts; its number of knots (at
quantiles of the sample) is chosen by the Akaike criterion among :data:`KNOT_CHOICES`, so a shape
the spline cannot follow gets more knots. (Two-fold cross-validation chose too few for the 1-jet
Z line shape in two of five training splits, a bias an independent sample saw; the Akaike
choice was stable: benchmarks/lineshape_smoothing.py.)

From it :meth:`MassMarginal.table` builds the inverse CDF at :data:`KNOTS` + 1 equally spaced
probabilities, piecewise linear in between (within a bin the density is flat); ``draw=k``
first draws the bin contents from their Dirichlet posterior (counts as for the multiplicity
fractions) and smooths that draw (a Bayesian bootstrap of the fit), so each Bayesian draw
carries the statistical uncertainty of the smoothed line shape. :class:`MassDraw` evaluates a
table inside the exported pipeline: u ~ U[0, 1) and the one-hot multiplicity -> the column
value, with Clip, MatMul and arithmetic only (no Gather). Values beyond the training sample's
smallest and largest mass are never drawn. Runs fitted before the smoothing (no ``knots`` in
their state) keep their histogram line shape.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..electroweak import Z_MASS, Z_WIDTH
from ..errors import InputError
from ..rngstate import derived_seed
from .dimuon import BreitWignerMass

FINE = 4096  # equal-count bins per multiplicity of the fitted line shape (fewer with fewer events)
KNOTS = 256  # equally spaced probabilities of the exported inverse CDF (memory: N x KNOTS per call)
MIN_EVENTS = 100  # a multiplicity's line shape needs at least this many training events
KNOT_CHOICES = (4, 6, 8, 10, 12, 16, 20, 28)  # spline knots tried; the Akaike criterion picks one
MAX_KNOTS = max(KNOT_CHOICES)
KNOT_RANGE = (0.005, 0.995)  # the knots sit at equally spaced quantiles of the smoothed events between these
# the quantiles of each multiplicity's sample between which its line shape is smoothed: below about
# 5 % the Drell-Yan mass has the edge of the generation cut (mhat > 50 GeV) and the photon's rise, which
# a smooth density cannot follow; the histogram stays there and above 99.5 %
SMOOTH_RANGE = (0.05, 0.995)


def _window(fine: int) -> slice:
    """The fine equal-count bins inside :data:`SMOOTH_RANGE`."""
    return slice(round(SMOOTH_RANGE[0] * fine), round(SMOOTH_RANGE[1] * fine))


def _natural_basis(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """``[N, K - 1]``: x and the K - 2 truncated-power terms of a natural cubic spline with ``knots``
    (cubic between knots, linear beyond the outer ones), x scaled to the knot span first."""
    lo, span = knots[0], knots[-1] - knots[0]
    t, k = (x - lo) / span, (knots - lo) / span
    cube = lambda j: (np.clip(t - k[j], 0, None) ** 3 - np.clip(t - k[-1], 0, None) ** 3) / (k[-1] - k[j])  # noqa: E731
    last = cube(len(k) - 2)
    return np.stack([t] + [cube(j) - last for j in range(len(k) - 2)], -1)


def fit_log_spline(counts: np.ndarray, edges: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Maximum-likelihood bin probabilities ``[B]`` of ``counts`` ``[B]`` in bins ``edges`` ``[B + 1]``
    (increasing) under the density exp(natural cubic spline with ``knots``), each bin's content the
    density at its centre times its width. Newton's method on the concave multinomial likelihood."""
    basis = _natural_basis(0.5 * (edges[1:] + edges[:-1]), knots)
    logw, total = np.log(np.maximum(np.diff(edges), 1e-300)), counts.sum()

    def probs(theta):
        e = basis @ theta + logw
        p = np.exp(e - e.max())
        return p / p.sum()

    def loglik(p):
        return float(counts @ np.log(p + 1e-300))

    theta = np.zeros(basis.shape[1])
    p = probs(theta)
    ll = loglik(p)
    for _ in range(100):
        mean = basis.T @ p
        grad = basis.T @ counts - total * mean
        hess = total * ((basis * p[:, None]).T @ basis - np.outer(mean, mean))
        step = np.linalg.solve(hess + 1e-10 * total * np.eye(len(theta)), grad)
        for _ in range(30):  # step halving keeps every step uphill
            q = probs(theta + step)
            new = loglik(q)
            if new >= ll:
                break
            step = step / 2
        else:
            break
        theta, p, gain, ll = theta + step, q, new - ll, new
        if gain < 1e-8 * max(total, 1.0):
            break
    return p


def choose_knots(flat: np.ndarray, w: np.ndarray, edges: np.ndarray) -> np.ndarray | None:
    """The knots (quantiles of ``flat`` ``[N]``) of the spline with the best Akaike information
    criterion, -2 log L + 2 (parameters), among :data:`KNOT_CHOICES`, fitted to the events binned in
    ``edges`` (weights ``w``, counted as effective events). None (no smoothing) where ``edges``
    repeat: an atom of equal values, which no density follows."""
    if np.any(np.diff(edges) <= 0):
        return None
    counts = np.clip(np.histogram(flat, edges, weights=w)[0], 0.0, None) * (w.sum() / np.sum(w**2))
    best, choice = np.inf, None
    for k in KNOT_CHOICES:
        knots = np.unique(np.quantile(flat, np.linspace(*KNOT_RANGE, k)))
        if len(knots) < 3:
            continue
        aic = -2 * float(counts @ np.log(fit_log_spline(counts, edges, knots) + 1e-300)) + 2 * (len(knots) - 1)
        if aic < best:
            best, choice = aic, knots
    return choice


class MassMarginal(nn.Module):
    """Per multiplicity: ``edges`` ``[K, FINE + 1]`` of equal-count bins of the standardised mass
    column, ``counts`` ``[K, FINE]`` (Σw per bin scaled to the effective sample size), the same
    edges in the flat coordinate ``flat_edges`` and the spline's ``knots`` ``[K, MAX_KNOTS]`` (NaN
    padded; all NaN: no smoothing); float64 buffers saved with the coordinates."""

    def __init__(self, k: int, fine: int = FINE):
        super().__init__()
        self.register_buffer("edges", torch.zeros(k, fine + 1, dtype=torch.float64))
        self.register_buffer("counts", torch.zeros(k, fine, dtype=torch.float64))
        self.register_buffer("flat_edges", torch.zeros(k, fine + 1, dtype=torch.float64))
        self.register_buffer("knots", torch.full((k, MAX_KNOTS), float("nan"), dtype=torch.float64))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("flat_edges", "knots"):  # a run fitted before the smoothing: its histogram line shape
            state_dict.setdefault(prefix + name, torch.full_like(getattr(self, name), float("nan")))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def fit(self, s: torch.Tensor, n: np.ndarray, n_values, w: np.ndarray, mass: torch.Tensor | None = None) -> None:
        """``s`` ``[N]`` the standardised column, ``n`` ``[N]`` the multiplicities, ``w`` ``[N]`` the
        event weights (bins with a negative total count as empty), ``mass`` ``[N]`` the dimuon mass
        itself (GeV, increasing with s): the line shape is smoothed in the logit of the Z boson's
        Breit-Wigner CDF; None: in s."""
        flat = s.double().numpy()
        if mass is not None:
            bw = BreitWignerMass(0).set(Z_MASS, Z_WIDTH)
            flat = bw(torch.log(mass.double()).unsqueeze(-1))[0][:, 0].numpy()
        s = s.double().numpy()
        fine = self.counts.shape[1]
        for k, v in enumerate(n_values):
            sel = n == v
            if sel.sum() < MIN_EVENTS:
                raise InputError(f"process.settings.mass_sampling: marginal needs at least {MIN_EVENTS} training "
                                 f"events with {v} jet(s) for their dimuon line shape; there are {int(sel.sum())}")
            edges = np.quantile(s[sel], np.linspace(0.0, 1.0, fine + 1))
            ww = w[sel]
            idx = np.clip(np.searchsorted(edges, s[sel], side="right") - 1, 0, fine - 1)
            per = np.clip(np.bincount(idx, weights=ww, minlength=fine), 0.0, None)
            self.edges[k] = torch.from_numpy(edges)
            self.counts[k] = torch.from_numpy(per * (ww.sum() / np.sum(ww**2)))
            # the same equal-count edges in the flat coordinate (the same order statistics)
            flat_edges = np.maximum.accumulate(np.quantile(flat[sel], np.linspace(0.0, 1.0, fine + 1)))
            self.flat_edges[k] = torch.from_numpy(flat_edges)
            win = _window(fine)
            inside = (flat[sel] >= flat_edges[win.start]) & (flat[sel] <= flat_edges[win.stop])
            knots = choose_knots(flat[sel][inside], ww[inside], flat_edges[win.start:win.stop + 1])
            self.knots[k] = float("nan")
            if knots is not None:
                self.knots[k, :len(knots)] = torch.from_numpy(knots)

    def table(self, seed: int, draw: int | None = None, knots: int = KNOTS) -> np.ndarray:
        """``[K, knots + 1]`` float64: the column's inverse CDF at probabilities j / knots for each
        multiplicity; ``draw=k``: with the bin contents drawn from their Dirichlet posterior
        (seeded by ``seed`` and ``k``), None: the fitted contents."""
        counts = self.counts.numpy()
        if draw is not None:
            rng = np.random.default_rng(derived_seed("mass", seed, draw))
            counts = rng.gamma(np.maximum(counts, 1e-12))  # normalised below: a Dirichlet draw per row
        levels = np.linspace(0.0, 1.0, knots + 1)
        rows = []
        for c, e, fe, kn in zip(counts, self.edges.numpy(), self.flat_edges.numpy(), self.knots.numpy()):
            kn, win = kn[np.isfinite(kn)], _window(len(c))
            if len(kn) >= 3:  # the smoothed line shape of these (or this draw's) counts, same total inside
                c = c.copy()
                c[win] = c[win].sum() * fit_log_spline(c[win], fe[win.start:win.stop + 1], kn)
            cum = np.concatenate([[0.0], np.cumsum(c)])
            rows.append(np.interp(levels, cum / cum[-1], e))
        return np.stack(rows)


class MassDraw(nn.Module):
    """Exportable (u ``[N]`` ~ U[0, 1), one-hot ``[N, K]``) -> the mass column ``[N]``, piecewise
    linear between the ``table`` ``[K, Q + 1]`` values at probabilities j / Q (a float32 buffer:
    each Bayesian draw's weight file carries its own)."""

    def __init__(self, table: np.ndarray):
        super().__init__()
        self.register_buffer("table", torch.tensor(table, dtype=torch.float32))
        self.register_buffer("steps", torch.arange(table.shape[1] - 1, dtype=torch.float32))

    def forward(self, u: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        q = self.table.shape[1] - 1
        # fraction of each probability step [j/Q, (j+1)/Q] below u: 1 for steps below, 0 above
        t = torch.clamp(u.unsqueeze(-1) * q - self.steps.to(u.dtype), 0.0, 1.0)
        table = self.table.to(u.dtype)
        rise = table[:, 1:] - table[:, :-1]  # [K, Q]
        per = t @ rise.transpose(0, 1) + table[:, 0]  # [N, K]: the column for every multiplicity
        return (per * onehot).sum(-1)
