"""The 2 -> 2 phase space of p p -> mu- mu+ at LO and its two channel mappings.

A point ``r`` in the unit hypercube ``[N, 4]`` maps to the partonic invariants:

* ``r0 -> s`` (GeV^2, between ``m_min^2`` and ``m_max^2``) by a channel mapping:

  - :class:`PhotonPole`: density ``1 / (s ln(s_max / s_min))``, ``s = s_min (s_max / s_min)^r0``
    (the ``1/m^2`` of the photon exchange);
  - :class:`BreitWigner`: density ``m Gamma / (((s - m^2)^2 + m^2 Gamma^2) (rho_max - rho_min))``,
    ``s = m^2 + m Gamma tan(rho)``, ``rho`` uniform (the Z resonance);

* ``r1 -> y`` (the rapidity of the pair), uniform in ``|y| < -ln(tau) / 2``, ``tau = s / S``;
  then ``x1 = sqrt(tau) e^y``, ``x2 = sqrt(tau) e^-y`` (``dx1 dx2 = dtau dy``);
* ``r2 -> cos(theta) = 2 r2 - 1``, ``r3 -> phi = 2 pi r3``: the mu- direction in the pair's rest
  frame, theta measured from the +z beam.

:func:`kinematics` returns the invariants and the Jacobian ``d(s, y, cos, phi) / dr``; the
inverse maps (:meth:`Mapping.inverse`) give each channel's density at any point, for the
multi-channel weights ``alpha_c = g_c / sum g``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


class Mapping:
    """A map of ``r in [0, 1]`` onto ``s in [s_min, s_max]`` with its density."""

    name = ""

    def __init__(self, s_min: float, s_max: float):
        self.s_min, self.s_max = s_min, s_max

    def forward(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(s, ds/dr)``."""
        raise NotImplementedError

    def inverse(self, s: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def density(self, s: torch.Tensor) -> torch.Tensor:
        """``dr/ds`` (GeV^-2): the density of ``s`` the mapping samples from a uniform ``r``."""
        raise NotImplementedError


class PhotonPole(Mapping):
    name = "photon"

    def forward(self, r):
        log = math.log(self.s_max / self.s_min)
        s = self.s_min * torch.exp(r * log)
        return s, s * log

    def inverse(self, s):
        return torch.log(s / self.s_min) / math.log(self.s_max / self.s_min)

    def density(self, s):
        return 1.0 / (s * math.log(self.s_max / self.s_min))


class BreitWigner(Mapping):
    name = "z"

    def __init__(self, s_min: float, s_max: float, mass: float, width: float):
        super().__init__(s_min, s_max)
        self.m2, self.mg = mass ** 2, mass * width
        self.rho_min = math.atan((s_min - self.m2) / self.mg)
        self.rho_max = math.atan((s_max - self.m2) / self.mg)

    def forward(self, r):
        rho = self.rho_min + r * (self.rho_max - self.rho_min)
        s = self.m2 + self.mg * torch.tan(rho)
        return s, ((s - self.m2) ** 2 + self.mg ** 2) / self.mg * (self.rho_max - self.rho_min)

    def inverse(self, s):
        return (torch.atan((s - self.m2) / self.mg) - self.rho_min) / (self.rho_max - self.rho_min)

    def density(self, s):
        return self.mg / (((s - self.m2) ** 2 + self.mg ** 2) * (self.rho_max - self.rho_min))


@dataclass(frozen=True)
class PhaseSpacePoint:
    """Partonic invariants of a batch (float64 ``[N]``) and ``|d(s, y, cos, phi) / dr|``."""

    s: torch.Tensor
    y: torch.Tensor
    cos_theta: torch.Tensor
    phi: torch.Tensor
    x1: torch.Tensor
    x2: torch.Tensor
    jacobian: torch.Tensor


def kinematics(r: torch.Tensor, mapping: Mapping, s_hadronic: float) -> PhaseSpacePoint:
    """The point of ``r`` ``[N, 4]`` (see the module docstring) for the beams' ``S`` (GeV^2)."""
    r = r.to(torch.float64)
    s, jac_s = mapping.forward(r[:, 0])
    y_max = -0.5 * torch.log(s / s_hadronic)
    y = y_max * (2 * r[:, 1] - 1)
    root_tau = torch.sqrt(s / s_hadronic)
    cos_theta = 2 * r[:, 2] - 1
    phi = 2 * math.pi * r[:, 3]
    jacobian = jac_s * (2 * y_max) * 2 * (2 * math.pi)
    return PhaseSpacePoint(s, y, cos_theta, phi, root_tau * torch.exp(y), root_tau * torch.exp(-y), jacobian)


def common_coordinates(point: PhaseSpacePoint, s_min: float, s_max: float) -> torch.Tensor:
    """A channel-independent point of the unit hypercube ``[N, 4]`` (log s, the rapidity fraction,
    cos, phi scaled to [0, 1]): the input of the learned channel weights."""
    u = torch.log(point.s / s_min) / math.log(s_max / s_min)
    y_max = -0.5 * torch.log(point.x1 * point.x2)
    return torch.stack([u, 0.5 * (point.y / y_max + 1), 0.5 * (point.cos_theta + 1), point.phi / (2 * math.pi)], dim=1)


def muon_momenta(point: PhaseSpacePoint) -> tuple[torch.Tensor, torch.Tensor]:
    """Lab-frame (E, px, py, pz) ``[N, 4]`` of the mu- and the mu+ (massless, GeV)."""
    half = 0.5 * torch.sqrt(point.s)
    sin = torch.sqrt((1 - point.cos_theta ** 2).clamp(min=0.0))
    p = torch.stack([half, half * sin * torch.cos(point.phi), half * sin * torch.sin(point.phi),
                     half * point.cos_theta], dim=1)
    anti = torch.cat([p[:, :1], -p[:, 1:]], dim=1)
    ch, sh = torch.cosh(point.y)[:, None], torch.sinh(point.y)[:, None]  # boost along z by the rapidity y

    def boost(q):
        return torch.stack([ch[:, 0] * q[:, 0] + sh[:, 0] * q[:, 3], q[:, 1], q[:, 2],
                            sh[:, 0] * q[:, 0] + ch[:, 0] * q[:, 3]], dim=1)

    return boost(p), boost(anti)
