"""A stand-in generation pipeline for the export tests: a real CFM + a small inverse transform.

``ToyPipeline(noise [N, 7], c [N, 3]) -> p [N, 2, 4]`` (pt [GeV], eta, phi, mass [GeV]) for a
muon and a jet: the CFM maps 6 Gaussian columns to network coordinates, the transform maps them
to physics with the ops a real coordinate inverse uses (exp, tanh, phi wrapping), and the last
noise column (uniform) is the global azimuth. Used until ``hepgen.generate.pipeline`` is merged.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hepgen.cards import BayesConfig, CFMConfig, ModelConfig, NetworkConfig
from hepgen.export.bundle import GraphSpec
from hepgen.export.manifest import Port
from hepgen.kinematics import MUON_MASS, wrap_phi
from hepgen.models import build_model
from hepgen.nn.bayesian import materialize

DIM, COND = 6, 3


class ToyPipeline(nn.Module):
    def __init__(self, sampler: nn.Module):
        super().__init__()
        self.sampler = sampler
        self.register_buffer("mass", torch.tensor([MUON_MASS, 5.0]))

    def forward(self, noise, c):
        x = self.sampler(noise[:, :DIM], c)
        u = noise[:, DIM:DIM + 1]
        pt = 20.0 + torch.exp(0.5 * x[:, 0:2] + 3.0)
        eta = 2.5 * torch.tanh(x[:, 2:4])
        phi = wrap_phi(x[:, 4:6] + 2 * math.pi * u)
        mass = self.mass.expand_as(pt)
        return torch.stack([pt, eta, phi, mass], dim=-1)


SPEC = GraphSpec(
    inputs=(Port("noise", (DIM + 1,), "6 N(0,1) columns, then U[0,1) global azimuth"),
            Port("condition", (COND,), "one-hot jet multiplicity")),
    outputs=(Port("momenta", (2, 4), "muon, jet four-momenta", "pt GeV, eta, phi rad, mass GeV"),),
    noise_layout=("normal",) * DIM + ("uniform",),
    objects=("mu1", "j1"),
)


def toy_model(bayesian: bool, hidden: int = 16, layers: int = 1, steps: int = 2, solver: str = "rk4", seed: int = 3):
    """A CFM with random (untrained, but not zero-output) weights."""
    torch.manual_seed(seed)
    cfg = ModelConfig(network=NetworkConfig(hidden=hidden, layers=layers),
                      cfm=CFMConfig(steps=steps, solver=solver, time_embedding=4),
                      bayes=BayesConfig(enabled=bayesian, init_log_sigma=-2.0))
    model = build_model(cfg, DIM, COND)
    with torch.no_grad():  # the output layer starts near zero: give the field some structure
        for p in model.parameters():
            if p.dim() == 2 and not (bayesian and p.shape == getattr(p, "shape", None) and False):
                pass
        out = model.field.net.out
        (out.weight_mu if bayesian else out.weight).normal_(0, 0.3)
    return model


def toy_modules(model, bayesian: bool, draws: int, seed: int = 7):
    """(default module, list of draw modules) for :func:`hepgen.export.bundle.write_export`."""
    default = ToyPipeline(materialize(model, None, seed).sampler()).eval()
    if not bayesian:
        return default, None
    return default, [ToyPipeline(materialize(model, k, seed).sampler()).eval() for k in range(draws)]
