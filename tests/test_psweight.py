"""simulate.psweight: Pythia 8's UncertaintyBands weights as NanoAOD's PSWeight branch, from a real
Pythia run, written and read back; their order and meaning; a psweight nuisance trains on them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import uproot

from hepgen.cards import card_from_dict, card_hash, load_card
from hepgen.io.root import read_events
from hepgen.nuisance import event_slopes
from hepgen.simulate import produce
from hepgen.simulate import pythia as P

pytestmark = pytest.mark.usefixtures("one_thread")
CARD = Path(__file__).resolve().parents[1] / "cards" / "zjets.yaml"
ORDER = ["isr_up", "fsr_up", "isr_down", "fsr_down"]  # NanoAOD: [ISR=2 FSR=1, ISR=1 FSR=2, ISR=0.5 FSR=1, ISR=1 FSR=0.5]


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """300 selected Z+jets events from Pythia with the shower variations, one job."""
    card = load_card(CARD)
    card = dataclasses.replace(card, simulate=dataclasses.replace(card.simulate, batch=500, psweight=True))
    out = produce(card, events=300, seed=11, output=tmp_path_factory.mktemp("ps") / "ps.root", jobs=1, quiet=True)
    return out, read_events(out), card


def test_off_by_default_and_the_card_hash_stays():
    card = load_card(CARD)
    assert not any("UncertaintyBands" in line for line in P.settings(card))
    on = dataclasses.replace(card, simulate=dataclasses.replace(card.simulate, psweight=True))
    assert card_hash(on) != card_hash(card)  # on is recorded; off is the dump it always was


def test_the_branch_holds_the_four_variations_in_nanoaods_order(simulated):
    out, sample, _ = simulated
    with uproot.open(out) as f:
        tree = f["Events"]
        table = tree["PSWeight"].array(library="np")
        counts = tree["nPSWeight"].array(library="np")
    assert np.all(counts == 4)
    stacked = np.stack(list(table)).astype(np.float64)
    assert list(sample.variations) == ORDER
    for j, wid in enumerate(ORDER):  # the reader gives back the branch's columns under their ids
        np.testing.assert_array_equal(stacked[:, j], sample.variations[wid])
    assert np.all(sample.weight == 1.0)  # the nominal weight of the unweighted sample


def test_variations_average_about_one_with_a_spread(simulated):
    """Shower variations conserve the total rate, so on the selected events their mean stays near 1
    (within 0.3: the selection takes events with hard jets, which the variations move most); each
    has a real per-event spread (> 0.05) and is positive and finite."""
    _, sample, _ = simulated
    for wid in ORDER:
        w = sample.variations[wid]
        assert np.all(np.isfinite(w)) and np.all(w > 0)
        assert 0.7 < w.mean() < 1.3 and w.std() > 0.05, (wid, w.mean(), w.std())


def test_isr_up_is_more_radiation(simulated):
    """Meaning of the order: the events pass the jet selection (>= 1 jet above 20 GeV) because of
    initial-state radiation, so ISR alpha_s up (PSWeight[0], isr:muRfac=0.5) raises their summed
    weight and ISR down (PSWeight[2]) lowers it. The difference is paired (the same events), its
    error is the standard error of the per-event difference; required: > 4 sigma (measured with
    400 events: about 10 sigma). Swapping up and down, or taking FSR for ISR, fails."""
    _, sample, _ = simulated
    d = sample.variations["isr_up"] - sample.variations["isr_down"]
    assert d.mean() > 4 * d.std(ddof=1) / np.sqrt(len(d))
    assert sample.variations["isr_up"].mean() > 1 > sample.variations["isr_down"].mean()


def test_a_psweight_nuisance_reads_the_ratios(simulated, tmp_path):
    out, sample, _ = simulated
    card = card_from_dict({"data": {"path": str(out)},
                           "model": {"nuisance": [{"name": "isr", "kind": "psweight", "variation": "isr"}]}})
    slopes = event_slopes(card, sample)
    np.testing.assert_array_equal(slopes[:, 0, 0], sample.variations["isr_up"] - 1.0)
    np.testing.assert_array_equal(slopes[:, 0, 1], sample.variations["isr_down"] - 1.0)


def test_a_psweight_run_trains_and_generates_at_a_variation(simulated, tmp_path):
    """End to end on the Pythia file: a CFM with an isr nuisance trains (c = [one-hot | nu]) and
    generates at nu = +1, recorded in the file; the events differ from the nominal ones."""
    import awkward as ak

    from hepgen.generate import generate
    from hepgen.runs import load_run
    from hepgen.train import train

    out, _, _ = simulated
    card = card_from_dict({
        "name": "ps", "seed": 2, "data": {"path": str(out)},
        "model": {"family": "cfm", "network": {"hidden": 16, "layers": 1}, "cfm": {"solver": "euler", "steps": 2},
                  "nuisance": [{"name": "isr", "kind": "psweight", "variation": "isr"}]},
        "train": {"epochs": 1, "batch_size": 64, "threads": 1, "validate": False, "runs_dir": str(tmp_path)},
        "generate": {"calibration_events": 100},
    })
    run = load_run(train(card, progress=False, after=False, run_dir=tmp_path / "ps"))
    assert run.model.cond_dim == len(card.process.n_jets) + 1
    (nominal,) = generate(run, 200, output=tmp_path / "nom.root", progress=False)
    (up,) = generate(run, 200, output=tmp_path / "up.root", progress=False, nuisance=["isr=1"])
    a, b = read_events(nominal), read_events(up)
    assert b.info["nuisance_isr"] == "1.0"
    assert not np.array_equal(ak.to_numpy(ak.flatten(a["Muon"].pt)), ak.to_numpy(ak.flatten(b["Muon"].pt)))
