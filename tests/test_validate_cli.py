"""hepgen validate / hepgen reweight end to end on real ROOT files (toy kinematics, written with
hepgen.io.root): the report is complete, refuses to overwrite, fails with one line on bad input,
and DCTR weights move a mis-modelled sample towards the reference."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest
import uproot

from hepgen.cli import main
from hepgen.events import make_collection
from hepgen.io.root import read_events, write_events

from zjets_toy import toy_zjets

OBS = """
sets:
  jets:
    pt_j1: {bins: 20, range: [20, 200], logy: true}
    eta_j1: {bins: 20, range: [-5, 5]}
  global:
    n_jets: {bins: 3, range: [0.5, 3.5], ratio: [0.9, 1.1]}
maps:
  deta_dphi_j1j2: {x: deta_j1j2, y: dphi_j1j2, bins: [10, 10], xrange: [-5, 5], yrange: [-3.1416, 3.1416]}
"""


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


def scale_jets(sample, factor):
    j = sample["Jet"]
    return replace(sample, collections={**sample.collections, "Jet": make_collection(j.pt * factor, j.eta, j.phi, j.mass)})


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("validate_cli")
    write_events(d / "ref.root", toy_zjets(3000, 1))
    draws = []
    for k in range(3):  # three "posterior draws", one file each
        p = d / f"gen.draw{k}.root"
        write_events(p, toy_zjets(1000, 10 + k), info={"bayes_draw": str(k)})
        draws.append(p)
    (d / "obs.yaml").write_text(OBS)
    return d, draws


def test_validate_writes_a_complete_report(files, capsys):
    d, draws = files
    out = d / "report"
    rc, stdout, err = run_cli(["validate", *map(str, draws), "--reference", str(d / "ref.root"), "-o", str(out),
                               "--observables", str(d / "obs.yaml"), "--style", "ATLAS", "--no-progress",
                               "--set", "validate.classifier_epochs=3", "--set", "validate.classifier_runs=2",
                               "--set", "validate.min_bin_events=20"], capsys)
    assert rc == 0, err
    assert "index.html" in stdout
    m = json.loads((out / "metrics.json").read_text())
    assert m["inputs"]["n_draws"] == 3 and m["inputs"]["n_generated"] == 3000
    assert set(m["observables"]) == {"pt_j1", "eta_j1", "n_jets"}
    for r in m["observables"].values():  # three draws -> a band -> coverage and pull width
        assert r["chi2_ndf"] > 0 and 0 <= r["coverage"] <= 1 and r["pull_width"] > 0
    assert set(m["classifier"]["per_multiplicity"]) == {"1", "2", "3"}
    assert len(m["classifier"]["per_multiplicity"]["1"]["auc_runs"]) == 2
    assert abs(sum(m["multiplicity"]["generated"].values()) - 1) < 1e-9
    html = (out / "index.html").read_text()
    pngs = re.findall(r"src='([^']+\.png)'", html)
    assert len(pngs) == 3 + 1 + 1 + 3 + 1  # histograms, map, calibration, log w per multiplicity, pulls
    assert "coverage/pulls.png" in pngs
    # three independent 1000-event draws of one generator: no band beyond their own noise, so the
    # coverage section says the noise dominates (the draws' noise is independent: no shared seed)
    cov = m["coverage"]
    assert cov["draws"] == 3 and cov["noise"] == "independent" and set(cov["categories"]) == {"1", "2", "3"}
    assert cov["categories"]["1"]["bins"] > 0 and cov["categories"]["1"]["noise_dominated"]
    assert "warning: 1 jet: the sampling noise is" in err
    assert "## Coverage of the uncertainty band" in (out / "metrics.md").read_text()
    for png in pngs:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / png).with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
    assert "| pt_j1 |" in (out / "metrics.md").read_text()
    with uproot.open(out / "histograms.root") as f:  # TH1D, unnormalised: the n_jets counts add up
        h = f["generated_n_jets"].to_hist()
        assert h.values().sum() == pytest.approx(3000)
        assert f["reference_n_jets"].to_hist().values().sum() == pytest.approx(3000)
    assert "log w" in (out / "classifier" / "extreme_events.md").read_text()

    # an existing report is not overwritten without --force, and stays intact
    before = (out / "metrics.json").read_bytes()
    rc, _, err = run_cli(["validate", str(draws[0]), "--reference", str(d / "ref.root"), "-o", str(out),
                          "--observables", str(d / "obs.yaml"), "--no-classifier", "--no-progress"], capsys)
    assert rc == 2 and "exists" in err and err.count("\n") == 1
    assert (out / "metrics.json").read_bytes() == before


@pytest.mark.parametrize("args, match", [
    (["--reference", "missing.root"], "missing.root: no such file"),
    (["--reference", "{d}/obs.yaml"], "unknown sample format"),
    (["--reference", "{d}/ref.root", "--style", "LHCb"], "Invalid value for '--style'"),
])
def test_validate_bad_input_is_one_line(files, capsys, tmp_path, args, match):
    d, draws = files
    args = [a.format(d=d) for a in args]
    rc, _, err = run_cli(["validate", str(draws[0]), *args, "-o", str(tmp_path / "r"), "--no-progress",
                          "--observables", str(d / "obs.yaml")], capsys)
    assert rc == 2 and match in err
    assert not (tmp_path / "r").exists()


def test_reweight_moves_generated_towards_reference(files, capsys, tmp_path):
    d, _ = files
    ref = toy_zjets(4000, 21)
    gen = scale_jets(toy_zjets(4000, 22), 1.15)  # jets 15% too hard
    write_events(tmp_path / "ref.root", ref)
    write_events(tmp_path / "gen.root", gen)
    rc, stdout, err = run_cli(["reweight", str(tmp_path / "gen.root"), "--reference", str(tmp_path / "ref.root"),
                               "-o", str(tmp_path / "rw.root"), "--set", "validate.classifier_epochs=15",
                               "--set", "validate.classifier_runs=1"], capsys)
    assert rc == 0, err
    assert "classifier AUC" in stdout
    out = read_events(tmp_path / "rw.root")
    w = out.weight
    assert len(out) == len(gen) and np.std(w) > 0.01
    assert w.sum() == pytest.approx(len(gen), rel=1e-5)
    with uproot.open(tmp_path / "rw.root") as f:
        assert "weight" in f["Events"].keys()
    pt_ref = np.mean(ref["Jet"].pt[:, 0])
    pt_gen = np.mean(gen["Jet"].pt[:, 0])
    pt_rw = np.average(np.asarray(out["Jet"].pt[:, 0]), weights=w)
    # the reweighted mean leading-jet pT closes at least half of the gap
    assert abs(pt_rw - pt_ref) < 0.5 * abs(pt_gen - pt_ref)


def test_reweight_writes_lhe_event_weights(capsys, tmp_path):
    pytest.importorskip("hepgen.io.lhe")
    from hepgen.io.lhe import read_lhe

    write_events(tmp_path / "ref.root", toy_zjets(1500, 31))
    write_events(tmp_path / "gen.root", scale_jets(toy_zjets(1500, 32), 1.15))
    rc, _, err = run_cli(["reweight", str(tmp_path / "gen.root"), "-r", str(tmp_path / "ref.root"),
                          "-o", str(tmp_path / "rw.lhe"), "--set", "validate.classifier_epochs=3",
                          "--set", "validate.classifier_runs=1"], capsys)
    assert rc == 0, err
    out = read_lhe(tmp_path / "rw.lhe")
    assert len(out) == 1500 and np.std(out.weight) > 0.01
    assert out.weight.sum() == pytest.approx(1500, rel=1e-6)
    assert out.info["reweighted_against"] == str(tmp_path / "ref.root")
    text = (tmp_path / "rw.lhe").read_text()
    assert "<weight id=\"original\">" in text
    # refuses to overwrite, leaves the file intact
    rc, _, err = run_cli(["reweight", str(tmp_path / "gen.root"), "-r", str(tmp_path / "ref.root"),
                          "-o", str(tmp_path / "rw.lhe")], capsys)
    assert rc == 2 and "exists" in err
    assert (tmp_path / "rw.lhe").read_text() == text


def test_run_folder_uses_held_out_split_and_draw_files(files, tmp_path):
    """A run folder as hepgen train leaves it: card.yaml, split.npz (indices into the card's data),
    generated.root (weight means) and generated.draw<k>.root (posterior draws)."""
    from hepgen.cards import card_from_dict, dump_card
    from hepgen.validate import validate_run

    d, draws = files
    run = tmp_path / "runs" / "demo-20260101-000000"
    run.mkdir(parents=True)
    data = tmp_path / "data.root"
    write_events(data, toy_zjets(2000, 41))
    card = card_from_dict({"name": "demo", "data": {"path": str(data)},
                           "validate": {"observables": str(d / "obs.yaml"), "classifier_epochs": 2,
                                        "classifier_runs": 1, "min_bin_events": 20}})
    (run / "card.yaml").write_text(dump_card(card))
    rng = np.random.default_rng(0)
    perm = rng.permutation(2000)
    np.savez(run / "split.npz", train=np.sort(perm[:1600]), val=np.sort(perm[1600:1800]), test=np.sort(perm[1800:]))
    write_events(run / "generated.root", toy_zjets(500, 42))
    for k in range(3):
        write_events(run / f"generated.draw{k}.root", toy_zjets(700, 50 + k), info={"bayes_draw": str(k)})
    out = validate_run(run, log=lambda msg: None)
    assert out == run / "validation"
    m = json.loads((out / "metrics.json").read_text())
    assert m["inputs"]["n_reference"] == 200 and m["inputs"]["n_training"] == 1600
    assert m["inputs"]["n_draws"] == 3 and m["inputs"]["n_generated"] == 2100
    assert m["amplification"]["n_train"] == 1600
    # the hook may run again (after a resumed training): it replaces its own report
    validate_run(run, log=lambda msg: None)


def test_validate_an_lhe_sample(files, capsys, tmp_path):
    lhe = pytest.importorskip("hepgen.io.lhe")
    d, _ = files
    gen = toy_zjets(800, 61)
    lhe.write_lhe(tmp_path / "gen.lhe", gen)
    rc, _, err = run_cli(["validate", str(tmp_path / "gen.lhe"), "-r", str(d / "ref.root"), "-o", str(tmp_path / "r"),
                          "--observables", str(d / "obs.yaml"), "--no-classifier", "--no-progress",
                          "--set", "validate.min_bin_events=20"], capsys)
    assert rc == 0, err
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m["inputs"]["n_generated"] == 800 and "classifier" not in m
    # the LHE sample holds the same events: its multiplicities are the toy's
    assert m["multiplicity"]["generated"]["1"] == pytest.approx(np.mean(gen.n_jets == 1))
