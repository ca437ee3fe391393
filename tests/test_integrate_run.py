"""``hepgen integrate`` through the CLI at small statistics: the output folder, weights that
round-trip exactly through ROOT (genWeight) and LHE (hepgen's reader and pylhe), <w> = sigma,
valid event records, the unweighted sample, equal calls, and one-line card errors with no output."""

from __future__ import annotations

import json
import math
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml

from hepgen.cards import load_card
from hepgen.cli import main
from hepgen.integrate.config import integrate_config
from hepgen.integrate.pdf import pythia_pdf_path
from hepgen.io import read_sample
from hepgen.kinematics import invariant_mass

pylhe = pytest.importorskip("pylhe")
pytest.importorskip("madnis")
pytest.importorskip("vegas")
pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {"name": "dy_small", "seed": 3, "integrate": {
    "training_calls": 4000, "sample_calls": 20000, "madnis_steps": 20, "vegas_iterations": 4,
    "weighted_events": 4000, "unweighted_events": 3000, "pythia_events": 0}}


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


def dimuon_mass(sample):
    mu = sample["Muon"]
    return invariant_mass(*(tuple(ak.to_numpy(mu[f][:, i]).astype(np.float64) for f in ("pt", "eta", "phi", "mass"))
                            for i in (0, 1)))


def write_card(folder, data):
    path = folder / "card.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    folder = tmp_path_factory.mktemp("integrate")
    card = write_card(folder, SMALL)
    with pytest.raises(SystemExit) as exit_:
        main(["integrate", str(card), "-o", str(folder / "out"), "--no-progress"])
    assert exit_.value.code == 0
    return folder / "out"


def test_output_folder(result):
    assert sorted(p.name for p in result.iterdir()) == [
        "card.yaml", "log_weights.png", "metrics.json", "unweighted.root", "weighted.lhe", "weighted.root"]
    metrics = json.loads((result / "metrics.json").read_text())
    for method in ("vegas", "madnis"):
        m = metrics[method]
        assert 0 < m["unweighting_efficiency"] <= 1 and m["cut_efficiency"] == pytest.approx(1.0, rel=1e-12)
        assert m["error_pb"] / m["sigma_pb"] < 0.01
        assert m["sample_calls"] >= 20000
    # equal integrand calls, counted by the integrand itself
    assert metrics["vegas"]["calls"] == metrics["madnis"]["calls"]
    # the two methods estimate the same cross section: within 4 combined standard errors
    v, m = metrics["vegas"], metrics["madnis"]
    assert abs(v["sigma_pb"] - m["sigma_pb"]) < 4 * math.hypot(v["error_pb"], m["error_pb"])


def test_weights_round_trip_exactly(result):
    """The float64 weights are the same numbers in the ROOT genWeight branch, in hepgen's LHE
    reader and in pylhe's parse: a writer that rounds (float32, 5 significant digits) would
    differ, because the weights need all their digits."""
    with uproot.open(result / "weighted.root") as f:
        tree = f["Events"]
        assert tree["genWeight"].typename == "double" and "weight" not in tree.keys()
        root_w = tree["genWeight"].array(library="np")
    lhe = read_sample(result / "weighted.lhe")
    events = list(pylhe.LHEFile.fromfile(str(result / "weighted.lhe")).events)
    pylhe_w = np.array([e.eventinfo.weight for e in events])
    assert len(root_w) == len(lhe) == len(events) == 4000
    np.testing.assert_array_equal(read_sample(result / "weighted.root").weight, root_w)
    np.testing.assert_array_equal(lhe.weight, root_w)
    np.testing.assert_array_equal(pylhe_w, root_w)
    assert np.mean(root_w.astype(np.float32).astype(np.float64) != root_w) > 0.99


def test_mean_weight_is_the_cross_section(result):
    """<w> of the written subset estimates the run's sigma: within 4 of its standard errors
    (the subset's own error dominates the run's)."""
    metrics = json.loads((result / "metrics.json").read_text())["madnis"]
    w = read_sample(result / "weighted.root").weight
    err = math.hypot(w.std() / math.sqrt(len(w)), metrics["error_pb"])
    assert abs(w.mean() - metrics["sigma_pb"]) < 4 * err
    lhe = pylhe.LHEFile.fromfile(str(result / "weighted.lhe"))
    assert len(list(lhe.events)) == len(w)  # read to the end: pylhe closes the file then
    init = lhe.init
    assert init.procInfo[0].xSection == pytest.approx(metrics["sigma_pb"], rel=1e-15)


def test_events_are_dimuon_records(result):
    for name in ("weighted.root", "weighted.lhe", "unweighted.root"):
        sample = read_sample(result / name)
        assert list(sample.collections) == ["Muon"], name
        mu = sample["Muon"]
        assert np.all(sample.multiplicity("Muon") == 2)
        assert np.all(ak.to_numpy(ak.sum(mu.charge, axis=1)) == 0)
        m = dimuon_mass(sample)
        assert m.min() > 60.0 - 0.01 and m.max() < 120.0 + 0.01, name  # float32 momenta in ROOT
    events = list(pylhe.LHEFile.fromfile(str(result / "weighted.lhe")).events)
    assert sorted(p.id for p in events[0].particles if p.status == 1) == [-13, 13]


def test_unweighted_sample(result):
    """Weight 1, and the mean m_mumu of the unweighted events agrees with the weighted mean
    within 4 standard errors of their difference (the hit-or-miss keeps the distribution)."""
    unweighted, weighted = read_sample(result / "unweighted.root"), read_sample(result / "weighted.root")
    assert len(unweighted) == 3000 and np.all(unweighted.weight == 1.0)

    mu, mw, w = dimuon_mass(unweighted), dimuon_mass(weighted), weighted.weight
    mean_w = np.sum(w * mw) / w.sum()
    n_eff = w.sum() ** 2 / np.sum(w ** 2)
    err = math.hypot(mu.std() / math.sqrt(len(mu)), np.sqrt(np.sum(w * (mw - mean_w) ** 2) / w.sum() / n_eff))
    assert abs(mu.mean() - mean_w) < 4 * err


@pytest.mark.parametrize("section,message", [
    ({"colour": 1}, "unknown key 'integrate.colour'"),
    ({"m_min": 130.0}, "integrate.m_max = 120.0 must be above integrate.m_min = 130.0"),
    ({"channels": ["photon", "w"]}, "integrate.channels"),
    ({"pdf": "NoSuchSet_0000.dat"}, "PDF grid 'NoSuchSet_0000.dat'"),
    ({"training_calls": 5}, "integrate.training_calls = 5 is out of range"),
    ({"emission": "nlo"}, "integrate.emission"),
    ({"emission": "real", "pt_min": 7000.0}, "integrate.pt_min = 7000.0 GeV is beyond the kinematic limit"),
])
def test_bad_card_is_one_line_and_writes_nothing(tmp_path, capsys, section, message):
    card = write_card(tmp_path, {"name": "bad", "integrate": section})
    code, out, err = run_cli(["integrate", str(card), "-o", str(tmp_path / "out")], capsys)
    assert code == 2 and message in err and err.count("\n") == 1 and err.startswith("hepgen: error:")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.yaml"]


def test_existing_output_is_refused(result, capsys):
    before = (result / "metrics.json").read_bytes()
    code, _, err = run_cli(["integrate", str(result.parent / "card.yaml"), "-o", str(result)], capsys)
    assert code == 2 and "exists; use --force" in err
    assert (result / "metrics.json").read_bytes() == before


def test_shipped_card_section_is_valid():
    card = load_card(Path(__file__).resolve().parents[1] / "cards" / "dy_lo.yaml")
    cfg = integrate_config(card)
    assert (cfg.m_min, cfg.m_max, cfg.channels) == (60.0, 120.0, ("photon", "z"))
    assert pythia_pdf_path(cfg.pdf).is_file()
