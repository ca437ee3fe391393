"""LASER: latent space refinement of a trained generator (Winterhalder et al., arXiv:2106.00792).

A refined run (``hepgen refine``, :mod:`hepgen.refine`; card section ``refine``) holds the base run's
generator G(z, c), frozen, and a small CFM r in G's latent space (:class:`Refined`):

    x = G(r(u, c), c),    u ~ the base's noise (N(0, 1), ``noise_dim`` columns)

The refiner is trained, by the one training loop, on the base's latent vectors z with their
condition c and the DCTR weight w(G(z, c)) of the event they made (:mod:`hepgen.latent`): a weighted
flow-matching regression, so r carries N(0, 1) to the weighted latent density p(z) w(G(z, c)), whose
image under G is the data density the classifier saw. Sampling stays a pure function of explicit
noise with the base's noise layout: the process's pipeline, ``hepgen generate`` and the ONNX export
(one graph, refiner then generator) use it as they use the base.

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


class Refined(Generator):
    """The base generator ``base`` (frozen) behind a latent CFM ``refiner``; see the module docstring."""

    def __init__(self, base: Generator, refine_cfg):
        super().__init__(base.dim, base.cond_dim, base.cfg)
        self.base = base
        self.base.requires_grad_(False)
        self.family = base.family
        self.cfg_refine = refine_cfg
        small = dataclasses.replace(base.cfg, family="cfm", bayes=dataclasses.replace(base.cfg.bayes, enabled=False),
                                    network=dataclasses.replace(base.cfg.network, hidden=refine_cfg.hidden,
                                                                layers=refine_cfg.layers, backbone="mlp", fourier=0,
                                                                dropout=0.0),
                                    cfm=dataclasses.replace(base.cfg.cfm, solver=refine_cfg.solver,
                                                            steps=refine_cfg.steps, coupling="independent"))
        self.refiner = CFM(base.noise_dim(), base.cond_dim, small)

    # -- training: the refiner's weighted flow matching on latent rows z [N, noise_dim] ---------------------
    def loss(self, x, c, weight=None):
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
        return {**self.base.sampler_record(**opts), "refiner": f"laser cfm {r.solver}/{r.steps}"}

    def sampler(self, **opts) -> nn.Module:
        return RefinedSampler(self.refiner.sampler(), self.base.sampler(**opts))

    def sample(self, noise: torch.Tensor, c: torch.Tensor, **opts) -> torch.Tensor:
        with torch.no_grad():
            return self.sampler(**opts)(noise, c)
