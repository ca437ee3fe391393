"""A stand-in generation pipeline for the export tests: a real generator + a small inverse transform.

``ToyPipeline(noise [N, G + 2]) -> (p [N, 2, 4], n_jets [N])`` (pt [GeV], eta, phi [rad], mass
[GeV]) for a muon and a back-to-back jet, built like the Z+jets pipeline: a uniform column picks
the condition (a one-hot "multiplicity") from cumulative fractions. The generator (any family, plain or Bayesian, tiny) maps its
G noise columns to 4 network coordinates (pt1, pt2, eta, phi); the transform maps those to
physics with the ops a real coordinate inverse uses (exp, tanh, phi wrapping with floor), and
the last noise column (uniform) is the global azimuth. Used where no trained run (``hepgen.generate.pipeline``) is at
hand: the export does not care where its module comes from.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hepgen.cards import (BayesConfig, CFMConfig, DDPMConfig, INNConfig, JetGPTConfig, ModelConfig,
                          NetworkConfig)
from hepgen.export.bundle import GraphSpec
from hepgen.export.manifest import Port
from hepgen.kinematics import MUON_MASS, wrap_phi
from hepgen.models import build_model
from hepgen.nn.bayesian import materialize

DIM, COND = 4, 3
FAMILIES = ("cfm", "ddpm", "inn", "jetgpt")


class ToyPipeline(nn.Module):
    """noise [N, G + 2] -> (momenta [N, 2, 4], n_jets [N]), built like hepgen's Z+jets pipeline."""

    def __init__(self, sampler: nn.Module, gen_noise: int, fractions=(0.5, 0.3, 0.2)):
        super().__init__()
        self.sampler, self.g = sampler, gen_noise
        cum = [0.0] + list(torch.tensor(fractions).cumsum(0)[:-1].tolist()) + [2.0]
        self.register_buffer("edges", torch.tensor(cum))
        self.register_buffer("mass", torch.tensor([MUON_MASS, 5.0]))

    def forward(self, noise):
        g = self.g
        u_mult, u_phi = noise[:, g], noise[:, g + 1:g + 2]
        ge = [(u_mult >= self.edges[k]).to(noise.dtype) for k in range(self.edges.shape[0])]
        onehot = torch.stack([ge[k] - ge[k + 1] for k in range(len(ge) - 1)], dim=-1)
        x = self.sampler(noise[:, :g], onehot)
        pt = 20.0 + torch.exp(0.5 * x[:, 0:2] + 3.0)
        eta1 = 2.5 * torch.tanh(x[:, 2:3])
        eta = torch.cat([eta1, -eta1], dim=1)
        phi1 = x[:, 3:4] + 2 * math.pi * u_phi
        phi = wrap_phi(torch.cat([phi1, phi1 + math.pi], dim=1))
        mass = self.mass.expand_as(pt)
        n_jets = (onehot * torch.tensor([1.0, 2.0, 3.0])).sum(-1)
        return torch.stack([pt, eta, phi, mass], dim=-1), n_jets


def noise_layout(model) -> tuple[str, ...]:
    """Per generator noise column: JetGPT's first D are uniforms (mixture choice), else normals."""
    g = model.noise_dim()
    if model.family == "jetgpt":
        return ("uniform",) * model.dim + ("normal",) * (g - model.dim)
    return ("normal",) * g


def spec_for(model) -> GraphSpec:
    layout = noise_layout(model) + ("uniform", "uniform")
    return GraphSpec(
        inputs=(Port("noise", (len(layout),), f"generator noise ({model.family}), then U[0,1): multiplicity, azimuth"),),
        outputs=(Port("momenta", (2, 4), "muon, jet four-momenta", "pt GeV, eta, phi rad, mass GeV"),
                 Port("n_jets", (), "jet multiplicity (toy)")),
        noise_layout=layout, objects=("mu1", "j1"),
    )


def toy_model(family: str = "cfm", bayesian: bool = False, hidden: int = 16, layers: int = 1,
              steps: int = 2, solver: str = "rk4", seed: int = 3):
    """A tiny generator of ``family`` with random, non-trivial weights (untrained)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(family=family, network=NetworkConfig(hidden=hidden, layers=layers, heads=2),
                      cfm=CFMConfig(steps=steps, solver=solver, time_embedding=4),
                      ddpm=DDPMConfig(timesteps=100, ddim_steps=steps, time_embedding=4),
                      inn=INNConfig(blocks=2, bins=4),
                      jetgpt=JetGPTConfig(components=3, periodic=(3,)),
                      bayes=BayesConfig(enabled=bayesian, init_log_sigma=-2.0))
    model = build_model(cfg, DIM, COND)
    with torch.no_grad():  # output layers start near zero: give every layer some structure
        for name, p in model.named_parameters():
            if name.endswith(("weight", "weight_mu")) and p.dim() == 2:
                p.normal_(0, 0.4 / math.sqrt(p.shape[1]))
    return model.eval()


def toy_modules(model, bayesian: bool, draws: int, seed: int = 7):
    """(default module, list of draw modules or None) for :func:`hepgen.export.bundle.write_export`."""
    g = model.noise_dim()

    def make(draw):
        return ToyPipeline(materialize(model, draw, seed).sampler(), g).eval()

    return make(None), ([make(k) for k in range(draws)] if bayesian else None)
