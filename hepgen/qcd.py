"""The strong coupling of Pythia 8's hard processes, so that ``hepgen integrate`` and Pythia's
2 -> 2 processes (``WeakBosonAndParton:qqbar2gmZg``, ``qg2gmZq``) use the same alpha_s.

Pythia's ``SigmaProcess:alphaSvalue = 0.13`` at m_Z with ``SigmaProcess:alphaSorder = 1``
(first-order running): ``alpha_s(Q^2) = 12 pi / ((33 - 2 n_f) ln(Q^2 / Lambda_nf^2))`` with
Lambda_5 fixed by alpha_s(m_Z) and Lambda_4, Lambda_3, Lambda_6 by continuity at the quark
thresholds 1.5, 4.8 and 171.0 GeV (Pythia's ``AlphaStrong``, whose top threshold is 171 GeV
while ``6:m0`` is 173: measured here against ``Pythia.coupSM.alphaS``, which agrees to 1e-6
relative at 3 GeV to 5 TeV only with 171; tests/test_integrate_emission.py).
"""

from __future__ import annotations

import math

import torch

ALPHA_S_MZ = 0.13  # SigmaProcess:alphaSvalue
Z_MASS = 91.1876  # GeV: the scale alphaSvalue is given at (23:m0)
THRESHOLDS = (1.5, 4.8, 171.0)  # GeV: the c, b and t thresholds of Pythia's AlphaStrong (its own t mass, not 6:m0)


def _beta(nf: int) -> float:
    return (33.0 - 2.0 * nf) / (12.0 * math.pi)


def alpha_s(q2: torch.Tensor, alpha_mz: float = ALPHA_S_MZ) -> torch.Tensor:
    """First-order running alpha_s at the scales ``q2`` (GeV^2, float64 ``[N]``, above the c mass)."""
    inv_mz = 1.0 / alpha_mz
    mc, mb, mt = THRESHOLDS
    inv_b = inv_mz - _beta(5) * math.log(Z_MASS ** 2 / mb ** 2)  # 1/alpha at the b mass, from above
    inv_t = inv_mz + _beta(5) * math.log(mt ** 2 / Z_MASS ** 2)  # at the t mass
    log = torch.log(q2)
    inv = torch.where(q2 >= mt ** 2, inv_t + _beta(6) * (log - 2 * math.log(mt)),
                      torch.where(q2 >= mb ** 2, inv_mz + _beta(5) * (log - 2 * math.log(Z_MASS)),
                                  inv_b + _beta(4) * (log - 2 * math.log(mb))))
    return 1.0 / inv
