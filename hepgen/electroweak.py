"""Electroweak constants and couplings of the Drell-Yan matrix element, as Pythia 8 uses them.

The values are Pythia 8.3's defaults (``pythia8mc``), so that ``hepgen integrate`` and Pythia's
``WeakSingleBoson:ffbar2gmZ`` compute the same cross section:

* ``StandardModel:sin2thetaW = 0.2312`` (:data:`SIN2_THETA_W`) in the Z coupling prefactor
  ``1 / (sin^2 cos^2)``, and ``StandardModel:sin2thetaWbar = 0.2315``
  (:data:`SIN2_THETA_W_EFF`) in the vector couplings ``v_f = a_f - 4 sin^2bar e_f``
  (Pythia's ``CoupSM``; ``a_f = 2 T3 = +-1``);
* the Z mass ``23:m0 = 91.1876`` GeV and the width Pythia recomputes from its partial widths
  at ``init`` (:data:`Z_WIDTH` = 2.50419 GeV; the table's 2.4952 is replaced), in a Breit-Wigner
  with an s-dependent width, ``|D|^2 = (s - m^2)^2 + (s Gamma / m)^2``
  (Pythia's ``Sigma1ffbar2gmZ``);
* alpha_em running at first order (``SigmaProcess:alphaEMorder = 1``) at the scale
  ``Q^2 = s`` (:func:`alpha_em`): above ``Q^2 = 90 GeV^2``,
  ``alpha(Q^2) = a4 / (1 - b a4 ln(Q^2 / 90))`` with ``b = 0.725`` and ``a4`` fixed by
  ``alpha(91.188^2) = StandardModel:alphaEMmZ = 0.00781751`` (Pythia's ``AlphaEM``);
  ``alpha_em(q2, running=False)`` is ``alphaEMmZ`` (``alphaEMorder = -1``).

Chiral couplings in the normalisation of the helicity amplitudes
(:mod:`hepgen.integrate.matrix`): ``g_L = (v_f + a_f) / 4 = T3 - e_f sin^2bar``,
``g_R = (v_f - a_f) / 4 = -e_f sin^2bar``.
"""

from __future__ import annotations

import math

SIN2_THETA_W = 0.2312  # StandardModel:sin2thetaW: the Z coupling prefactor
SIN2_THETA_W_EFF = 0.2315  # StandardModel:sin2thetaWbar: in the vector couplings
ALPHA_EM_MZ = 0.00781751  # StandardModel:alphaEMmZ
Z_MASS = 91.1876  # GeV, 23:m0
Z_WIDTH = 2.5041895850769285  # GeV, the total width Pythia 8.3 computes at init (23:mWidth after init)
GEV2_TO_PB = 0.3893793721e9  # (hbar c)^2 in pb GeV^2

_ALPHA_Q2_STEP = 90.0  # GeV^2, Pythia's last threshold of the running
_ALPHA_B = 0.725  # Pythia's b above it
_ALPHA_MZ_SCALE = 91.188  # GeV, the mass AlphaEM anchors alphaEMmZ at
_ALPHA_STEP = ALPHA_EM_MZ / (1.0 + ALPHA_EM_MZ * _ALPHA_B * math.log(_ALPHA_MZ_SCALE ** 2 / _ALPHA_Q2_STEP))
ALPHA_Q2_MIN = _ALPHA_Q2_STEP  # GeV^2: below this scale the running here does not apply

# PDG ids -> electric charge e_f and 2 T3 (= a_f), the first three generations
CHARGE = {1: -1 / 3, 2: 2 / 3, 3: -1 / 3, 4: 2 / 3, 5: -1 / 3, 11: -1.0, 13: -1.0, 15: -1.0}
AXIAL = {1: -1.0, 2: 1.0, 3: -1.0, 4: 1.0, 5: -1.0, 11: -1.0, 13: -1.0, 15: -1.0}


def alpha_em(q2, running: bool = True):
    """alpha_em at the scale ``q2`` (GeV^2, a float or a tensor/array >= 90 GeV^2) as Pythia's
    first-order running; ``running=False``: alpha_em(m_Z)."""
    if not running:
        return ALPHA_EM_MZ + 0.0 * q2
    log = math.log(q2 / _ALPHA_Q2_STEP) if isinstance(q2, (int, float)) else (q2 / _ALPHA_Q2_STEP).log()
    return _ALPHA_STEP / (1.0 - _ALPHA_B * _ALPHA_STEP * log)


def vector_coupling(pdg: int) -> float:
    """Pythia's ``v_f = a_f - 4 sin^2bar(theta_W) e_f``."""
    a = abs(pdg)
    return AXIAL[a] - 4.0 * SIN2_THETA_W_EFF * CHARGE[a]


def chiral_couplings(pdg: int) -> tuple[float, float]:
    """``(g_L, g_R)`` of fermion ``|pdg|``: ``((v + a) / 4, (v - a) / 4)``."""
    v, a = vector_coupling(pdg), AXIAL[abs(pdg)]
    return (v + a) / 4.0, (v - a) / 4.0


def z_coupling_prefactor() -> float:
    """``1 / (sin^2 theta_W cos^2 theta_W)``, the factor of the Z exchange relative to the photon's."""
    return 1.0 / (SIN2_THETA_W * (1.0 - SIN2_THETA_W))
