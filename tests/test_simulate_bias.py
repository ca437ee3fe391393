"""simulate.bias_pt: Pythia's biased pT-hat sampling (PhaseSpace:bias2Selection) with the
compensating weights written as genWeight. Real Pythia 8 + FastJet, small samples (300 selected
events each), so the statistical checks state their tolerances.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import uproot
from scipy.stats import chi2

from hepgen.cards import load_card
from hepgen.errors import CardError
from hepgen.io.root import read_events
from hepgen.simulate import produce
from hepgen.simulate import pythia as P

CARD = Path(__file__).resolve().parents[1] / "cards" / "zjets.yaml"
EDGES = np.array([20.0, 35.0, 50.0, 75.0, 110.0, 1e4])  # GeV, pT_j1 (the last bin open)


def card_with(**simulate):
    card = load_card(CARD)
    return dataclasses.replace(card, simulate=dataclasses.replace(card.simulate, **simulate))


def test_bias_off_adds_no_pythia_setting():
    # the default keeps the settings (and so the provenance of existing reference files) unchanged
    lines = P.settings(card_with(hard_process="z_jet"))
    assert not any("bias2Selection" in s for s in lines)
    biased = P.settings(card_with(hard_process="z_jet", bias_pt=3, bias_pt_ref=25))
    assert {"PhaseSpace:bias2Selection = on", "PhaseSpace:bias2SelectionPow = 3",
            "PhaseSpace:bias2SelectionRef = 25"} <= set(biased)


def test_bias_needs_the_two_to_two_process():
    with pytest.raises(CardError, match="needs simulate.hard_process: z_jet") as err:
        P.settings(card_with(hard_process="drell_yan", bias_pt=2))
    assert "\n" not in str(err.value)


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    d = tmp_path_factory.mktemp("bias")
    out = {}
    for p in (0, 2):
        path = d / f"bias{p}.root"
        produce(card_with(hard_process="z_jet", bias_pt=p, batch=300), events=300, seed=21, output=path, jobs=1,
                quiet=True)
        out[p] = path
    return out


def _pt_j1(sample):
    return np.asarray(sample["Jet"].pt[:, 0], dtype=np.float64)


def test_biased_sample_writes_pythia_weights_as_genweight(samples):
    with uproot.open(samples[2]) as f:
        t = f["Events"]
        assert "genWeight" in t.keys() and "weight" not in t.keys()
        assert t["genWeight"].typename == "double"
    s = read_events(samples[2])
    w = s.weight
    # Pythia's weight is (ref / pTHat)^2 with pTHat >= pthat_min = ref = 10 GeV: in (0, 1], and varied
    assert np.all(w > 0) and np.all(w <= 1.0) and w.min() < 0.01
    assert "bias2Selection" in s.info["weights"]
    unbiased = read_events(samples[0])
    assert np.all(unbiased.weight == 1.0)


def test_weighted_biased_spectrum_agrees_with_the_unbiased_one(samples):
    # normalised pT_j1 densities (sum of weights, sqrt(sum w^2) errors) of the two samples: chi2
    # over 5 bins below the 99.9% quantile of chi2(ndf = 5) (a false alarm 1 in 1000); and the
    # biased sample puts many more events above 110 GeV (raw counts: > 3x the unbiased sample's)
    b, u = read_events(samples[2]), read_events(samples[0])
    pb, pu = _pt_j1(b), _pt_j1(u)
    hb, _ = np.histogram(pb, EDGES, weights=b.weight)
    eb, _ = np.histogram(pb, EDGES, weights=b.weight**2)
    hu, _ = np.histogram(pu, EDGES)
    nb, nu = b.weight.sum(), len(u)
    stat = np.sum((hb / nb - hu / nu) ** 2 / (eb / nb**2 + hu / nu**2))
    assert stat < chi2.ppf(0.999, len(hb)), (hb / nb, hu / nu)
    high_b, high_u = np.sum(pb > EDGES[-2]), np.sum(pu > EDGES[-2])
    assert high_b > 3 * max(high_u, 1), (high_b, high_u)


def test_selected_cross_section_uses_the_weights(samples):
    # sigma after the selection = sigma_gen x (kept weight / tried weight): the biased and the
    # unbiased run give one cross section within 4 combined standard errors (the biased error uses
    # the raw counts, so it is approximate; the two differ by a few per cent at these sizes)
    sb, su = (read_events(samples[p]).info for p in (2, 0))
    diff = float(sb["cross_section_pb"]) - float(su["cross_section_pb"])
    err = np.hypot(float(sb["cross_section_error_pb"]), float(su["cross_section_error_pb"]))
    assert abs(diff) < 4 * err
    # the raw efficiency of the biased run (most tried events are hard) is not the cross-section ratio
    assert float(sb["efficiency"]) > 1.5 * float(su["efficiency"])
