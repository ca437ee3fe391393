"""One real emission: p p -> gamma*/Z + parton -> mu- mu+ + (g or q), at LO with a pT cut.

``integrate.emission: real`` replaces the 2 -> 2 Drell-Yan of :mod:`~hepgen.integrate.integrand`
by the 2 -> 3 processes q qbar -> mu- mu+ g and q g -> mu- mu+ q (and their antiquark and
beam-swapped versions), with the parton's pT above ``integrate.pt_min``; the matrix elements are
:func:`~hepgen.integrate.matrix.squared_me_qqbar_g` and :func:`~hepgen.integrate.matrix.squared_me_qg_q`.

A point ``r`` of the unit hypercube ``[N, 7]`` maps to:

* ``r0 -> m^2`` of the pair by the channel's mapping (photon pole or Z Breit-Wigner, as at Born level);
* ``r1 -> pT^2`` of the pair (= the parton's), log-uniform between ``pt_min^2`` and the
  kinematic limit ``((S - m^2) / (2 sqrt S))^2`` (the 1/pT^2 of the emission);
* ``r2, r3 -> y_V, y_j``: the rapidities of the pair and the parton, uniform within the bounds
  that energy conservation allows (``m_T cosh y_V <= sqrt S - pT``, ``pT cosh y_j <= sqrt S - m_T``);
  then ``x1,2 = (m_T e^{+-y_V} + pT e^{+-y_j}) / sqrt S``; points with ``x > 1`` have zero
  weight (the cut efficiency);
* ``r4 -> phi`` of the pair; ``r5, r6 -> cos theta*, phi*`` of the mu- in the pair's rest frame
  (axes parallel to the lab's; the measure does not depend on their choice).

The cross section is ::

    dsigma = sum xf(x1) xf(x2) |M|^2 / (32 pi^2 s_hat^2) dpT^2 dphi dy_V dy_j
             * dm^2 / (2 pi) * dcos* dphi* / (32 pi^2)

(the 2 -> 2 phase space of the pair and the parton, the pair's mass, its two-body decay). The
scales are those of Pythia's 2 -> 2 processes (``SigmaProcess:renormScale2 = 2``,
``factorScale2 = 1``): ``mu_R^2 = sqrt(m_T^2 pT^2)``, the geometric mean of the two transverse
masses, and ``mu_F^2 = pT^2``, the smaller one; alpha_s (:func:`hepgen.qcd.alpha_s`) and
alpha_em run at ``mu_R^2``, as Pythia's ``alpS`` and ``alpEM`` do. ``scale_factor`` multiplies
both scales.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..electroweak import GEV2_TO_PB, alpha_em
from ..fourvectors import boost_from_rest
from ..qcd import alpha_s
from .integrand import DrellYan
from .matrix import squared_me_qg_q, squared_me_qqbar_g

DIM = 7


@dataclass(frozen=True)
class EmissionPoint:
    """A batch of 2 -> 3 points: the pair mass^2 ``s`` and pT, the parton momentum fractions, the
    lab momenta ``[N, 4]`` (E, px, py, pz) of the incoming partons along +z (``a``) and -z
    (``b``), the mu-, mu+ and outgoing parton, ``rest`` ``[N, 6]`` the hypercube coordinates
    r1..r6 (the same in every channel: only r0 maps differently), and
    ``|d(m^2, pT^2, y_V, y_j, phi, cos*, phi*) / dr|`` (0 outside the kinematic limits)."""

    s: torch.Tensor
    pt: torch.Tensor
    y: torch.Tensor
    y_parton: torch.Tensor
    x1: torch.Tensor
    x2: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    minus: torch.Tensor
    plus: torch.Tensor
    parton: torch.Tensor
    rest: torch.Tensor
    jacobian: torch.Tensor


def emission_kinematics(r: torch.Tensor, mapping, s_hadronic: float, pt_min: float) -> EmissionPoint:
    """The point of ``r`` ``[N, 7]`` (see the module docstring)."""
    r = r.to(torch.float64)
    root_s = math.sqrt(s_hadronic)
    s, jac_s = mapping.forward(r[:, 0])
    m = torch.sqrt(s)
    lo, hi = math.log(pt_min ** 2), torch.log(((s_hadronic - s) / (2 * root_s)) ** 2)
    pt2 = torch.exp(lo + r[:, 1] * (hi - lo))
    pt = torch.sqrt(pt2)
    mt = torch.sqrt(s + pt2)
    ok = hi > lo
    yv_max = torch.acosh(((root_s - pt) / mt).clamp(min=1.0))
    yj_max = torch.acosh(((root_s - mt) / pt).clamp(min=1.0))
    y = yv_max * (2 * r[:, 2] - 1)
    yj = yj_max * (2 * r[:, 3] - 1)
    phi = 2 * math.pi * r[:, 4]
    x1 = (mt * torch.exp(y) + pt * torch.exp(yj)) / root_s
    x2 = (mt * torch.exp(-y) + pt * torch.exp(-yj)) / root_s
    ok = ok & (x1 < 1) & (x2 < 1)
    cos_phi, sin_phi = torch.cos(phi), torch.sin(phi)
    pair = torch.stack([mt * torch.cosh(y), pt * cos_phi, pt * sin_phi, mt * torch.sinh(y)], dim=1)
    parton = torch.stack([pt * torch.cosh(yj), -pt * cos_phi, -pt * sin_phi, pt * torch.sinh(yj)], dim=1)
    cos_t = 2 * r[:, 5] - 1
    sin_t = torch.sqrt((1 - cos_t ** 2).clamp(min=0.0))
    phi_d = 2 * math.pi * r[:, 6]
    half = 0.5 * m
    rest = torch.stack([half, half * sin_t * torch.cos(phi_d), half * sin_t * torch.sin(phi_d), half * cos_t], dim=1)
    minus = boost_from_rest(rest, pair, m)
    plus = pair - minus
    zero = torch.zeros_like(x1)
    a = torch.stack([x1, zero, zero, x1], dim=1) * (0.5 * root_s)
    b = torch.stack([x2, zero, zero, -x2], dim=1) * (0.5 * root_s)
    jacobian = jac_s * pt2 * (hi - lo) * (2 * yv_max) * (2 * yj_max) * (2 * math.pi) * 2 * (2 * math.pi)
    return EmissionPoint(s, pt, y, yj, x1.clamp(max=1.0), x2.clamp(max=1.0), a, b, minus, plus, parton, r[:, 1:],
                         torch.where(ok, jacobian, torch.zeros_like(jacobian)))


class DrellYanJet(DrellYan):
    """The integrand of p p -> gamma*/Z + parton -> mu- mu+ + parton with ``pT > pt_min`` (GeV):
    the interface of :class:`~hepgen.integrate.integrand.DrellYan` on the 7-dimensional hypercube."""

    dim = DIM
    SUBPROCESSES = ("qqbar", "qg")

    def __init__(self, cfg, sqrt_s: float, pdf=None, subprocesses: tuple[str, ...] = SUBPROCESSES):
        """``subprocesses``: q qbar -> mu mu g ("qqbar") and q g -> mu mu q ("qg", with the
        antiquark and the gluon from either beam); both by default."""
        super().__init__(cfg, sqrt_s, pdf)
        self.subprocesses = tuple(subprocesses)

    def point(self, r: torch.Tensor, channel: int) -> EmissionPoint:
        return emission_kinematics(r, self.mappings[channel], self.s_hadronic, self.cfg.pt_min)

    def differential(self, p: EmissionPoint) -> torch.Tensor:
        """``dsigma / d(m^2, pT^2, y_V, y_j, phi, cos*, phi*)`` in pb GeV^-2, float64 ``[N]``."""
        self.calls += len(p.s)
        f2 = self.cfg.scale_factor ** 2
        mu_r2 = f2 * torch.sqrt((p.s + p.pt ** 2) * p.pt ** 2)
        mu_f2 = f2 * p.pt ** 2
        a_em = alpha_em(mu_r2, self.cfg.alpha_em == "running")
        a_s = alpha_s(mu_r2)
        photon, z = self.cfg.exchange != "z", self.cfg.exchange != "photon"
        pdf = self.pdf.xfx
        g1, g2 = pdf(21, p.x1, mu_f2), pdf(21, p.x2, mu_f2)
        total = torch.zeros_like(p.s)
        for q in self.quarks:
            q1, q2, qb1, qb2 = pdf(q, p.x1, mu_f2), pdf(q, p.x2, mu_f2), pdf(-q, p.x1, mu_f2), pdf(-q, p.x2, mu_f2)
            ann = (q1 * qb2 * squared_me_qqbar_g(q, p.a, p.b, p.minus, p.plus, p.parton, a_em, a_s, photon, z)
                   + qb1 * q2 * squared_me_qqbar_g(q, p.b, p.a, p.minus, p.plus, p.parton, a_em, a_s, photon, z))
            # q g and qbar g (mu- and mu+ exchanged), the quark from either beam
            comp = (q1 * g2 * squared_me_qg_q(q, p.a, p.b, p.minus, p.plus, p.parton, a_em, a_s, photon, z)
                    + g1 * q2 * squared_me_qg_q(q, p.b, p.a, p.minus, p.plus, p.parton, a_em, a_s, photon, z)
                    + qb1 * g2 * squared_me_qg_q(q, p.a, p.b, p.plus, p.minus, p.parton, a_em, a_s, photon, z)
                    + g1 * qb2 * squared_me_qg_q(q, p.b, p.a, p.plus, p.minus, p.parton, a_em, a_s, photon, z))
            total = total + ("qqbar" in self.subprocesses) * ann + ("qg" in self.subprocesses) * comp
        s_hat = p.x1 * p.x2 * self.s_hadronic
        norm = GEV2_TO_PB / (32 * math.pi ** 2 * s_hat ** 2) / (2 * math.pi) / (32 * math.pi ** 2)
        return torch.where(p.jacobian > 0, total * norm, torch.zeros_like(total))

    def coordinates(self, p: EmissionPoint) -> torch.Tensor:
        """The channel-independent point ``[N, 7]`` for the learned channel weights: log m^2 scaled
        to [0, 1] (as at Born level), then r1..r6."""
        u = torch.log(p.s / self.s_min) / math.log(self.s_max / self.s_min)
        return torch.cat([u[:, None], p.rest], dim=1)

    def final_state(self, p: EmissionPoint) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The mu-, mu+ and the outgoing parton: ``to_events`` writes the parton as a ``Jet`` of mass 0."""
        return p.minus, p.plus, p.parton
