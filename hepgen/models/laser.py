"""LASER: latent space refinement of a trained generator (Winterhalder et al., arXiv:2106.00792).

A refined run (``hepgen refine``, :mod:`hepgen.refine`; card section ``refine``) holds the base run's
generator G(z, c), frozen, and a small CFM or INN r in G's latent space (:class:`Refined`):

    x = G(r(u, c), c),    u ~ the base's noise (N(0, 1), ``noise_dim`` columns)

The refiner is trained, by the one training loop, on the base's latent vectors z with their
condition c and the DCTR weight w(G(z, c)) of the event they made (:mod:`hepgen.latent`): a weighted
flow-matching regression (or, for the INN, a weighted likelihood), so r carries N(0, 1) to the weighted latent density p(z) w(G(z, c)), whose
image under G is the data density the classifier saw. Sampling stays a pure function of explicit
noise with the base's noise layout: the process's pipeline, ``hepgen generate`` and the ONNX export
(one graph, refiner then generator) use it as they use the base.

**The residual refiner** (``refine.residual``, what ``hepgen refine`` writes by default): the refiner's
velocity is v(x, t, c) = g(x, t) + delta(x, t, c) with g the exact flow-matching field of independent
straight paths from N(0, 1) to N(0, 1) (:func:`gaussian_field`, whose flow maps every point to itself)
and delta a network whose output layer starts at zero (:class:`ResidualField`). So the refined run is
the base run at initialisation, and the network learns only what the weights add. Its loss
(:func:`residual_loss`) is the weighted flow-matching loss with the unweighted part taken exactly: the
base latents are N(0, 1) draws, for which g is the regression's optimum, so

    E[w |v - (z - u)|^2] = E|delta(x_t)|^2 + E[(w - 1) |v - (z - u)|^2] + const,

whose noise comes from (w - 1) alone: with mild DCTR weights (effective sample fraction 0.97) the
plain loss buries the correction in the regression noise of |z - u|^2. Without ``refine.residual``
(refined runs made before it, or ``--set refine.residual=false``) the refiner is a plain CFM from a
random velocity field.

**The INN refiner** (``refine.refiner: inn``, the LASER paper's choice): r is a conditional spline
coupling flow (:class:`~hepgen.models.inn.INN`, ``refine.blocks`` blocks, subnetworks ``refine.hidden``
x ``refine.layers``) whose subnetworks' output layers start at zero, so it too is exactly the identity
map at initialisation. It samples in one inverse pass (no ODE steps). It is trained by weighted
maximum likelihood, -mean w log q(z | c), with a control variate (:func:`inn_residual_loss`): plus
mean log q(x | c) for x = r(z, c), the same latents carried through the refiner's sampling
direction. Those x are draws from q, so that term's gradient (the mean score) is zero in expectation
at every parameter value and the minimum stays the weighted likelihood's; near the identity x is
close to z and the per-event gradients cancel up to their (w - 1) part, the same noise reduction as
the residual CFM's. The control variate changes only the gradient's noise: in evaluation mode (the
validation loss, which picks ``best.pt``) the loss is the weighted likelihood, -mean w log q(z | c).
(Scored with the control variate, the first Z+jets runs' ``best.pt`` was an early epoch 0.005 nats
below the last.) Plain weighted maximum likelihood (the first version) on Z+jets, 1 M fresh
latents at batch 512: after 5 epochs the refiner's weighted log-likelihood on the validation
latents was 0.0036 nats below the identity's, after 9 epochs 0.012 below (its sampling noise grew
faster than the correction it learned; the gain available is about Var(w) / 2 = 0.013).

The state dict holds ``base.*`` (the base's weights, loaded once from its run, never trained) and
``refiner.*``. The sampler options (``solver``, ``steps``) are the base's; the refiner samples with
``refine.solver`` x ``refine.steps``. The base must start from N(0, 1) noise (:func:`check_base`).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..errors import InputError
from ..nn.bayesian import is_bayesian
from .base import Generator
from .cfm import CFM
from .ensemble import is_ensemble
from .inn import INN


def gaussian_field(x: torch.Tensor, t) -> torch.Tensor:
    """E[z - u | x_t] ``[N, D]`` for independent z, u ~ N(0, 1) and x_t = (1 - t) u + t z: x_t (2t - 1) /
    (t^2 + (1 - t)^2), the flow-matching optimum between two standard normals. Its flow,
    x(t) = x(0) sqrt(t^2 + (1 - t)^2), returns every point to itself at t = 1: the identity map."""
    return x * (2 * t - 1) / (t * t + (1 - t) * (1 - t))


class ResidualField(nn.Module):
    """The residual refiner's velocity ``gaussian_field(x, t) + delta(x, t, c)``; ``delta`` (a
    :class:`~hepgen.models.cfm.VelocityField`) starts with a zero output layer, so at initialisation the
    refiner is exactly the identity map."""

    def __init__(self, delta: nn.Module):
        super().__init__()
        self.delta = delta
        with torch.no_grad():
            delta.net.out.weight.zero_()
            delta.net.out.bias.zero_()

    def mask(self, c):
        return self.delta.mask(c)

    def forward(self, x, t, c):
        return gaussian_field(x, t) + self.delta(x, t, c)


def residual_loss(cfm: CFM, z: torch.Tensor, c: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """The weighted flow-matching loss of a :class:`ResidualField` CFM on latents z ``[N, D]`` ~ N(0, 1)
    given c ``[N, C]`` with weights ``[N]`` (None: all 1), up to a constant: mean |delta(x_t)|^2 (the
    unweighted part, exact because ``gaussian_field`` is its optimum) plus mean (w - 1) |v - (z - u)|^2
    (see the module docstring). Its expectation differs from ``cfm.path_loss``'s by a constant for
    every delta, so both have the same minimum."""
    u = torch.randn_like(z)
    t = cfm.draw_times(z)
    xt = (1 - t) * u + t * z
    delta = cfm.field.delta(xt, t, c)
    loss = (delta**2).mean()
    if weight is None:
        return loss
    sq = ((gaussian_field(xt, t) + delta - (z - u)) ** 2).mean(-1)
    return loss + ((weight.to(sq.dtype) - 1) * sq).mean()


def inn_residual_loss(inn: INN, z: torch.Tensor, c: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """The INN refiner's loss on latents z ``[N, D]`` ~ N(0, 1) given c ``[N, C]`` with weights ``[N]``
    (None: all 1; see the module docstring): -mean w log q(z | c) + mean log q(x | c), x = r(z, c)
    carried through the sampling direction and detached. x ~ q, so the second term's gradient, the
    mean score, is zero in expectation for every parameter value (a control variate: the gradient
    is the weighted likelihood's, unbiased); near the identity x is z and the two cancel but for the
    (w - 1) part."""
    with torch.no_grad():
        x = inn.sampler()(z, c)
    w = torch.ones_like(z[:, 0]) if weight is None else weight.to(z.dtype)
    return (inn.log_prob(x, c) - w * inn.log_prob(z, c)).mean()


def check_base(model: Generator, what: str) -> None:
    """A one-line :class:`InputError` unless ``model`` is a generator LASER can refine: a map from
    standard-normal noise alone (not one that maps source events, not a mixture with uniform
    columns), deterministic, one set of weights (not Bayesian, not an ensemble, not refined)."""
    layout = set(model.noise_layout())
    if model.maps_samples or layout != {"normal"}:
        raise InputError(f"{what}: model.family {model.family} does not start from N(0, 1) noise alone (its noise: "
                         f"{', '.join(sorted(layout))}); LASER refines a generator of Gaussian noise (cfm, inn, gan, "
                         "vae, student, ddpm)")
    if is_bayesian(model) or is_ensemble(model):
        raise InputError(f"{what}: a Bayesian or ensemble run has many generators; refine a run with one")
    if isinstance(model, Refined):
        raise InputError(f"{what} is already refined; refine its base run {model.cfg_refine.base} again instead")


class RefinedSampler(nn.Module):
    """Exportable: noise ``[N, noise_dim]``, c ``[N, C]`` -> x ``[N, D]`` = G(r(noise, c), c)."""

    def __init__(self, refiner: nn.Module, generator: nn.Module):
        super().__init__()
        self.refiner, self.generator = refiner, generator

    def forward(self, noise, c):
        return self.generator(self.refiner(noise, c), c)


def identity_inn(dim: int, cond_dim: int, cfg) -> INN:
    """An :class:`~hepgen.models.inn.INN` (card ``cfg``) that is exactly the identity map: every coupling
    subnetwork's output layer is zero (spline: equal bins, unit derivatives; affine: s = t = 0), and the
    last block's permutation undoes the earlier ones', so each column ends where it started."""
    inn = INN(dim, cond_dim, cfg)
    order = torch.arange(dim)
    for block in inn.blocks[:-1]:
        order = order[block.perm]
    with torch.no_grad():
        inn.blocks[-1].perm.copy_(torch.argsort(order))
        inn.blocks[-1].inv_perm.copy_(order)
        for block in inn.blocks:
            block.net.out.weight.zero_()
            block.net.out.bias.zero_()
    return inn


class Refined(Generator):
    """The base generator ``base`` (frozen) behind a latent ``refiner`` (CFM or INN); see the module docstring."""

    def __init__(self, base: Generator, refine_cfg):
        super().__init__(base.dim, base.cond_dim, base.cfg)
        self.base = base
        self.base.requires_grad_(False)
        self.family = base.family
        self.cfg_refine = refine_cfg
        small = dataclasses.replace(base.cfg, family=refine_cfg.refiner,
                                    bayes=dataclasses.replace(base.cfg.bayes, enabled=False),
                                    network=dataclasses.replace(base.cfg.network, hidden=refine_cfg.hidden,
                                                                layers=refine_cfg.layers, backbone="mlp", fourier=0,
                                                                fourier_columns=(), dropout=0.0),
                                    cfm=dataclasses.replace(base.cfg.cfm, solver=refine_cfg.solver,
                                                            steps=refine_cfg.steps, coupling="independent"),
                                    inn=dataclasses.replace(base.cfg.inn, blocks=refine_cfg.blocks, coupling="spline"))
        if refine_cfg.refiner == "inn":
            self.refiner = identity_inn(base.noise_dim(), base.cond_dim, small)
            return
        self.refiner = CFM(base.noise_dim(), base.cond_dim, small)
        if refine_cfg.residual:
            self.refiner.field = ResidualField(self.refiner.field)

    # -- training: the refiner's weighted flow matching (or likelihood) on latent rows z [N, noise_dim] -------
    def loss(self, x, c, weight=None):
        if self.cfg_refine.refiner == "inn":  # evaluation (the validation loss): the weighted likelihood itself
            return inn_residual_loss(self.refiner, x, c, weight) if self.training else self.refiner.loss(x, c, weight)
        if self.cfg_refine.residual:
            return residual_loss(self.refiner, x, c, weight)
        return self.refiner.loss(x, c, weight)

    def train(self, mode: bool = True):
        super().train(mode)
        self.base.eval()  # never trained: dropout and the like stay off
        return self

    # -- the base's hooks and noise ---------------------------------------------------------------------------
    def attach_coords(self, coords):
        self.base.attach_coords(coords)

    def check_coords(self, coords):
        self.base.check_coords(coords)

    def noise_dim(self, **opts) -> int:
        return self.base.noise_dim(**opts)

    def noise_layout(self, **opts) -> list[str]:
        return self.base.noise_layout(**opts)

    def draw_noise(self, n, generator=None, **opts):
        return self.base.draw_noise(n, generator, **opts)

    def sampler_record(self, **opts) -> dict:
        r = self.cfg_refine
        how = f"inn {r.blocks} blocks" if r.refiner == "inn" else f"cfm {r.solver}/{r.steps}"
        return {**self.base.sampler_record(**opts), "refiner": f"laser {how}"}

    def sampler(self, **opts) -> nn.Module:
        return RefinedSampler(self.refiner.sampler(), self.base.sampler(**opts))

    def sample(self, noise: torch.Tensor, c: torch.Tensor, **opts) -> torch.Tensor:
        with torch.no_grad():
            return self.sampler(**opts)(noise, c)
