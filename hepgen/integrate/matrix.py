"""The tree-level matrix element of q qbar -> gamma*/Z -> mu- mu+, in torch (float64).

For massless fermions, with ``theta`` the angle between the incoming quark and the outgoing
mu- in the parton centre-of-mass frame and ``c = cos(theta)``, the spin- and colour-averaged
squared matrix element is (e.g. Peskin & Schroeder, "An Introduction to Quantum Field Theory",
eqs. 5.22 and problem 5.2, with the Z added; Ellis, Stirling & Webber, "QCD and Collider
Physics", eq. 9.7)::

    |M|^2 = e^4 / (4 N_c) [ (|A_LL|^2 + |A_RR|^2) (1 + c)^2 + (|A_LR|^2 + |A_RL|^2) (1 - c)^2 ]

    A_ij = Q_q Q_mu + g_i^q g_j^mu / (sin^2 cos^2) * s / (s - m_Z^2 + i s Gamma_Z / m_Z)

with ``e^2 = 4 pi alpha_em(s)``, ``N_c = 3``, the chiral couplings ``g_L = T3 - Q sin^2``,
``g_R = -Q sin^2`` and the Z propagator with an s-dependent width, all as Pythia 8 has them
(:mod:`hepgen.electroweak`). ``dsigma / dOmega = |M|^2 / (64 pi^2 s)``; integrated over the
angles this is Pythia's ``Sigma1ffbar2gmZ::sigmaHat`` for a mu+ mu- final state, and for the
photon alone ``sigma = 4 pi alpha^2 Q_q^2 / (3 N_c s)``.
"""

from __future__ import annotations

import math

import torch

from ..electroweak import CHARGE, Z_MASS, Z_WIDTH, alpha_em, chiral_couplings, z_coupling_prefactor

N_COLOURS = 3
MUON = 13
QUARKS = (1, 2, 3, 4, 5)  # d u s c b


def z_propagator(s: torch.Tensor, m_z: float = Z_MASS, width: float = Z_WIDTH) -> torch.Tensor:
    """``s / (s - m^2 + i s Gamma / m)`` (complex ``[N]``)."""
    return s / torch.complex(s - m_z ** 2, s * width / m_z)


def helicity_amplitudes(quark: int, s: torch.Tensor, photon: bool = True, z: bool = True) -> dict[str, torch.Tensor]:
    """``A_ij`` for i (quark), j (muon) in L, R (complex ``[N]``); ``photon`` / ``z`` switch the
    two exchanges (Pythia's ``WeakZ0:gmZmode`` 1 and 2)."""
    chi = z_propagator(s) * z_coupling_prefactor() if z else torch.zeros_like(s, dtype=torch.complex128)
    qed = CHARGE[quark] * CHARGE[MUON] if photon else 0.0
    gq, gl = chiral_couplings(quark), chiral_couplings(MUON)
    return {a + b: qed + gq[i] * gl[j] * chi for i, a in enumerate("LR") for j, b in enumerate("LR")}


def squared_me(quark: int, s: torch.Tensor, cos_theta: torch.Tensor, running: bool = True,
               photon: bool = True, z: bool = True) -> torch.Tensor:
    """Spin- and colour-averaged ``|M|^2`` of ``q qbar -> mu- mu+`` (dimensionless, float64 ``[N]``)
    at ``s`` (GeV^2) and ``cos_theta`` (quark -> mu- angle in the parton frame)."""
    amp = helicity_amplitudes(quark, s, photon, z)
    e4 = (4 * math.pi * alpha_em(s, running)) ** 2
    same = amp["LL"].abs() ** 2 + amp["RR"].abs() ** 2
    opposite = amp["LR"].abs() ** 2 + amp["RL"].abs() ** 2
    return e4 / (4 * N_COLOURS) * (same * (1 + cos_theta) ** 2 + opposite * (1 - cos_theta) ** 2)


def partonic_cross_section(quark: int, s: torch.Tensor, running: bool = True, photon: bool = True,
                           z: bool = True) -> torch.Tensor:
    """``sigma(q qbar -> mu- mu+)`` (GeV^-2) at ``s``: :func:`squared_me` integrated over the
    angles in closed form (``int (1 +- c)^2 dc = 8/3``)."""
    amp = helicity_amplitudes(quark, s, photon, z)
    e4 = (4 * math.pi * alpha_em(s, running)) ** 2
    total = sum(a.abs() ** 2 for a in amp.values())
    return e4 / (4 * N_COLOURS) * total * (8.0 / 3.0) * 2 * math.pi / (64 * math.pi ** 2 * s)
