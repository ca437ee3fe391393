"""Denoising diffusion (DDPM, Ho et al. 2020) with epsilon prediction.

Forward process over ``T`` steps: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, with
abar_t = prod_{s<=t} (1 - beta_s) and a linear or cosine (Nichol & Dhariwal 2021) beta
schedule. The prediction is eps_hat = sqrt(1 - abar_t) x_t + net(x_t, t, c): the skip term is the
exact answer for standardised Gaussian data, so the network learns a residual that vanishes at
high noise (without it, errors at t ~ T are amplified ~30x by the cosine schedule's last step,
beta_T = 0.999). The loss is the MSE of eps_hat to the true eps.

Both samplers are one update rule (DDIM paper, eq. 12) run over a decreasing sub-sequence
``tau`` of the T steps (t = i T / steps, i = steps - 1 .. 0: with fewer steps the chain starts
below T - 1, where the cosine schedule is gentler; the noise is taken as x at the first tau), with x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t):

    x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps + sigma z,
    sigma  = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev).

* ``ancestral`` (eta = 1, every step by default): with all T steps this is exactly Ho et al.'s
  ancestral sampler with the posterior variance beta_tilde_t. It consumes explicit noise
  ``[N, D * (steps + 1)]``: columns ``[0, D)`` are x_T, columns ``[D (k+1), D (k+2))`` the
  normal z of the k-th update (k = 0 is the update from t = T). The last update (to t = 0)
  has sigma = 0, so its z block is read but has no effect.
* ``ddim`` (eta = 0, ``ddim_steps`` evenly spaced steps): deterministic; noise ``[N, D]`` = x_T.

The schedule is a float64 buffer; the samplers read it once into Python floats, so the exported
graph holds constants, a fixed unrolled loop and no random ops.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..cards import ModelConfig
from ..nn.blocks import ResidualMLP, TimeEmbedding
from .base import Generator, ModelSettingError, weighted_mean


def beta_schedule(kind: str, steps: int) -> torch.Tensor:
    """beta_t ``[steps]`` (float64) of the ``linear`` or ``cosine`` schedule."""
    if kind == "linear":
        # Ho et al.: 1e-4 .. 0.02 for T = 1000; rescaled so other T give the same total noise
        scale = 1000.0 / steps
        return torch.linspace(scale * 1e-4, scale * 0.02, steps, dtype=torch.float64).clamp(max=0.999)
    if kind == "cosine":
        s = 0.008
        t = torch.arange(steps + 1, dtype=torch.float64) / steps
        f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        abar = f / f[0]
        return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
    raise ValueError(f"unknown beta schedule {kind!r}; choose linear or cosine")


class NoisePredictor(nn.Module):
    """eps(x ``[N, D]``, t ``[N, 1]`` in (0, 1], c ``[N, C]``) -> ``[N, D]``."""

    def __init__(self, dim: int, cond_dim: int, cfg: ModelConfig):
        super().__init__()
        self.embed = TimeEmbedding(cfg.ddpm.time_embedding)
        self.net = ResidualMLP(dim, dim, cfg.network, cfg.bayes, cond_dim=self.embed.dim + cond_dim)

    def forward(self, x, t, c):
        return self.net(x, torch.cat([self.embed(t), c], dim=-1))


class DDPMSampler(nn.Module):
    """Exportable sampler: noise ``[N, D * (steps + 1)]`` (eta > 0) or ``[N, D]`` (eta = 0),
    c ``[N, C]`` -> x ``[N, D]``. ``taus`` are the visited steps (0-based, decreasing)."""

    def __init__(self, eps: NoisePredictor, abar: list[float], taus: list[int], eta: float, dim: int):
        super().__init__()
        self.eps, self.dim, self.eta = eps, dim, eta
        self.T = len(abar)
        self.plan = []  # (time input, sqrt abar_t, sqrt(1-abar_t), sqrt abar_prev, c_eps, sigma)
        for k, t in enumerate(taus):
            a_t = abar[t]
            a_prev = abar[taus[k + 1]] if k + 1 < len(taus) else 1.0
            sigma = eta * math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
            c_eps = math.sqrt(max(1 - a_prev - sigma**2, 0.0))
            self.plan.append(((t + 1) / self.T, math.sqrt(a_t), math.sqrt(1 - a_t), math.sqrt(a_prev), c_eps, sigma))

    def forward(self, noise, c):
        d = self.dim
        x = noise[:, :d]
        for k, (tin, sa, s1a, sa_prev, c_eps, sigma) in enumerate(self.plan):
            eps = s1a * x + self.eps(x, torch.full_like(x[:, :1], tin), c)
            x0 = (x - s1a * eps) / sa
            x = sa_prev * x0 + c_eps * eps
            if self.eta > 0:
                x = x + sigma * noise[:, d * (k + 1):d * (k + 2)]
        return x


class DDPM(Generator):
    family = "ddpm"

    def __init__(self, dim: int, cond_dim: int, cfg: ModelConfig):
        super().__init__(dim, cond_dim, cfg)
        self.T = cfg.ddpm.timesteps
        betas = beta_schedule(cfg.ddpm.beta_schedule, self.T)
        self.register_buffer("abar", torch.cumprod(1 - betas, 0), persistent=False)  # training only
        self.eps = NoisePredictor(dim, cond_dim, cfg)

    def _abar64(self) -> list[float]:
        # recomputed in float64 so .float()/.double() of the module never changes the schedule
        betas = beta_schedule(self.cfg.ddpm.beta_schedule, self.T)
        return torch.cumprod(1 - betas, 0).tolist()

    def loss(self, x, c, weight=None):
        t = torch.randint(0, self.T, (x.shape[0],), device=x.device)
        a = self.abar.to(x.dtype)[t].unsqueeze(-1)
        eps = torch.randn_like(x)
        xt = a.sqrt() * x + (1 - a).sqrt() * eps
        tin = ((t + 1).to(x.dtype) / self.T).unsqueeze(-1)
        sq = ((1 - a).sqrt() * xt + self.eps(xt, tin, c) - eps) ** 2
        return sq.mean() if weight is None else weighted_mean(sq.mean(-1), weight)  # a weighted regression

    def _steps(self, sampler: str | None, steps: int | None, solver: str | None = None) -> tuple[str, int]:
        if solver is not None and sampler is not None and solver != sampler:
            raise ModelSettingError(f"DDPM: solver={solver!r} and sampler={sampler!r} disagree")
        sampler = sampler or solver or self.cfg.ddpm.sampler
        if sampler not in ("ancestral", "ddim"):
            raise ModelSettingError(f"unknown DDPM sampler {sampler!r}; choose ancestral or ddim")
        if steps is None:
            steps = self.T if sampler == "ancestral" else min(self.cfg.ddpm.ddim_steps, self.T)
        if not 1 <= steps <= self.T:
            raise ModelSettingError(f"DDPM sampler steps must be in [1, {self.T}], got {steps}")
        return sampler, steps

    def sampler(self, sampler: str | None = None, steps: int | None = None, solver: str | None = None) -> nn.Module:
        """``sampler`` = ancestral | ddim (card default; ``solver`` is an alias, as ``hepgen generate
        --solver`` passes it); ``steps`` visited (default T / ddim_steps)."""
        sampler, steps = self._steps(sampler, steps, solver)
        # DDIM's evenly spaced "leading" steps t = i T / steps, from the largest down to 0;
        # with steps = T every step is visited (Ho et al.'s ancestral chain)
        taus = [i * self.T // steps for i in range(steps)][::-1]
        eta = 1.0 if sampler == "ancestral" else 0.0
        return DDPMSampler(self.eps, self._abar64(), taus, eta, self.dim)

    def sampler_record(self, sampler: str | None = None, steps: int | None = None, solver: str | None = None) -> dict:
        """The sampler and the steps it visits (ancestral: every one of the T by default)."""
        sampler, steps = self._steps(sampler, steps, solver)
        return {"sampler": sampler, "steps": steps}

    def noise_dim(self, sampler: str | None = None, steps: int | None = None, solver: str | None = None) -> int:
        sampler, steps = self._steps(sampler, steps, solver)
        return self.dim * (steps + 1) if sampler == "ancestral" else self.dim
