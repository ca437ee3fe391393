"""Conditional flow matching (straight paths from Gaussian noise).

x_t = (1 - t) x0 + t x1 with x0 ~ N(0, 1) and x1 the data; the network v(x_t, t, c)
regresses the constant velocity x1 - x0. Sampling integrates dx/dt = v from t = 0 (noise)
to t = 1 with a fixed-step solver (:mod:`hepgen.models.solvers`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..cards import ModelConfig
from ..nn.blocks import ResidualMLP, TimeEmbedding
from . import solvers
from .base import Generator


class VelocityField(nn.Module):
    """v(x ``[N, D]``, t ``[N, 1]``, c ``[N, C]``) -> ``[N, D]``."""

    def __init__(self, dim: int, cond_dim: int, cfg: ModelConfig):
        super().__init__()
        self.embed = TimeEmbedding(cfg.cfm.time_embedding)
        self.net = ResidualMLP(dim, dim, cfg.network, cfg.bayes, cond_dim=self.embed.dim + cond_dim)

    def forward(self, x, t, c):
        return self.net(x, torch.cat([self.embed(t), c], dim=-1))


class CFMSampler(nn.Module):
    """Exportable sampler: noise ``[N, D]``, c ``[N, C]`` -> x ``[N, D]``; unrolled solver."""

    def __init__(self, field: VelocityField, solver: str, steps: int):
        super().__init__()
        self.field, self.solver, self.steps = field, solver, steps

    def forward(self, noise, c):
        return solvers.integrate(lambda x, t: self.field(x, t, c), noise, 0.0, 1.0, self.steps, self.solver)


class CFM(Generator):
    family = "cfm"

    def __init__(self, dim: int, cond_dim: int, cfg: ModelConfig):
        super().__init__(dim, cond_dim, cfg)
        self.field = VelocityField(dim, cond_dim, cfg)

    def loss(self, x, c):
        x0 = torch.randn_like(x)
        t = torch.rand(x.shape[0], 1, dtype=x.dtype, device=x.device)
        xt = (1 - t) * x0 + t * x
        return ((self.field(xt, t, c) - (x - x0)) ** 2).mean()

    def sampler(self, solver: str | None = None, steps: int | None = None) -> nn.Module:
        return CFMSampler(self.field, solver or self.cfg.cfm.solver, steps or self.cfg.cfm.steps)

    def noise_dim(self, **opts) -> int:
        return self.dim
