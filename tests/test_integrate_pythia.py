"""sigma(pp -> gamma*/Z -> mu mu, 60 < m < 120 GeV) of hepgen's integrand against Pythia 8's sigmaGen
for the same settings (hepgen.integrate.pythia_check), at small statistics."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from hepgen.errors import CardError
from hepgen.integrate.config import IntegrateConfig
from hepgen.integrate.integrand import DrellYan
from hepgen.integrate.pythia_check import pythia_cross_section, pythia_settings

pytest.importorskip("pythia8mc")
pytestmark = pytest.mark.usefixtures("one_thread")


def plain_mc(cfg, channel, n=100_000, seed=5):
    dy = DrellYan(cfg, 13000.0)
    r = torch.rand(n, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    f, _ = dy.channel_integrand(r, channel)
    return f.mean().item(), (f.std() / math.sqrt(n)).item()


@pytest.mark.parametrize("exchange,channel,events", [("full", 1, 60_000), ("photon", 0, 30_000)])
def test_cross_section_agrees_with_pythia(exchange, channel, events):
    """Both are Monte Carlo estimates: they must agree within 4 combined standard errors
    (about 0.4 % here; a false alarm once in 16 000 runs). A wrong normalisation of the photon
    or the Z part, a wrong PDF scale or beam energy moves sigma by several per cent."""
    cfg = replace(IntegrateConfig(), exchange=exchange)
    ours, our_err = plain_mc(cfg, channel)
    theirs = pythia_cross_section(cfg, 13000.0, events, seed=7)
    combined = math.hypot(our_err, theirs["error_pb"])
    assert abs(ours - theirs["sigma_pb"]) < 4 * combined, (ours, our_err, theirs)
    assert combined / ours < 0.005  # the test resolves a 2 % difference


def test_the_two_channels_agree():
    """Every channel integrates the same cross section (its Jacobian undoes its mapping)."""
    cfg = IntegrateConfig()
    (a, ea), (b, eb) = plain_mc(cfg, 0, 200_000), plain_mc(cfg, 1)
    assert abs(a - b) < 4 * math.hypot(ea, eb)


def test_settings_name_the_card():
    cfg = replace(IntegrateConfig(), m_min=70.0, exchange="z", alpha_em="mz", scale_factor=2.0)
    lines = pythia_settings(cfg, 13600.0)
    for want in ("Beams:eCM = 13600.0", "PhaseSpace:mHatMin = 70.0", "WeakZ0:gmZmode = 2",
                 "SigmaProcess:alphaEMorder = -1", "SigmaProcess:factorMultFac = 4.0", "23:onIfAny = 13"):
        assert want in lines
    with pytest.raises(CardError):
        pythia_cross_section(replace(cfg, flavours=4), 13000.0, 10, seed=1)
