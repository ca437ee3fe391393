"""INN: a conditional coupling-block normalizing flow (the precision baseline of arXiv:2110.13632).

x ``[N, D]`` -> z = f(x; c) through ``blocks`` coupling blocks, each preceded by a fixed random
permutation (a buffer, seeded by the block index). A block splits its input into a passive
half x_a (the first D // 2 columns) and an active half x_b and transforms x_b elementwise with
parameters from a conditional subnetwork g(x_a, c) (a :class:`~hepgen.nn.blocks.ResidualMLP`;
Bayesian as the card says):

* ``affine``: y_b = x_b exp(s) + t, s = clamp tanh(s_raw / clamp) (soft clamp).
* ``spline``: a monotone rational-quadratic spline (Durkan et al. 2019, arXiv:1906.04032) on
  [-bound, bound] with ``bins`` bins, unit boundary derivatives and identity tails outside.

z is standard normal, so log p(x | c) = log N(z; 0, 1) + sum of log |det J| (exact); the loss
is -log p mean. Sampling is the inverse pass from Gaussian noise ``[N, D]``.

Export notes (the sampling direction): the permutations are constant-index Gather ops; the
spline bin is found by comparing against the knots, ``(y >= knots).sum()``-style, and the bin's
values are picked by multiplying with a one-hot made from differences of those comparisons (no
searchsorted, ScatterND or GatherElements); cumulative sums are MatMuls with a constant
triangular matrix. Ops: Gemm/MatMul, Softmax, Softplus, Exp, Tanh, Sqrt, comparisons, Cast,
Where, Concat, Slice, Gather, ReduceSum.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..cards import ModelConfig
from ..nn.blocks import ResidualMLP
from .base import Generator, ModelSettingError, check_no_options, normal_log_prob, weighted_mean

MIN_BIN = 1e-3  # minimal bin width / height, as a fraction of the domain
MIN_DERIV = 1e-3


def _onehot_bin(v: torch.Tensor, inner_knots: torch.Tensor) -> torch.Tensor:
    """One-hot ``[..., K]`` of the bin of v ``[...]`` given the K-1 inner knots ``[..., K-1]``."""
    below = (v.unsqueeze(-1) >= inner_knots).to(v.dtype)  # 1 ... 1 0 ... 0 (knots increase)
    ones = torch.ones_like(below[..., :1])
    steps = torch.cat([ones, below, torch.zeros_like(ones)], dim=-1)
    return steps[..., :-1] - steps[..., 1:]


def rq_spline(v: torch.Tensor, params: torch.Tensor, bound: float, inverse: bool = False):
    """Rational-quadratic spline of v ``[N, M]`` with params ``[N, M, 3K - 1]``.

    Returns (output ``[N, M]``, log |d output / d v| ``[N, M]``). Identity outside
    [-bound, bound]. Params are unconstrained: K width logits, K height logits, K - 1 inner
    derivative pre-activations (softplus, shifted so zero gives derivative 1).
    """
    k = (params.shape[-1] + 1) // 3
    tri = torch.ones(k, k, dtype=v.dtype, device=v.device).triu()  # w @ tri = cumsum(w)

    def knots(logits):
        width = MIN_BIN + (1 - MIN_BIN * k) * logits.softmax(-1)  # fractions, sum 1
        right = 2 * bound * (width @ tri) - bound  # right edges; the last is +bound
        left = torch.cat([torch.full_like(right[..., :1], -bound), right[..., :-1]], dim=-1)
        return left, 2 * bound * width, right

    xl, w, xr = knots(params[..., :k])
    yl, h, yr = knots(params[..., k:2 * k])
    shift = math.log(math.expm1(1 - MIN_DERIV))
    inner = MIN_DERIV + F.softplus(params[..., 2 * k:] + shift)
    one = torch.ones_like(inner[..., :1])
    d_lo = torch.cat([one, inner], dim=-1)  # derivative at the left knot of each bin
    d_hi = torch.cat([inner, one], dim=-1)  # at the right knot

    inside = (v > -bound) & (v < bound)
    vc = v.clamp(-bound, bound)
    onehot = _onehot_bin(vc, (yr if inverse else xr)[..., :-1])

    def pick(a):
        return (onehot * a).sum(-1)

    xk, wk, yk, hk, d0, d1 = (pick(a) for a in (xl, w, yl, h, d_lo, d_hi))
    s = hk / wk
    if not inverse:
        xi = ((vc - xk) / wk).clamp(0, 1)
        xi1 = xi * (1 - xi)
        denom = s + (d1 + d0 - 2 * s) * xi1
        out = yk + hk * (s * xi**2 + d0 * xi1) / denom
        deriv = s**2 * (d1 * xi**2 + 2 * s * xi1 + d0 * (1 - xi) ** 2) / denom**2
        logdet = torch.log(deriv)
    else:
        dy = vc - yk
        a = hk * (s - d0) + dy * (d1 + d0 - 2 * s)
        b = hk * d0 - dy * (d1 + d0 - 2 * s)
        cc = -s * dy
        disc = (b**2 - 4 * a * cc).clamp_min(0)
        xi = ((2 * cc) / (-b - disc.sqrt())).clamp(0, 1)
        out = xk + xi * wk
        xi1 = xi * (1 - xi)
        denom = s + (d1 + d0 - 2 * s) * xi1
        deriv = s**2 * (d1 * xi**2 + 2 * s * xi1 + d0 * (1 - xi) ** 2) / denom**2
        logdet = -torch.log(deriv)
    return torch.where(inside, out, v), torch.where(inside, logdet, torch.zeros_like(logdet))


class CouplingBlock(nn.Module):
    """Permute, then transform the active half given the passive half and c; ``[N, D]``."""

    def __init__(self, dim: int, cond_dim: int, cfg: ModelConfig, index: int, order: torch.Tensor | None = None):
        """``order`` ``[D]``: the network coordinate at each input position (earlier blocks
        permuted them); it maps ``network.fourier_columns`` onto this block's passive half."""
        super().__init__()
        inn = cfg.inn
        self.coupling, self.bound, self.clamp = inn.coupling, inn.bound, inn.clamp
        self.n_a = dim // 2
        self.n_b = dim - self.n_a
        self.per_dim = 2 if inn.coupling == "affine" else 3 * inn.bins - 1
        perm = torch.randperm(dim, generator=torch.Generator().manual_seed(1000 + index))
        self.register_buffer("perm", perm)
        self.register_buffer("inv_perm", torch.argsort(perm))
        features = None
        if cfg.network.fourier_columns:
            passive = (torch.arange(dim) if order is None else order)[perm[:self.n_a]].tolist()
            features = tuple(k for k, col in enumerate(passive) if col in cfg.network.fourier_columns)
        self.net = ResidualMLP(self.n_a, self.n_b * self.per_dim, cfg.network, cfg.bayes, cond_dim=cond_dim,
                               feature_columns=features)

    def _params(self, xa, c):
        return self.net(xa, c).reshape(xa.shape[0], self.n_b, self.per_dim)

    def _transform(self, xb, p, inverse):
        if self.coupling == "affine":
            s = self.clamp * torch.tanh(p[..., 0] / self.clamp)
            t = p[..., 1]
            if inverse:
                return (xb - t) * torch.exp(-s), -s
            return xb * torch.exp(s) + t, s
        return rq_spline(xb, p, self.bound, inverse)

    def forward(self, x, c):
        """x -> (y, log|det J| ``[N]``) in the normalising direction."""
        x = torch.index_select(x, 1, self.perm)
        xa, xb = x[:, :self.n_a], x[:, self.n_a:]
        yb, logdet = self._transform(xb, self._params(xa, c), inverse=False)
        return torch.cat([xa, yb], dim=1), logdet.sum(-1)

    def inverse(self, y, c):
        """y -> x (the sampling direction)."""
        ya, yb = y[:, :self.n_a], y[:, self.n_a:]
        xb, _ = self._transform(yb, self._params(ya, c), inverse=True)
        return torch.index_select(torch.cat([ya, xb], dim=1), 1, self.inv_perm)


class INN(Generator):
    family = "inn"

    def __init__(self, dim: int, cond_dim: int, cfg: ModelConfig):
        super().__init__(dim, cond_dim, cfg)
        if dim < 2:
            raise ModelSettingError("the INN needs at least 2 dimensions (coupling blocks split them)")
        order, blocks = torch.arange(dim), []
        for i in range(cfg.inn.blocks):
            blocks.append(CouplingBlock(dim, cond_dim, cfg, i, order))
            order = order[blocks[-1].perm]  # the coordinate at each position after this block
        self.blocks = nn.ModuleList(blocks)

    def forward_flow(self, x, c) -> tuple[torch.Tensor, torch.Tensor]:
        """z ``[N, D]`` and the summed log|det dz/dx| ``[N]``."""
        logdet = torch.zeros_like(x[:, 0])
        for block in self.blocks:
            x, ld = block(x, c)
            logdet = logdet + ld
        return x, logdet

    def log_prob(self, x, c):
        z, logdet = self.forward_flow(x, c)
        return normal_log_prob(z) + logdet

    def loss(self, x, c, weight=None):
        if weight is None:
            return -self.log_prob(x, c).mean()
        return weighted_mean(-self.log_prob(x, c), weight)  # a weighted likelihood

    def sampler(self, **opts) -> nn.Module:
        check_no_options(self.family, opts)
        return INNSampler(self.blocks)

    def noise_dim(self, **opts) -> int:
        check_no_options(self.family, opts)
        return self.dim


class INNSampler(nn.Module):
    """Exportable inverse pass: noise ``[N, D]`` (standard normal), c ``[N, C]`` -> x ``[N, D]``."""

    def __init__(self, blocks: nn.ModuleList):
        super().__init__()
        self.blocks = blocks

    def forward(self, noise, c):
        x = noise
        for block in reversed(self.blocks):
            x = block.inverse(x, c)
        return x
