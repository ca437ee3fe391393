"""The phase-space mappings (hepgen.integrate.phasespace): inverses, Jacobians that integrate known
functions to their analytic integrals, and muon momenta with the invariants they were made from."""

from __future__ import annotations

import math

import pytest
import torch

from hepgen.integrate.phasespace import BreitWigner, PhotonPole, common_coordinates, kinematics, muon_momenta

S_MIN, S_MAX, S_HAD = 60.0 ** 2, 120.0 ** 2, 13000.0 ** 2
MAPPINGS = [PhotonPole(S_MIN, S_MAX), BreitWigner(S_MIN, S_MAX, 91.1876, 2.5)]


@pytest.mark.parametrize("mapping", MAPPINGS, ids=lambda m: m.name)
def test_mapping_inverse_and_density(mapping):
    r = torch.linspace(0.0, 1.0, 101, dtype=torch.float64)
    s, jac = mapping.forward(r)
    assert s[0].item() == pytest.approx(S_MIN, rel=1e-12) and s[-1].item() == pytest.approx(S_MAX, rel=1e-12)
    torch.testing.assert_close(mapping.inverse(s), r, rtol=0, atol=1e-12)
    torch.testing.assert_close(mapping.density(s) * jac, torch.ones_like(r), rtol=1e-12, atol=0)
    # the Jacobian is ds/dr: compare with a central difference
    h = 1e-6
    mid = r[1:-1]
    numeric = (mapping.forward(mid + h)[0] - mapping.forward(mid - h)[0]) / (2 * h)
    torch.testing.assert_close(jac[1:-1], numeric, rtol=1e-6, atol=0)


@pytest.mark.parametrize("mapping", MAPPINGS, ids=lambda m: m.name)
def test_integrates_a_known_function(mapping):
    """int_{s_min}^{s_max} ds int_{-ln(tau)/2}^{ln(tau)/2} dy int dcos dphi  s / S
    = 4 pi int tau (-ln tau) dtau S (analytic), by Monte Carlo over the hypercube: 200 000 points,
    within 5 standard errors (a false alarm once in ~2 million runs)."""
    r = torch.rand(200_000, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    p = kinematics(r, mapping, S_HAD)
    values = p.jacobian * p.s / S_HAD
    estimate, error = values.mean().item(), (values.std() / math.sqrt(len(values))).item()

    def primitive(t):  # int t (-ln t) dt = t^2 / 4 - t^2 ln(t) / 2
        return t * t / 4 - t * t * math.log(t) / 2

    exact = 4 * math.pi * S_HAD * (primitive(S_MAX / S_HAD) - primitive(S_MIN / S_HAD))
    assert abs(estimate - exact) < 5 * error, (estimate, exact, error)
    assert error / exact < 0.01  # the test would see a wrong Jacobian of 5 % or more


def test_muon_momenta_reproduce_the_invariants():
    r = torch.rand(1000, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    p = kinematics(r, MAPPINGS[1], S_HAD)
    minus, plus = muon_momenta(p)
    total = minus + plus
    mass2 = total[:, 0] ** 2 - (total[:, 1:] ** 2).sum(dim=1)
    torch.testing.assert_close(mass2, p.s, rtol=1e-10, atol=0)
    root_s = math.sqrt(S_HAD)
    torch.testing.assert_close(total[:, 0], 0.5 * root_s * (p.x1 + p.x2), rtol=1e-10, atol=0)
    torch.testing.assert_close(total[:, 3], 0.5 * root_s * (p.x1 - p.x2), rtol=1e-10, atol=1e-8)
    torch.testing.assert_close(p.x1 * p.x2 * S_HAD, p.s, rtol=1e-12, atol=0)
    # massless muons; the mu- direction in the pair frame is (theta, phi) from the +z beam
    torch.testing.assert_close(minus[:, 0] ** 2, (minus[:, 1:] ** 2).sum(dim=1), rtol=1e-9, atol=1e-6)
    torch.testing.assert_close(torch.atan2(minus[:, 2], minus[:, 1]) % (2 * math.pi), p.phi, rtol=0, atol=1e-9)
    u = common_coordinates(p, S_MIN, S_MAX)
    assert bool(((u >= 0) & (u <= 1)).all())
