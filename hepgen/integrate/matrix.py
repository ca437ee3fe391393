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


# -- one real emission: q qbar -> mu- mu+ g and q g -> mu- mu+ q ------------------------------------

C_F = 4.0 / 3.0


def _s(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``2 a.b`` (Minkowski, (E, px, py, pz) ``[N, 4]``)."""
    return 2.0 * (a[:, 0] * b[:, 0] - (a[:, 1:] * b[:, 1:]).sum(dim=1))


def _emission(quark: int, s34: torch.Tensor, alpha_em_value: torch.Tensor, alpha_s_value: torch.Tensor,
              same_pairs: torch.Tensor, opposite_pairs: torch.Tensor, photon: bool, z: bool) -> torch.Tensor:
    """``2 g_s^2 C_F e^4 / N_c [same * same_pairs + opposite * opposite_pairs]`` with the helicity
    sums ``same = |A_LL|^2 + |A_RR|^2``, ``opposite = |A_LR|^2 + |A_RL|^2`` at the pair mass."""
    amp = helicity_amplitudes(quark, s34, photon, z)
    same = amp["LL"].abs() ** 2 + amp["RR"].abs() ** 2
    opposite = amp["LR"].abs() ** 2 + amp["RL"].abs() ** 2
    e4 = (4 * math.pi * alpha_em_value) ** 2
    return 2 * (4 * math.pi * alpha_s_value) * C_F * e4 / N_COLOURS * (same * same_pairs + opposite * opposite_pairs)


def squared_me_qqbar_g(quark: int, q, qbar, minus, plus, gluon, alpha_em_value, alpha_s_value,
                       photon: bool = True, z: bool = True) -> torch.Tensor:
    """Spin- and colour-averaged ``|M|^2`` of ``q qbar -> gamma*/Z g -> mu- mu+ g`` (massless,
    momenta ``[N, 4]`` (E, px, py, pz) in GeV; dimension GeV^-2), with ``s_ij = 2 p_i.p_j`` and
    1 = q, 2 = qbar, 3 = mu-, 4 = mu+, 5 = g::

        |M|^2 = 2 g_s^2 C_F e^4 / N_c  [ same (s14^2 + s23^2) + opposite (s13^2 + s24^2) ]
                                        / (s15 s25 s34)

    ``same``, ``opposite`` and the exchanges as :func:`squared_me`, at ``s = s34``. The helicity
    structure is that of the five-point amplitudes (Ellis, Stirling & Webber, "QCD and Collider
    Physics", ch. 9.2, the crossing of e+e- -> q qbar g; Pythia's ``Sigma2ffbargmZggm::weightDecay``
    has the same pairing of momenta and couplings); the normalisation is fixed by the soft-gluon
    limit, ``|M|^2 -> g_s^2 C_F 4 s12 / (s15 s25) |M_Born|^2`` (tested), and the lepton-integrated
    rate is Pythia's ``Sigma2qqbar2gmZg`` (tests/test_integrate_emission.py)."""
    s34 = _s(minus, plus)
    same = _s(q, plus) ** 2 + _s(qbar, minus) ** 2
    opposite = _s(q, minus) ** 2 + _s(qbar, plus) ** 2
    den = _s(q, gluon) * _s(qbar, gluon) * s34
    return _emission(quark, s34, alpha_em_value, alpha_s_value, same, opposite, photon, z) / den


def squared_me_qg_q(quark: int, q, g, minus, plus, out, alpha_em_value, alpha_s_value,
                    photon: bool = True, z: bool = True) -> torch.Tensor:
    """``|M|^2`` of ``q g -> gamma*/Z q -> mu- mu+ q``: :func:`squared_me_qqbar_g` crossed
    (qbar -> the outgoing quark ``out``, the gluon -> the incoming ``g``: the invariants change
    sign in pairs, one crossed fermion gives -1) and averaged over the gluon's 8 colours instead
    of the antiquark's 3 (a factor N_c / (N_c^2 - 1) = 3/8)::

        |M|^2 = 3/8 * 2 g_s^2 C_F e^4 / N_c [ same (s14^2 + s_o3^2) + opposite (s13^2 + s_o4^2) ]
                                               / (s1g s_go s34)

    An incoming antiquark (``qbar g -> mu- mu+ qbar``) is this with mu- and mu+ exchanged (CP)."""
    s34 = _s(minus, plus)
    same = _s(q, plus) ** 2 + _s(out, minus) ** 2
    opposite = _s(q, minus) ** 2 + _s(out, plus) ** 2
    den = _s(q, g) * _s(g, out) * s34
    colour = N_COLOURS / (N_COLOURS ** 2 - 1)
    return colour * _emission(quark, s34, alpha_em_value, alpha_s_value, same, opposite, photon, z) / den
