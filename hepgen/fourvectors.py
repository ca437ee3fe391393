"""Four-vector formulas for exportable torch modules (the network coordinates of tt̄).

The torch-only companions of :mod:`hepgen.kinematics` (which serves numpy and torch but stays
free of torch at import): only Exp, Log, Sqrt, Atan, Sin, Cos, Where and arithmetic, so ONNX
graphs and SOFIE C++ carry them. Four-vectors are ``[..., 4]`` (E, px, py, pz) in GeV.
"""

from __future__ import annotations

import math

import torch


def atan2_exportable(y, x):
    """atan2(y, x) in (-pi, pi] from Atan and Where (x = 0: +-pi/2 from y / 0 = +-inf)."""
    base = torch.atan(y / x)
    return torch.where(x < 0, torch.where(y >= 0, base + math.pi, base - math.pi), base)


def asinh_exportable(z):
    """asinh(z), accurate for either sign: log(z + sqrt(z^2 + 1)), mirrored for z < 0."""
    s = torch.sqrt(z * z + 1)
    return torch.where(z < 0, -torch.log(s - z), torch.log(s + z))


def fourvector(pt, eta, phi, m):
    """(pt, eta, phi, m) tensors -> ``[..., 4]`` (E, px, py, pz) with Exp instead of Sinh/Cosh."""
    sinh = 0.5 * (torch.exp(eta) - torch.exp(-eta))
    pz = pt * sinh
    e = torch.sqrt(m * m + pt * pt + pz * pz)
    return torch.stack([e, pt * torch.cos(phi), pt * torch.sin(phi), pz], dim=-1)


def ptetaphi(p):
    """``[..., 4]`` (E, px, py, pz) -> (pt, eta, phi), exportable."""
    pt = torch.sqrt(p[..., 1] ** 2 + p[..., 2] ** 2)
    return pt, asinh_exportable(p[..., 3] / pt), atan2_exportable(p[..., 2], p[..., 1])


def mass(p):
    """Invariant mass of ``[..., 4]`` four-vectors (0 where m^2 < 0)."""
    m2 = p[..., 0] ** 2 - (p[..., 1:] ** 2).sum(-1)
    return torch.sqrt(torch.clamp(m2, min=0.0))


def boost(p, parent, sign: float = 1.0, parent_mass=None):
    """``p`` ``[..., 4]`` boosted by the velocity of ``parent`` ``[..., 4]`` (``sign`` = -1: into
    the parent's rest frame; +1: from its rest frame back to the frame ``parent`` is given in).
    ``parent_mass`` ``[...]``: the parent's mass where it is known (default: from ``parent``).
    Uses (gamma - 1) / beta^2 = gamma^2 / (gamma + 1), which is stable at small beta."""
    e0 = parent[..., :1]
    beta = sign * parent[..., 1:] / e0
    gamma = e0 / (mass(parent) if parent_mass is None else parent_mass).unsqueeze(-1)
    bp = (beta * p[..., 1:]).sum(-1, keepdim=True)
    q = p[..., 1:] + (gamma * gamma / (gamma + 1) * bp + gamma * p[..., :1]) * beta
    return torch.cat([gamma * (p[..., :1] + bp), q], dim=-1)


def helicity_axes(direction):
    """Right-handed unit axes (x', y', z') ``[..., 3]`` each: z' along ``direction`` ``[..., 3]``,
    x' in the plane of z' and the beam (+z), pointing towards the beam."""
    z = direction / torch.sqrt((direction ** 2).sum(-1, keepdim=True))
    beam = torch.zeros_like(z)
    beam = beam + torch.tensor([0.0, 0.0, 1.0], dtype=z.dtype, device=z.device)
    x = beam - z[..., 2:3] * z
    x = x / torch.sqrt((x ** 2).sum(-1, keepdim=True))
    y = torch.stack([z[..., 1] * x[..., 2] - z[..., 2] * x[..., 1], z[..., 2] * x[..., 0] - z[..., 0] * x[..., 2],
                     z[..., 0] * x[..., 1] - z[..., 1] * x[..., 0]], dim=-1)
    return x, y, z


def two_body_momentum(m, m1, m2):
    """Momentum of either daughter in the rest frame of a parent of mass ``m`` decaying to masses
    ``m1``, ``m2`` (0 where the decay is closed)."""
    lam = (m * m - (m1 + m2) ** 2) * (m * m - (m1 - m2) ** 2)
    return torch.sqrt(torch.clamp(lam, min=0.0)) / (2 * m)
