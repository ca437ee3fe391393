"""Conditional flow matching (straight paths from Gaussian noise).

x_t = (1 - t) x0 + t x1 with x0 ~ N(0, 1) and x1 the data; the network v(x_t, t, c)
regresses the constant velocity x1 - x0. Sampling integrates dx/dt = v from t = 0 (noise)
to t = 1 with a fixed-step solver (:mod:`hepgen.models.solvers`).

Backbones (``model.network.backbone``): ``mlp`` (:class:`~hepgen.nn.blocks.ResidualMLP`),
``transformer`` (:class:`~hepgen.nn.coord_transformer.CoordinateTransformer`, one token per coordinate)
or ``lgatr`` (:class:`~hepgen.nn.lgatr_backbone.LGATrBackbone`, the Lorentz-equivariant L-GATr with one
token per particle, on the four-momenta of the state x; it needs the run's fitted coordinates,
given by :meth:`CFM.attach_coords`).

Rectified flow (``model.cfm.coupling: paired``, Liu et al. 2022, made by ``hepgen distill --method
reflow``): the training rows are ``[x_T | z]`` pairs of a teacher CFM (its ODE's end point x_T from
the noise z), and the straight paths join each z to ITS x_T instead of a random data event. The paths
of the coupling cross less, so the learned field is straighter and a few Euler steps suffice.

Exact likelihood (:meth:`CFM.log_prob`): integrate x and the log-density backwards from t = 1
to t = 0, d log p(x_t)/dt = -div v, so log p1(x) = log N(x(0)) - int_0^1 div v dt; the
divergence is exact (D autograd passes) or Hutchinson's estimate (one vector-Jacobian product
with Rademacher noise); the solver is a fixed-step one or the adaptive reference
(``method="adaptive"``, :func:`hepgen.models.solvers.adaptive`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..cards import ModelConfig

from ..nn.blocks import ResidualMLP, TimeEmbedding
from ..nn.coord_transformer import CoordinateTransformer
from ..nn.lgatr_backbone import LGATrBackbone
from . import solvers
from .base import Generator, normal_log_prob, split_pairs, weighted_mean


# cycles per unit time of the fastest time feature: the field must vary slowly in t, or a
# 10-20 step fixed solver aliases it (with 1000, fixed-step and adaptive solutions differed
# by ~0.05 in log p for a random network)
TIME_MAX_FREQ = 4.0


class VelocityField(nn.Module):
    """v(x ``[N, D]``, t ``[N, 1]``, c ``[N, C]``) -> ``[N, D]``.

    ``active`` ``[C, D]`` (buffer, all ones unless :meth:`CFM.set_active_columns` was called):
    which columns belong to present objects under each one-hot condition. When set, the field
    neither reads nor moves the other columns (input and output multiplied by ``c @ active``),
    so they stay at their initial noise. ``frozen`` (a Python flag, so exported graphs carry no
    data-dependent branch) says whether the mask applies.
    """

    def __init__(self, dim: int, cond_dim: int, cfg: ModelConfig):
        super().__init__()
        self.embed = TimeEmbedding(cfg.cfm.time_embedding, max_freq=TIME_MAX_FREQ)
        if cfg.network.backbone == "lgatr":
            self.net = LGATrBackbone(dim, cfg, cond_dim=self.embed.dim + cond_dim)
        else:
            backbone = CoordinateTransformer if cfg.network.backbone == "transformer" else ResidualMLP
            self.net = backbone(dim, dim, cfg.network, cfg.bayes, cond_dim=self.embed.dim + cond_dim)
        self.takes_mask = getattr(self.net, "takes_mask", False)  # lgatr: absent particles leave the attention
        self.register_buffer("active", torch.ones(cond_dim, dim))
        self.frozen = False

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # runs trained before absent columns were frozen learned every column
        state_dict.setdefault(prefix + "active", torch.ones_like(self.active))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.frozen = not bool(state_dict[prefix + "active"].bool().all())

    def mask(self, c: torch.Tensor) -> torch.Tensor | None:
        """``[N, D]`` 1 / 0 for present / absent columns, or None when every column is learned."""
        if not self.frozen:
            return None
        return c.to(self.active.dtype) @ self.active

    def attach_coords(self, coords: nn.Module) -> None:
        """Hand the fitted coordinates to a backbone that needs them (lgatr); others ignore them."""
        if hasattr(self.net, "attach_coords"):
            self.net.attach_coords(coords)

    def forward(self, x, t, c):
        m = self.mask(c)
        cond = torch.cat([self.embed(t), c], dim=-1)
        if m is None:
            return self.net(x, cond)
        m = m.to(x.dtype)
        if self.takes_mask:
            return self.net(x * m, cond, m) * m
        return self.net(x * m, cond) * m


class CFMSampler(nn.Module):
    """Exportable sampler: noise ``[N, D]``, c ``[N, C]`` -> x ``[N, D]``; unrolled solver."""

    def __init__(self, field: VelocityField, solver: str, steps: int):
        super().__init__()
        self.field, self.solver, self.steps = field, solver, steps

    def forward(self, noise, c):
        return solvers.integrate(lambda x, t: self.field(x, t, c), noise, 0.0, 1.0, self.steps, self.solver)


class CFM(Generator):
    backbones = ("mlp", "transformer", "lgatr")
    family = "cfm"
    teaches = True
    pairs_nuisances = True

    def __init__(self, dim: int, cond_dim: int, cfg: ModelConfig):
        super().__init__(dim, cond_dim, cfg)
        self.field = VelocityField(dim, cond_dim, cfg)
        self.distill_method = "reflow" if cfg.cfm.coupling == "paired" else None

    def attach_coords(self, coords: nn.Module) -> None:
        self.field.attach_coords(coords)

    def set_active_columns(self, active: torch.Tensor | None) -> None:
        """Freeze the columns of absent objects: ``active`` ``[C, D]`` bool, row k = the columns
        present under condition k (c must be one-hot, as the Z+jets multiplicity is). Training
        then regresses only present columns (absent ones have data = their own noise, so zero
        velocity is exact) and sampling leaves absent columns at their N(0, 1) noise, which keeps
        the density proper in all D columns (the divergence there is 0)."""
        if active is not None:
            self.field.active.copy_(active.to(self.field.active.dtype))
            self.field.frozen = not bool(active.all())

    def loss(self, x, c, weight=None):
        if self.learns_from_teacher:  # reflow: z's path ends at its teacher sample x_T
            x1, z = split_pairs(x, self.dim)
            return self.path_loss(z, x1, c, weight)
        return self.path_loss(torch.randn_like(x), x, c, weight)

    def path_loss(self, x0: torch.Tensor, x: torch.Tensor, c: torch.Tensor,
                  weight: torch.Tensor | None = None) -> torch.Tensor:
        """Flow-matching loss of the straight paths from x0 ``[N, D]`` (t = 0) to x ``[N, D]``
        (t = 1), t ~ U[0, 1) per event; frozen columns (:meth:`set_active_columns`) stay at x0.
        With ``weight`` ``[N]`` each event's squared error counts ``weight`` times (a weighted
        regression: the field learns the weighted conditional mean velocity, so the flow carries
        the weighted density)."""
        t = self.draw_times(x)
        m = self.field.mask(c)
        if m is None:
            xt = (1 - t) * x0 + t * x
            sq = (self.field(xt, t, c) - (x - x0)) ** 2
            return sq.mean() if weight is None else weighted_mean(sq.mean(-1), weight)
        m = m.to(x.dtype)
        x1 = m * x + (1 - m) * x0
        xt = (1 - t) * x0 + t * x1
        sq = ((self.field(xt, t, c) - (x1 - x0)) ** 2) * m
        if weight is None:
            return sq.sum() / m.sum()
        return (sq.sum(-1) * weight.to(sq.dtype)).sum() / m.sum()

    def paired_loss(self, x, c, c_varied, w_varied, weight=None):
        """``train.nuisance_paired``: each event's straight path (the same x0 and t) regressed at the
        nominal condition c, v0, and at ``c_varied``, v1 = v0 + d. With u = x - x0 the weighted loss
        w |v1 - u|^2 has the gradient 2 w d + 2 w (v0 - u) with respect to d; its part 2 (v0 - u)
        has zero mean where v0 is the nominal regression's optimum, so it is taken away (a control
        variate, v0 held fixed in it): per event

            |v0 - u|^2 + w |d|^2 + 2 (w - 1) sg(v0 - u) . d,    d = v1 - sg(v0)

        whose noise in d comes from (w - 1) alone. Its optimum is v1 = E_w[u | x_t] + (v0 - E[u |
        x_t]) / E[w | x_t]: the weighted field plus the nominal field's own error, which then cancels
        in gen(nu) / gen(0). One forward pass of both halves (a Bayesian network's one weight draw)."""
        x0 = torch.randn_like(x)
        t = self.draw_times(x)
        m = self.field.mask(c)
        m = torch.ones_like(x) if m is None else m.to(x.dtype)
        x1 = m * x + (1 - m) * x0
        xt = (1 - t) * x0 + t * x1
        v0, v1 = self.field(torch.cat([xt, xt]), torch.cat([t, t]), torch.cat([c, c_varied])).chunk(2)
        r0 = (v0 - (x1 - x0)) * m
        d = (v1 - v0.detach()) * m
        w = w_varied.to(x.dtype)
        per = (r0**2).sum(-1) + w * (d**2).sum(-1) + 2 * (w - 1) * (r0.detach() * d).sum(-1)
        if weight is not None:
            per = per * weight.to(per.dtype)
        return per.sum() / m.sum()

    def draw_times(self, x: torch.Tensor) -> torch.Tensor:
        """The training times ``[N, 1]`` of a batch x ``[N, D]`` (``model.cfm.time_sampling``)."""
        cfg = self.cfg.cfm
        if cfg.time_sampling == "uniform":
            return torch.rand(x.shape[0], 1, dtype=x.dtype, device=x.device)
        z = torch.randn(x.shape[0], 1, dtype=x.dtype, device=x.device)
        t = torch.sigmoid(cfg.time_loc + cfg.time_scale * z)
        if cfg.time_sampling == "mixture":  # half of the events (at random) keep a uniform time
            u = torch.rand(x.shape[0], 2, dtype=x.dtype, device=x.device)
            t = torch.where(u[:, :1] < 0.5, u[:, 1:], t)
        return t

    def sampler(self, solver: str | None = None, steps: int | None = None) -> nn.Module:
        return CFMSampler(self.field, solver or self.cfg.cfm.solver, steps or self.cfg.cfm.steps)

    def noise_dim(self, **opts) -> int:
        return self.dim

    def sampler_record(self, solver: str | None = None, steps: int | None = None) -> dict:
        return {"solver": solver or self.cfg.cfm.solver, "steps": steps or self.cfg.cfm.steps}

    def divergence(self, x, t, c, eps: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(v ``[N, D]``, div v ``[N]``) at (x, t); exact, or Hutchinson with noise ``eps`` ``[N, D]``."""
        with torch.enable_grad():
            y = x.detach().requires_grad_(True)
            v = self.field(y, t, c)
            if eps is not None:
                (g,) = torch.autograd.grad(v, y, eps)
                div = (g * eps).sum(-1)
            else:
                div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
                for i in range(self.dim):
                    (g,) = torch.autograd.grad(v[:, i].sum(), y, retain_graph=i + 1 < self.dim)
                    div = div + g[:, i]
        return v.detach(), div.detach()

    def log_prob(self, x, c, steps: int | None = None, method: str | None = None, hutchinson: bool = False,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """log p(x | c) ``[N]`` (nats, in network coordinates) through the ODE; see the module docstring.

        ``method``: euler | midpoint | rk4 (default: the card's solver) with ``steps`` steps, or
        ``adaptive`` (scipy RK45, float64). ``hutchinson``: stochastic divergence (one
        Rademacher vector per event, fixed along the path).
        """
        d = self.dim
        eps = None
        if hutchinson:
            eps = torch.randint(0, 2, x.shape, generator=generator).to(x.dtype).mul_(2).sub_(1)

        def aug(state, t):
            v, div = self.divergence(state[:, :d], t, c, eps)
            return torch.cat([v, div.unsqueeze(-1)], dim=-1)

        state = torch.cat([x, torch.zeros_like(x[:, :1])], dim=-1)
        method = method or self.cfg.cfm.solver
        if method == "adaptive":
            out = solvers.adaptive(aug, state, 1.0, 0.0)
        else:
            out = solvers.integrate(aug, state, 1.0, 0.0, steps or self.cfg.cfm.steps, method)
        x0, delta = out[:, :d], out[:, d]
        return normal_log_prob(x0) + delta
