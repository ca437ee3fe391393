"""Network building blocks shared by every generator family.

``linear`` makes a plain or Bayesian layer from the card's settings; :class:`ResidualMLP`
is the default backbone; :class:`TimeEmbedding` embeds a diffusion/flow time t in [0, 1].
All blocks take a condition ``c`` ``[N, C]`` (C may be 0) concatenated to their input.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..cards import BayesConfig, NetworkConfig
from .bayesian import BayesianLinear

_ACT = {"silu": nn.SiLU, "gelu": nn.GELU, "relu": nn.ReLU}


def linear(in_features: int, out_features: int, bayes: BayesConfig | None = None,
           bayesian: bool = False) -> nn.Module:
    """``nn.Linear``, or :class:`BayesianLinear` when ``bayesian`` and ``bayes.enabled``."""
    if bayesian and bayes is not None and bayes.enabled:
        return BayesianLinear(in_features, out_features, bayes.prior_sigma, bayes.init_log_sigma)
    return nn.Linear(in_features, out_features)


class TimeEmbedding(nn.Module):
    """t ``[N, 1]`` in [0, 1] -> ``[N, dim]`` sinusoidal features (fixed frequencies).

    Frequencies run log-uniformly from 1 to ``max_freq`` cycles per unit time. ODE samplers
    with few fixed steps need a smooth time dependence (a small ``max_freq``, as CFM uses);
    discrete-time diffusion can use a large one.
    """

    def __init__(self, dim: int, max_freq: float = 1000.0):
        super().__init__()
        half = max(dim // 2, 1)
        freqs = torch.exp(torch.linspace(0.0, math.log(max_freq), half))
        self.register_buffer("freqs", freqs)
        self.dim = 2 * half

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        arg = t * self.freqs * (2 * math.pi)
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)


class FourierFeatures(nn.Module):
    """x ``[N, D]`` -> ``[N, D + 2 K F]``: x, then sin and cos of F random frequencies for each of
    the K ``columns`` (default: all).

    The frequencies (``[D, K F]`` block-diagonal buffer, so one MatMul in exported graphs) are
    drawn once from N(0, ``scale``^2) with the global torch generator and saved with the model.
    An MLP on raw inputs learns fine structure slowly (spectral bias): in Z+jets, the dense ridge
    of jet pairs just outside the Delta R cut, 0.1 wide on a scale of 2, came out ~45 % too thin;
    see docs/training.md. Each feature sees one column, so the frequency per direction does not
    grow with D.
    """

    def __init__(self, dim: int, per_column: int, scale: float, columns: tuple[int, ...] = ()):
        super().__init__()
        columns = tuple(columns) or tuple(range(dim))
        freqs = torch.randn(len(columns), per_column) * scale
        proj = torch.zeros(dim, len(columns) * per_column)
        for k, col in enumerate(columns):
            proj[col, k * per_column:(k + 1) * per_column] = freqs[k]
        self.register_buffer("proj", proj)
        self.dim = dim + 2 * len(columns) * per_column

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arg = x @ self.proj.to(x.dtype)
        return torch.cat([x, torch.sin(arg), torch.cos(arg)], dim=-1)


class _Block(nn.Module):
    def __init__(self, width: int, act: type, dropout: float, bayes, bayesian: bool):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = linear(width, width, bayes, bayesian)
        self.fc2 = linear(width, width, bayes, bayesian)
        self.act = act()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, h, shift=None):
        z = self.norm(h) if shift is None else self.norm(h) + shift
        return h + self.fc2(self.drop(self.act(self.fc1(self.act(z)))))


class ResidualMLP(nn.Module):
    """x ``[N, in_dim]`` (+ condition ``[N, cond_dim]``) -> ``[N, out_dim]``.

    ``net.layers`` residual blocks of width ``net.hidden``. With ``bayes.enabled``, the
    layers chosen by ``bayes.layers`` ("all" or "last") are Bayesian. The output layer starts
    at zero so a fresh generator is the identity/zero field.

    The condition (for CFM / DDPM: time embedding and n_jets) is concatenated to the input;
    with ``net.condition == "blocks"`` every residual block also adds its own linear projection
    of it after the block's normalisation, so the time and the multiplicity can steer each
    layer instead of having to survive the LayerNorms of the residual stream. With
    ``net.fourier > 0`` the input x (not the condition) first passes :class:`FourierFeatures`, on
    ``net.fourier_columns`` or, when given, ``feature_columns`` (input positions; empty: none).
    """

    def __init__(self, in_dim: int, out_dim: int, net: NetworkConfig, bayes: BayesConfig | None = None,
                 cond_dim: int = 0, feature_columns: tuple[int, ...] | None = None):
        super().__init__()
        every = bayes is not None and bayes.enabled and bayes.layers == "all"
        act = _ACT[net.activation]
        columns = net.fourier_columns if feature_columns is None else feature_columns
        wanted = net.fourier and (feature_columns is None or len(feature_columns) > 0)
        self.features = FourierFeatures(in_dim, net.fourier, net.fourier_scale, columns) if wanted else None
        feat_dim = self.features.dim if self.features is not None else in_dim
        self.inp = linear(feat_dim + cond_dim, net.hidden, bayes, every)
        self.blocks = nn.ModuleList(
            _Block(net.hidden, act, net.dropout, bayes, every) for _ in range(net.layers)
        )
        per_block = net.condition == "blocks" and cond_dim > 0
        self.cond = nn.ModuleList(linear(cond_dim, net.hidden, bayes, every) for _ in range(net.layers)) \
            if per_block else None
        self.out_norm = nn.LayerNorm(net.hidden)
        self.act = act()
        self.out = linear(net.hidden, out_dim, bayes, bayesian=True)
        with torch.no_grad():
            w = self.out.weight_mu if isinstance(self.out, BayesianLinear) else self.out.weight
            w.mul_(0.01)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if self.features is not None:
            x = self.features(x)
        h = x if c is None or c.shape[-1] == 0 else torch.cat([x, c], dim=-1)
        h = self.inp(h)
        if self.cond is None:
            for block in self.blocks:
                h = block(h)
        else:
            for block, proj in zip(self.blocks, self.cond):
                h = block(h, proj(c))
        return self.out(self.act(self.out_norm(h)))
