"""A small numpy tt̄ decay generator for tests: samples whose true masses are known.

Top pairs are made in the tt̄ frame (back to back, isotropic, with a top momentum drawn from an
exponential), boosted along z by a random rapidity and given a transverse kick; each top decays
isotropically t -> b W in its rest frame, each W -> l nu in its own, and the products are
boosted back. Top and W masses are fixed (on-shell) or drawn from Cauchy (Breit-Wigner) line
shapes cut at +-``cut`` widths, so ``DecaySample.masses`` holds the truth of every event.
The four-vectors become the GenPart record of :func:`hepgen.dilepton.to_sample`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hepgen import dilepton
from hepgen import kinematics as kin

B_MASS = 4.8
PDG = {"e": (-11, 12, 11, -12), "mu": (-13, 14, 13, -14)}  # l+, nu, l-, nubar


@dataclass
class DecaySample:
    sample: object  # EventSample with GenPart in dilepton.ROLES order
    masses: dict  # "t", "tbar", "Wp", "Wm": float64 [N] true masses (GeV)


def _line_shape(rng, n, mass, width, breit_wigner: bool, cut: float):
    if not breit_wigner:
        return np.full(n, mass)
    u = rng.uniform(-1, 1, n) * np.arctan(2 * cut)  # Cauchy of FWHM `width`, restricted to +-cut widths
    return mass + 0.5 * width * np.tan(u)


def _isotropic(rng, n):
    cos_t, phi = rng.uniform(-1, 1, n), rng.uniform(-np.pi, np.pi, n)
    sin_t = np.sqrt(1 - cos_t**2)
    return np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], axis=1)


def _two_body(mother_mass, m1, m2):
    """Momentum of each daughter in the mother's rest frame."""
    lam = (mother_mass**2 - (m1 + m2) ** 2) * (mother_mass**2 - (m1 - m2) ** 2)
    return np.sqrt(np.clip(lam, 0, None)) / (2 * mother_mass)


def _boost(p4, beta):
    """Lorentz-boost four-vectors ``p4`` [N, 4] (E, px, py, pz) by velocity ``beta`` [N, 3]."""
    b2 = np.sum(beta**2, axis=1)
    gamma = 1 / np.sqrt(1 - b2)
    bp = np.sum(beta * p4[:, 1:], axis=1)
    coef = np.where(b2 > 0, (gamma - 1) / np.where(b2 > 0, b2, 1), 0.0)
    e = gamma * (p4[:, 0] + bp)
    p = p4[:, 1:] + (coef * bp + gamma * p4[:, 0])[:, None] * beta
    return np.column_stack([e, p])


def _decay(rng, mother, mother_mass, m1, m2):
    """Two-body decay of lab four-vectors ``mother`` (mass ``mother_mass``) -> (d1, d2)."""
    n = len(mother)
    q = _two_body(mother_mass, m1, m2)
    direction = _isotropic(rng, n)
    d1 = np.column_stack([np.sqrt(q**2 + m1**2), q[:, None] * direction])
    d2 = np.column_stack([np.sqrt(q**2 + m2**2), -q[:, None] * direction])
    beta = mother[:, 1:] / mother[:, :1]
    return _boost(d1, beta), _boost(d2, beta)


def ttbar_events(n: int, seed: int, breit_wigner: bool = True, cut: float = 20.0,
                 lepton_flavours=("e", "mu")) -> DecaySample:
    """``n`` dileptonic tt̄ events with known masses (see the module docstring)."""
    rng = np.random.default_rng([seed, 13])
    m_w = {k: _line_shape(rng, n, kin.W_MASS, kin.W_WIDTH, breit_wigner, cut) for k in ("Wp", "Wm")}
    m_t = {}
    for top, w in (("t", "Wp"), ("tbar", "Wm")):
        m = _line_shape(rng, n, kin.TOP_MASS, kin.TOP_WIDTH, breit_wigner, cut)
        m_t[top] = np.maximum(m, m_w[w] + B_MASS + 1.0)  # the decay must stay open
    # tops back to back in the tt̄ frame, then the tt̄ system boosted along z and kicked in pT
    q = rng.exponential(150.0, n)
    direction = _isotropic(rng, n)
    t_cm = np.column_stack([np.sqrt(q**2 + m_t["t"] ** 2), q[:, None] * direction])
    tb_cm = np.column_stack([np.sqrt(q**2 + m_t["tbar"] ** 2), -q[:, None] * direction])
    m_tt = t_cm[:, 0] + tb_cm[:, 0]
    y, kick, phi = rng.normal(0, 1.0, n), rng.exponential(15.0, n), rng.uniform(-np.pi, np.pi, n)
    mt_tt = np.sqrt(m_tt**2 + kick**2)
    system = np.column_stack([mt_tt * np.cosh(y), kick * np.cos(phi), kick * np.sin(phi), mt_tt * np.sinh(y)])
    beta = system[:, 1:] / system[:, :1]
    top, antitop = _boost(t_cm, beta), _boost(tb_cm, beta)
    b, w_plus = _decay(rng, top, m_t["t"], B_MASS, m_w["Wp"])
    bbar, w_minus = _decay(rng, antitop, m_t["tbar"], B_MASS, m_w["Wm"])
    lp, nu = _decay(rng, w_plus, m_w["Wp"], 0.0, 0.0)
    lm, nubar = _decay(rng, w_minus, m_w["Wm"], 0.0, 0.0)
    parts = (b, lp, nu, bbar, lm, nubar)
    p = np.stack([np.column_stack(kin.epxpypz_to_ptetaphim(*v.T)) for v in parts], axis=1)
    p[:, :, 3] = [B_MASS, 0.0, 0.0, B_MASS, 0.0, 0.0]  # the masses as generated, not re-derived
    flav_p = rng.integers(len(lepton_flavours), size=n)
    flav_m = rng.integers(len(lepton_flavours), size=n)
    ids = np.array([PDG[f] for f in lepton_flavours])
    pdg = np.column_stack([np.full(n, 5), ids[flav_p, 0], ids[flav_p, 1], np.full(n, -5), ids[flav_m, 2], ids[flav_m, 3]])
    sample = dilepton.to_sample(p, pdg, info={"source": "tests/ttbar_decays.py"})
    return DecaySample(sample, {"t": m_t["t"], "tbar": m_t["tbar"], "Wp": m_w["Wp"], "Wm": m_w["Wm"]})
