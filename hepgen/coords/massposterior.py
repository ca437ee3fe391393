"""The dimuon mass as its analytic posterior quantile (``process.settings.mass_posterior: analytic``).

In the unfolding coordinates (:mod:`hepgen.coords.unfold`) the particle-level dimuon mass is a
residual from the reco mass. Its posterior is narrow and moves fast with the reco mass: near the
Z pole the Breit-Wigner pulls it towards M, a few widths away it sits on the reco mass. A network
that smooths this in the condition direction mixes neighbouring posteriors and widens the peak
(the unfolded Z peak's interquartile range comes out 2-4 % wide, docs/unfolding.md).

Here the column is instead the quantile of the particle-level mass under an analytic posterior,
per event, in y = log m0:

    p(y | reco) ∝ prior(y) N(y_reco; y, s),   s = the core width of y - y_reco in a table over the
                                               reco muons' |eta| (larger, smaller) and the leading pT
    prior(y)    = Breit-Wigner in m^2 (mass M, width G) + a constant below and above the pole,
                  fitted to the training pairs' particle level,

mixed with :data:`BROAD` of a Cauchy of :data:`BROAD_SCALE` resolutions, so an event far off
(a tail of the detector, a prior that misses) keeps a finite column. The posterior is tabulated in
t = (y - y_reco) / s on fixed cell edges (:data:`EDGES`: fine cells within 5 resolutions, coarse
ones out to 1000) as a piecewise-constant density, so its CDF F and the inverse are exact
piecewise-linear maps: the column is logit F(t) / (pi / sqrt 3), about N(0, 1) and about independent
of the reco event when the analytic posterior is right. The network learns what it is not.

Exportable (float32, inside the unfolding graph): compares, Relu, Exp, Log, MatMul, sums.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .zjets import categorical_onehot

FINE = 5.0  # fine cells within +-5 resolutions
FINE_CELLS = 80
OUTER = (7.0, 10.0, 15.0, 25.0, 40.0, 70.0, 1000.0)  # coarse cell edges beyond, in resolutions
EDGES = tuple([-e for e in reversed(OUTER)] + np.linspace(-FINE, FINE, FINE_CELLS + 1).tolist() + list(OUTER))
BROAD, BROAD_SCALE = 0.02, 5.0  # the share and scale (resolutions) of the Cauchy mixed in
LOGISTIC = math.pi / math.sqrt(3.0)  # std of the logistic: logit F / LOGISTIC has unit variance
ETA_EDGES = (0.5, 1.0, 1.5, 2.0)  # reco |eta| cells of the resolution table (each muon)
PT_EDGES = (60.0, 120.0)  # reco leading-muon pT cells (GeV)
MIN_CELL = 200  # a table cell needs this many pairs, else it takes the whole sample's width
WINDOW = 0.3  # the prior is fitted to the particle-level log m0 within +-WINDOW of log M
LOG_CONSTANT_MIN, LOG_CONSTANT_MAX = -30.0, 5.0  # bounds of the log of the two constants beside the peak (fit_prior)
U_FLOOR = 1e-6  # F is kept in [U_FLOOR, 1 - U_FLOOR]: a finite logit


def _onehot(v: torch.Tensor, edges: tuple[float, ...]) -> torch.Tensor:
    e = torch.tensor((-1e30,) + edges + (1e30,), dtype=v.dtype)
    return categorical_onehot(v, e)


def _unit_clamp(a: torch.Tensor) -> torch.Tensor:
    return torch.relu(a) - torch.relu(a - 1.0)


def _larger(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.where(a > b, a, b), torch.where(a > b, b, a)


class MassPosterior(nn.Module):
    """Fitted analytic posterior of the particle-level log m0 given the reco muons (module docstring)."""

    def __init__(self):
        super().__init__()
        edges = torch.tensor(EDGES, dtype=torch.float64)
        self.register_buffer("edges", edges)
        cauchy = torch.atan(edges / BROAD_SCALE) / math.pi
        self.register_buffer("broad", cauchy[1:] - cauchy[:-1])
        self.broad[0] += cauchy[0] + 0.5  # the Cauchy's mass beyond the outermost edges goes to the end cells
        self.broad[-1] += 0.5 - cauchy[-1]
        k = len(EDGES) - 1
        # c @ before: the mass below cell k. float32 (0 and 1 are exact): a float64 initializer cast in the
        # graph is not declared by SOFIE's C++ (the small buffers are folded into float32 constants)
        self.register_buffer("before", torch.triu(torch.ones(k, k, dtype=torch.float32), diagonal=1))
        self.register_buffer("width", torch.full((len(ETA_EDGES) + 1, len(ETA_EDGES) + 1, len(PT_EDGES) + 1), 0.01,
                                                 dtype=torch.float64))
        # prior: Breit-Wigner mass, width (GeV) and the constant densities in y below / above the pole
        self.register_buffer("prior", torch.tensor([91.19, 2.5, 0.1, 0.1], dtype=torch.float64))

    # -- fit ------------------------------------------------------------------------------------
    @torch.no_grad()
    def fit(self, y_part: torch.Tensor, y_reco: torch.Tensor, p_reco: torch.Tensor) -> "MassPosterior":
        """Fit the resolution table on the pairs' y_part - y_reco and the prior on y_part
        (``[N]`` log m0 of the particle-level and the reco muons; ``p_reco`` ``[N, >=2, 4]`` the reco muons)."""
        y_part, p_reco = y_part.double(), p_reco.double()
        d = (y_part - y_reco.double()).numpy()
        cells = self._cells(p_reco).numpy()
        table = np.full(self.width.shape, _core(d))
        for idx in np.ndindex(*self.width.shape):
            flat = np.ravel_multi_index(idx, self.width.shape)
            sel = cells == flat
            if sel.sum() >= MIN_CELL:
                table[idx] = _core(d[sel])
        self.width.copy_(torch.from_numpy(table))
        self.prior.copy_(fit_prior(y_part))
        return self

    def _cells(self, p: torch.Tensor) -> torch.Tensor:
        """Flat table cell index ``[N]`` (long) of the reco muons: for the fit only."""
        hi, lo = _larger(p[:, 0, 1].abs(), p[:, 1, 1].abs())
        i = torch.bucketize(hi, torch.tensor(ETA_EDGES, dtype=hi.dtype), right=True)
        j = torch.bucketize(lo, torch.tensor(ETA_EDGES, dtype=hi.dtype), right=True)
        k = torch.bucketize(p[:, 0, 0].contiguous(), torch.tensor(PT_EDGES, dtype=hi.dtype), right=True)
        n1, n2 = self.width.shape[1], self.width.shape[2]
        return (i * n1 + j) * n2 + k

    # -- per event --------------------------------------------------------------------------------
    def resolution(self, p: torch.Tensor) -> torch.Tensor:
        """The reco muons' (p ``[N, >=2, 4]``) resolution of log m0, ``[N]`` in p's dtype (exportable lookup)."""
        larger, smaller = _larger(p[:, 0, 1].abs(), p[:, 1, 1].abs())
        hi, lo = _onehot(larger, ETA_EDGES), _onehot(smaller, ETA_EDGES)
        pt = _onehot(p[:, 0, 0], PT_EDGES)
        w = self.width.to(p.dtype)
        rows = (hi.unsqueeze(-1).unsqueeze(-1) * w).sum(1)  # [N, lo, pt]
        return ((rows * lo.unsqueeze(-1)).sum(1) * pt).sum(-1)

    def cell_masses(self, y_reco: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """``[N, K]``: the posterior's mass in each cell of t (sums to 1 per event)."""
        dt = self.edges.to(y_reco.dtype)
        mid = 0.5 * (dt[1:] + dt[:-1])
        width = dt[1:] - dt[:-1]
        y = y_reco.unsqueeze(-1) + s.unsqueeze(-1) * mid
        q = self.prior_density(y) * torch.exp(-0.5 * mid * mid) * width
        q = q / q.sum(-1, keepdim=True)
        return (1 - BROAD) * q + BROAD * self.broad.to(y_reco.dtype)

    def prior_density(self, y: torch.Tensor) -> torch.Tensor:
        """The fitted prior density in y = log m0 (:func:`line_shape`)."""
        return line_shape(y, self.prior)

    def cdf(self, t: torch.Tensor, masses: torch.Tensor) -> torch.Tensor:
        """F(t) ``[N]`` for t ``[N]`` and the cell masses ``[N, K]``."""
        e = self.edges.to(t.dtype)
        frac = _unit_clamp((t.unsqueeze(-1) - e[:-1]) / (e[1:] - e[:-1]))
        return (masses * frac).sum(-1)

    def quantile(self, u: torch.Tensor, masses: torch.Tensor) -> torch.Tensor:
        """t ``[N]`` with F(t) = u: the exact inverse of :meth:`cdf` (every cell's mass is > 0)."""
        e = self.edges.to(u.dtype)
        below = masses @ self.before.to(u.dtype)
        frac = _unit_clamp((u.unsqueeze(-1) - below) / masses)
        return e[0] + (frac * (e[1:] - e[:-1])).sum(-1)

    def encode(self, y_part: torch.Tensor, y_reco: torch.Tensor, p_reco: torch.Tensor) -> torch.Tensor:
        """The column ``[N]``: logit F(t) / LOGISTIC."""
        s = self.resolution(p_reco)
        u = self.cdf((y_part - y_reco) / s, self.cell_masses(y_reco, s)).clamp(U_FLOOR, 1 - U_FLOOR)
        return (torch.log(u) - torch.log(1 - u)) / LOGISTIC

    def decode(self, x: torch.Tensor, y_reco: torch.Tensor, p_reco: torch.Tensor) -> torch.Tensor:
        """y_part ``[N]`` of the column x ``[N]`` (exportable)."""
        s = self.resolution(p_reco)
        u = 1.0 / (1.0 + torch.exp(-LOGISTIC * x))
        return y_reco + s * self.quantile(u, self.cell_masses(y_reco, s))


def line_shape(y: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """The prior density in y = log m0 for prior = [M, G, low, high] (unnormalised over all y; any
    shape, y's dtype): a Breit-Wigner in m^2, plus the constant low below the pole and high above it."""
    mass, width, low, high = (prior[i].to(y.dtype) for i in range(4))
    m2 = torch.exp(2 * y)
    bw = (mass * width / math.pi) * 2 * m2 / ((m2 - mass * mass) ** 2 + (mass * width) ** 2)
    return bw + torch.where(y < torch.log(mass), low, high)


def _core(d: np.ndarray) -> float:
    """The core width of residuals: interquartile range / 1.349 (a Gaussian's sigma), not below 1e-6."""
    q25, q75 = np.quantile(d, [0.25, 0.75])
    return max(float(q75 - q25) / 1.349, 1e-6)


def fit_prior(y: torch.Tensor) -> torch.Tensor:
    """[M, G, low, high]: the :func:`line_shape` fitted by maximum likelihood to y (log m0) within
    +-WINDOW of the median's log."""
    y = y.double()
    centre = float(torch.median(y))
    y = y[(y - centre).abs() < WINDOW]
    grid = torch.linspace(centre - WINDOW, centre + WINDOW, 4001, dtype=torch.float64)
    q25, q75 = torch.quantile(torch.exp(y), torch.tensor([0.25, 0.75], dtype=torch.float64))
    params = torch.tensor([math.exp(centre), math.log(float(q75 - q25) / 2),
                           math.log(0.05), math.log(0.05)], dtype=torch.float64, requires_grad=True)

    def constants(q):  # bounded: on a sample without a tail beside the peak they run to 0 and the fit to NaN
        return q[2].clamp(LOG_CONSTANT_MIN, LOG_CONSTANT_MAX).exp(), q[3].clamp(LOG_CONSTANT_MIN, LOG_CONSTANT_MAX).exp()

    def nll():
        prior = torch.stack([params[0], params[1].exp(), *constants(params)])
        norm = torch.trapezoid(line_shape(grid, prior), grid)
        return -(torch.log(line_shape(y, prior)).mean() - torch.log(norm))

    opt = torch.optim.LBFGS([params], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nll()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    p = params.detach()
    return torch.stack([p[0], p[1].exp(), *constants(p)])
