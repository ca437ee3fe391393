"""The q qbar -> gamma*/Z -> mu mu matrix element (hepgen.integrate.matrix) and the electroweak
inputs (hepgen.electroweak), each against an independent evaluation: the textbook photon cross
section, the Z-pole forward-backward asymmetry, Pythia's own couplings, alpha_em and Z width."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hepgen import electroweak as ew
from hepgen.integrate.matrix import partonic_cross_section, squared_me

pythia8mc = pytest.importorskip("pythia8mc")

# Gauss-Legendre nodes: exact for the polynomials in cos(theta) of degree <= 2 here
NODES, WEIGHTS = (torch.tensor(a) for a in np.polynomial.legendre.leggauss(8))


def angular_integral(quark, s, photon=True, z=True, lo=-1.0, hi=1.0):
    """int dOmega |M|^2 / (64 pi^2 s) over cos in [lo, hi] (GeV^-2), by quadrature."""
    c = 0.5 * (hi - lo) * NODES + 0.5 * (hi + lo)
    me = torch.stack([squared_me(quark, torch.tensor([s], dtype=torch.float64), ci.reshape(1), photon=photon, z=z)
                      for ci in c]).reshape(-1)
    return float((me * WEIGHTS).sum() * 0.5 * (hi - lo) * 2 * math.pi / (64 * math.pi ** 2 * s))


@pytest.fixture(scope="module")
def pythia():
    p = pythia8mc.Pythia("", False)
    for line in ("Print:quiet = on", "WeakSingleBoson:ffbar2gmZ = on", "PartonLevel:all = off",
                 "HadronLevel:all = off", "Beams:eCM = 13000"):
        assert p.readString(line)
    assert p.init()
    return p


@pytest.mark.parametrize("quark", [1, 2])
@pytest.mark.parametrize("s", [60.0 ** 2, 300.0 ** 2])
def test_photon_limit_is_the_textbook_cross_section(quark, s):
    """sigma(q qbar -> gamma* -> mu mu) = 4 pi alpha^2 Q_q^2 / (3 N_c s)."""
    alpha = ew.alpha_em(s)
    textbook = 4 * math.pi * alpha ** 2 * ew.CHARGE[quark] ** 2 / (3 * 3 * s)
    assert angular_integral(quark, s, z=False) == pytest.approx(textbook, rel=1e-12)


@pytest.mark.parametrize("quark", [1, 2])
def test_forward_backward_asymmetry_at_the_z_pole(quark):
    """Pure Z exchange at s = m_Z^2: A_FB = 3/4 A_q A_mu with A_f = 2 v a / (v^2 + a^2) (Pythia's
    v, a); positive for both quark types (theta: quark -> mu-)."""
    s = ew.Z_MASS ** 2
    forward = angular_integral(quark, s, photon=False, lo=0.0, hi=1.0)
    backward = angular_integral(quark, s, photon=False, lo=-1.0, hi=0.0)
    a_fb = (forward - backward) / (forward + backward)

    def asym(pdg):
        v, a = ew.vector_coupling(pdg), ew.AXIAL[pdg]
        return 2 * v * a / (v * v + a * a)

    assert a_fb == pytest.approx(0.75 * asym(quark) * asym(13), rel=1e-10)
    assert a_fb > 0


@pytest.mark.parametrize("quark", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("m", [60.0, 85.0, 91.1876, 97.0, 120.0])
def test_partonic_cross_section_is_pythias_formula(pythia, quark, m):
    """Pythia's Sigma1ffbar2gmZ::sigmaHat for a mu mu final state, written with its couplings
    (CoupSM: e_f, v_f, a_f, sin^2 theta_W), alpha_em and Z mass and width (after init); the
    muon-mass phase-space factors (1 + O(m_mu^2 / s)) are left out."""
    c, pd = pythia.coupSM, pythia.particleData
    s = m * m
    alpha = c.alphaEM(s)
    m_z, width = pd.m0(23), pd.mWidth(23)
    theta = 1.0 / (16 * c.sin2thetaW() * c.cos2thetaW())
    bw = (s - m_z ** 2) ** 2 + (s * width / m_z) ** 2
    gam = 4 * math.pi * alpha ** 2 / (3 * s)
    interference = gam * 2 * theta * s * (s - m_z ** 2) / bw
    resonance = gam * (theta * s) ** 2 / bw
    sigma = (c.ef2(quark) * gam * c.ef2(13) + c.efvf(quark) * interference * c.efvf(13)
             + c.vf2af2(quark) * resonance * c.vf2af2(13)) / 3.0
    s_t = torch.tensor([s], dtype=torch.float64)
    assert partonic_cross_section(quark, s_t).item() == pytest.approx(sigma, rel=1e-9)
    assert angular_integral(quark, s) == pytest.approx(sigma, rel=1e-9)


def test_electroweak_inputs_are_pythias(pythia):
    c, pd = pythia.coupSM, pythia.particleData
    assert ew.SIN2_THETA_W == c.sin2thetaW() and ew.SIN2_THETA_W_EFF == c.sin2thetaWbar()
    assert ew.Z_MASS == pd.m0(23)
    assert ew.Z_WIDTH == pytest.approx(pd.mWidth(23), rel=1e-12)
    for pdg in (1, 2, 3, 4, 5, 13):
        assert ew.vector_coupling(pdg) == pytest.approx(c.vf(pdg), rel=1e-12)
        assert ew.AXIAL[pdg] == c.af(pdg) and ew.CHARGE[pdg] == pytest.approx(c.ef(pdg), rel=1e-12)


@pytest.mark.parametrize("q2", [100.0, 3600.0, 8315.18, 14400.0, 1e6])
def test_alpha_em_runs_as_pythia(pythia, q2):
    assert ew.alpha_em(q2) == pytest.approx(pythia.coupSM.alphaEM(q2), rel=1e-12)
    assert ew.alpha_em(torch.tensor([q2], dtype=torch.float64)).item() == pytest.approx(ew.alpha_em(q2), rel=1e-14)
    assert ew.alpha_em(q2, running=False) == ew.ALPHA_EM_MZ
