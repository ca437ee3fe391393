"""Generation: pipeline == hepgen generate for the same noise, shards, Bayesian draws, formats, cuts."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import torch

from hepgen.cards import card_from_dict
from hepgen.errors import HepgenError, OutputError
from hepgen.generate import BLOCK, block_seed, generate
from hepgen.pipeline import pipeline
from hepgen.processes.zjets import acceptance
from hepgen.selection import min_pair_dr
from hepgen.io.root import read_events, write_events
from hepgen.runs import load_run
from hepgen.train import train
from hepgen.workflow import finish_run
from tests.zjets_like import zjets_like

ROOT = Path(__file__).resolve().parents[1]


def _card(tmp, bayes):
    return card_from_dict({
        "name": "zj", "seed": 2,
        "data": {"path": str(tmp / "ref.root"), "split": [0.8, 0.1, 0.1]},
        "model": {"family": "cfm", "network": {"hidden": 16, "layers": 1},
                  "bayes": {"enabled": bayes, "draws": 2}, "cfm": {"solver": "euler", "steps": 2}},
        "train": {"epochs": 1, "batch_size": 256, "threads": 1, "validate": False, "runs_dir": str(tmp / "runs")},
        "generate": {"events": 100, "chunk": 1000},
    })


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gen")
    write_events(tmp / "ref.root", zjets_like(1500, seed=11))
    plain = train(_card(tmp, False), progress=False, run_dir=tmp / "plain", after=finish_run)
    bayes = train(_card(tmp, True), progress=False, after=False, run_dir=tmp / "bayes")
    return load_run(plain), load_run(bayes), tmp


def _arrays(sample):
    out = {}
    for coll in ("Muon", "Jet"):
        for f in ("pt", "eta", "phi", "mass"):
            out[f"{coll}_{f}"] = ak.to_numpy(ak.flatten(sample[coll][f])).astype(np.float32)
        out[f"n{coll}"] = sample.multiplicity(coll)
    out["Muon_charge"] = ak.to_numpy(ak.flatten(sample["Muon"].charge))
    return out


def test_training_wrote_a_generated_sample(runs):
    plain, _, _ = runs
    s = read_events(plain.path / "generated.root")
    assert 0 < len(s) <= 100 and s.info["model_family"] == "cfm"


def test_pipeline_equals_generate_for_the_same_noise(runs, tmp_path):
    run, _, _ = runs
    n = BLOCK + 300  # two noise blocks
    (path,) = generate(run, n, output=tmp_path / "g.root", progress=False)
    got = read_events(path)
    pipe = pipeline(run)
    outs = []
    for b in range(2):
        noise = pipe.draw_noise(BLOCK, torch.Generator().manual_seed(block_seed(run.seed, b)))
        with torch.no_grad():
            outs.append(pipe(noise))
    p = torch.cat([o[0] for o in outs])[:n].numpy()
    nj = torch.cat([o[1] for o in outs])[:n].numpy().astype(int)
    q = torch.cat([o[2] for o in outs])[:n].numpy()
    dr_ok, kin_ok = acceptance(p.astype(np.float64), nj, run.card)
    keep = dr_ok & kin_ok
    assert len(got) == keep.sum() and int(got.info["dropped_dR_jj"]) == n - dr_ok.sum()
    np.testing.assert_array_equal(got.n_jets, nj[keep])
    mu = ak.to_numpy(got["Muon"].pt).astype(np.float32)
    np.testing.assert_array_equal(mu, p[keep, :2, 0])
    np.testing.assert_array_equal(ak.to_numpy(got["Muon"].charge), q[keep].astype(int))
    jets_ref = np.concatenate([p[i, 2:2 + nj[i]] for i in np.flatnonzero(keep)])
    for k, f in enumerate(("pt", "eta", "phi", "mass")):
        np.testing.assert_array_equal(ak.to_numpy(ak.flatten(got["Jet"][f])).astype(np.float32), jets_ref[:, k])


def test_physics_by_construction(runs, tmp_path):
    run, _, _ = runs
    (path,) = generate(run, 3000, output=tmp_path / "g.root", progress=False)
    s = read_events(path)
    jets = s["Jet"]
    assert ak.all(jets.pt > 20.0)
    assert ak.all(jets.pt[:, :-1] >= jets.pt[:, 1:])  # pT-ordered
    assert ak.all(s["Muon"].pt[:, 0] >= s["Muon"].pt[:, 1])
    assert np.all(ak.to_numpy(ak.sum(s["Muon"].charge, axis=1)) == 0)
    assert np.allclose(ak.to_numpy(s["Muon"].mass), 0.1056583755, rtol=1e-6)
    assert ak.all(abs(jets.phi) <= np.pi + 1e-6)
    assert ak.all(abs(jets.eta) < 5.0)
    p = s.padded("Jet", 3)
    dr = min_pair_dr(p[..., 1], p[..., 2], np.arange(3)[None, :] < s.n_jets[:, None])
    assert np.all(dr > 0.4)


def test_multiplicity_fractions_follow_the_reference(runs, tmp_path):
    """Multiplicities are drawn with the cut-corrected sampling fractions f_k / eps_k (within 4
    binomial sigma), and the events that survive the Delta R / acceptance cuts carry the training
    fractions (4 binomial sigma plus 4 sigma of the calibration's own pass-rate estimate)."""
    run, _, _ = runs
    pipe = pipeline(run)
    n = 20000
    with torch.no_grad():
        p, nj, _ = pipe(pipe.draw_noise(n, torch.Generator().manual_seed(0)))
    counts = run.coords.mult_counts.numpy()
    frac = counts / counts.sum()
    rates = np.array(pipe.pass_rates)
    assert rates.max() - rates.min() > 0.02, rates  # the tiny model loses more 3-jet events: the test has teeth
    np.testing.assert_allclose(pipe.fractions, frac / rates / (frac / rates).sum(), rtol=1e-6)
    for k, v in enumerate((1, 2, 3)):
        got = float((nj == v).float().mean())
        assert abs(got - pipe.fractions[k]) < 4 * np.sqrt(pipe.fractions[k] * (1 - pipe.fractions[k]) / n), (v, got)
    nj = np.rint(nj.numpy()).astype(np.int64)
    dr_ok, kin_ok = acceptance(p.double().numpy(), nj, run.card)
    kept = nj[dr_ok & kin_ok]
    cal = run.card.generate.calibration_events
    for k, v in enumerate((1, 2, 3)):
        got = float(np.mean(kept == v))
        sigma = np.sqrt(frac[k] * (1 - frac[k]) / len(kept)) + frac[k] * np.sqrt((1 - rates[k]) / (rates[k] * cal))
        assert abs(got - frac[k]) < 4 * sigma, (v, got, frac[k], sigma)
    assert frac[0] > 0.5  # the sample has 60/30/10 %, not equal thirds


def test_without_calibration_the_training_fractions_are_drawn(runs):
    run, _, _ = runs
    off = dataclasses.replace(run, card=dataclasses.replace(
        run.card, generate=dataclasses.replace(run.card.generate, calibration_events=0)))
    counts = run.coords.mult_counts.numpy()
    pipe = pipeline(off)
    np.testing.assert_allclose(pipe.fractions, counts / counts.sum(), rtol=1e-12)
    assert pipe.pass_rates == [1.0, 1.0, 1.0]


def test_shards_reproduce_the_unsharded_run(runs, tmp_path):
    run, _, _ = runs
    n = 2 * BLOCK + 7
    (full,) = generate(run, n, output=tmp_path / "full.root", progress=False, chunk=1000)
    parts = [generate(run, n, output=tmp_path / f"s{k}.root", shard=f"{k}/3", progress=False)[0] for k in range(3)]
    whole = _arrays(read_events(full))
    pieces = [_arrays(read_events(p)) for p in parts]
    for key in whole:
        np.testing.assert_array_equal(whole[key], np.concatenate([p[key] for p in pieces]), err_msg=key)
    assert read_events(parts[1]).info["event_range"] == f"{n // 3}:{2 * n // 3}"


def test_bayesian_draws_one_file_each(runs, tmp_path):
    _, run, _ = runs
    paths = generate(run, 500, bayes_samples=2, output=tmp_path / "b.root", progress=False)
    assert [p.name for p in paths] == ["b.draw0.root", "b.draw1.root"]
    s0, s1 = (read_events(p) for p in paths)
    assert (s0.info["bayes_draw"], s1.info["bayes_draw"], s0.info["bayes_draws"]) == ("0", "1", "2")
    assert not np.array_equal(ak.to_numpy(s0["Muon"].pt)[:50], ak.to_numpy(s1["Muon"].pt)[:50])
    # reproducible: the same draw again gives the same events
    again = generate(run, 500, bayes_samples=1, output=tmp_path / "c.root", progress=False)[0]
    np.testing.assert_array_equal(ak.to_numpy(read_events(again)["Muon"].pt), ak.to_numpy(s0["Muon"].pt))


def test_provenance(runs, tmp_path):
    run, _, _ = runs
    (path,) = generate(run, 50, output=tmp_path / "p.root", seed=9, progress=False)
    info = read_events(path).info
    for key in ("hepgen_version", "card_hash", "seed", "model_family", "bayes_draw", "dropped_dR_jj", "solver"):
        assert key in info, key
    assert info["seed"] == "9" and info["solver"] == "euler/2"


def test_lhe_output(runs, tmp_path):
    from hepgen.io.lhe import read_lhe

    run, _, _ = runs
    (path,) = generate(run, 200, fmt="lhe", output=tmp_path / "g.lhe", progress=False)
    (root,) = generate(run, 200, output=tmp_path / "g.root", progress=False)
    lhe, ref = read_lhe(path), read_events(root)
    assert len(lhe) == len(ref)
    # the provenance completed after the last chunk reaches the LHE header too
    for key in ("events", "dropped_dR_jj", "dropped_acceptance", "jet_pass_rates"):
        assert lhe.info[key] == ref.info[key], key
    assert float(lhe.info["generation_seconds"]) > 0
    assert lhe.info["events"] == str(len(lhe))
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(lhe["Jet"].pt)), ak.to_numpy(ak.flatten(ref["Jet"].pt)), rtol=1e-5)


def test_refuses_existing_output_and_bad_shard(runs, tmp_path):
    run, _, _ = runs
    (tmp_path / "x.root").write_text("keep me")
    with pytest.raises(OutputError, match="exists; use --force"):
        generate(run, 10, output=tmp_path / "x.root", progress=False)
    assert (tmp_path / "x.root").read_text() == "keep me"
    with pytest.raises(HepgenError, match="need 0 <= k < n"):
        generate(run, 10, output=tmp_path / "y.root", shard="3/3", progress=False)
    with pytest.raises(HepgenError, match="not Bayesian"):
        generate(run, 10, output=tmp_path / "y.root", bayes_samples=2, progress=False)


def test_cli_generate(runs, tmp_path):
    run, _, _ = runs
    out = tmp_path / "cli.root"
    r = subprocess.run([sys.executable, "-m", "hepgen", "generate", str(run.path), "-n", "300", "-o", str(out),
                        "--shard", "1/2", "--no-progress"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"wrote {out}"
    assert read_events(out).info["event_range"] == "150:300"
