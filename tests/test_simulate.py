"""hepgen simulate: real Pythia 8 events, real FastJet jets, real ROOT files.

Samples are small (hundreds of events), so the statistical tests state wide tolerances.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import yaml

from hepgen.cards import Card, card_from_dict, load_card
from hepgen.errors import CardError, HepgenError, OutputError
from hepgen.io.root import read_events
from hepgen.simulate import produce
from hepgen.simulate import pythia as P
from hepgen.simulate import selection as S
from hepgen.simulate.run import WorkerTask, run_worker

ROOT = Path(__file__).resolve().parents[1]
CARD = ROOT / "cards" / "zjets.yaml"
Z_MASS = 91.1876  # GeV, PDG (written here, not taken from the code under test)


def small_card(**simulate) -> Card:
    card = load_card(CARD)
    return dataclasses.replace(card, simulate=dataclasses.replace(card.simulate, **simulate))


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """400 selected events through the whole path (library, one job), read back from ROOT."""
    out = tmp_path_factory.mktemp("sim") / "zjets.root"
    produce(small_card(batch=500), events=400, seed=11, output=out, jobs=1, quiet=True)
    return read_events(out)


@pytest.fixture(scope="module")
def raw_batch():
    """2000 raw Pythia events with the card's settings (no selection)."""
    pythia = P.make_pythia(P.settings(load_card(CARD)), 7)
    return pythia.nextBatch(2000)


# --------------------------------------------------------------------------------------------
# physics of the selected sample


def test_mumu_mass_peaks_at_the_z(sample):
    mu = sample["Muon"]
    m = ak.to_numpy((mu[:, 0] + mu[:, 1]).mass)
    # Z/gamma* with m > 50 GeV: the Z peak dominates (the photon continuum and the QED
    # radiative tail are below it). 400 events: the median of the 81-101 GeV window has a
    # statistical error ~0.15 GeV; allow 1 GeV (the judged 20k-event run: 91 +- 1 GeV).
    window = m[(m > 81) & (m < 101)]
    assert len(window) > 0.6 * len(m)
    assert abs(np.median(window) - Z_MASS) < 1.0
    hist, edges = np.histogram(m, bins=np.arange(50.0, 151.0, 5.0))
    assert 85.0 <= edges[np.argmax(hist)] <= 90.0  # the 5-GeV bin holding 91 GeV is the mode
    # m(Z/gamma*) > 50 GeV; bare muons fall below only after hard QED radiation (a few %)
    assert np.mean(m < 50.0) < 0.05


def test_muons_are_an_opposite_charge_pt_ordered_pair(sample):
    mu = sample["Muon"]
    assert np.all(sample.multiplicity("Muon") == 2)
    assert np.all(ak.to_numpy(mu.charge[:, 0] * mu.charge[:, 1]) == -1)
    assert np.all(ak.to_numpy(mu.pt[:, 0] >= mu.pt[:, 1]))
    assert np.allclose(ak.to_numpy(ak.flatten(mu.mass)), 0.10566, atol=1e-4)


def test_jets_pass_the_cuts(sample):
    jets = sample["Jet"]
    pt = ak.to_numpy(ak.flatten(jets.pt))
    assert pt.min() > 20.0  # stored as float32: the cut holds after rounding too
    assert np.abs(ak.to_numpy(ak.flatten(jets.eta))).max() < 5.0
    assert ak.all(jets.pt[:, :-1] >= jets.pt[:, 1:])  # pT-ordered
    assert ak.all(jets.mass >= 0)
    # every pair of jets, with vector's own deltaR (not hepgen's formula)
    a, b = ak.unzip(ak.combinations(jets, 2, axis=1))
    dr = ak.to_numpy(ak.flatten(a.deltaR(b)))
    assert len(dr) > 0 and dr.min() > 0.4


def test_exclusive_one_two_three_jets_with_falling_fractions(sample):
    n = sample.n_jets
    assert set(np.unique(n)) == {1, 2, 3}
    frac = json.loads(sample.info["n_jets_fractions"])
    assert frac == pytest.approx({str(k): float(np.mean(n == k)) for k in (1, 2, 3)})
    # the shower's radiation pattern: each extra jet costs a factor ~ alpha_s log; with 400
    # events, require only the ordering and a 1-jet share of 60-90%
    assert frac["1"] > frac["2"] > frac["3"] > 0
    assert 0.6 < frac["1"] < 0.9


def test_provenance(sample):
    info = sample.info
    assert info["seed"] == "11" and info["jobs"] == "1"
    assert int(info["events"]) == len(sample) == 400
    assert int(info["events_tried"]) > 400
    assert float(info["efficiency"]) == pytest.approx(400 / int(info["events_tried"]))
    # LO Pythia sigma(pp -> Z/gamma* -> mu mu, m > 50 GeV) at 13 TeV is ~1.5 nb (NNLO ~2 nb)
    assert 1000 < float(info["sigma_gen_pb"]) < 2500
    assert 0 < float(info["sigma_gen_err_pb"]) < 0.1 * float(info["sigma_gen_pb"])
    card = card_from_dict(yaml.safe_load(info["card"]))
    assert card.seed == 11 and card.simulate.events == 400
    assert info["pythia8mc_version"] == "8.317.2" and info["fastjet_version"]
    assert "WeakSingleBoson:ffbar2gmZ = on" in json.loads(info["pythia_settings"])
    assert np.all(sample.weight == 1.0)


# --------------------------------------------------------------------------------------------
# the history-based Z muon finder, on raw Pythia events


def _last_z_momentum(batch):
    ids = batch["prt"]["id"]
    last = ak.argmax(ak.local_index(ids) * (ids == S.Z_ID), axis=1, keepdims=True)
    p = batch["prt"]["p"][last][:, 0]
    return np.stack([ak.to_numpy(p[c]) for c in ("px", "py", "pz", "e")])


def test_z_muons_come_from_the_z_not_from_hadrons(raw_batch):
    rec = S.FlatRecord.from_batch(raw_batch)
    products, z_mu = S.z_decay_products(rec)
    n = rec.n_events
    # one mu+ and one mu- per event, always
    assert np.all(np.bincount(rec.event[z_mu & (rec.pid == 13)], minlength=n) == 1)
    assert np.all(np.bincount(rec.event[z_mu & (rec.pid == -13)], minlength=n) == 1)

    # the flagged decay products (muons + their QED photons) carry the Z's four-momentum.
    # Exceptions: a radiated photon that split (gamma -> q qbar, e+ e-) leaves hadrons that
    # are not flagged; that is ~1 in 1000 events.
    z = _last_z_momentum(raw_batch)
    got = np.stack([np.bincount(rec.event[products], weights=c[products], minlength=n)
                    for c in (rec.px, rec.py, rec.pz, rec.e)])
    match = np.all(np.abs(got - z) <= 1e-6 * z[3], axis=0)
    assert match.mean() > 0.99

    # events with a muon that is not from the Z (heavy-flavour decays): real ones exist here
    # (~4%), and the finder still picks exactly the Z pair in them
    final_mu = (rec.status > 0) & (np.abs(rec.pid) == 13)
    extra = np.bincount(rec.event[final_mu], minlength=n) > 2
    assert extra.sum() >= 10
    assert match[extra].mean() > 0.95
    # muons from hadron decays are neither Z muons nor Z decay products (so they are jet
    # inputs); other non-Z muons come from a radiated photon splitting, gamma -> mu mu
    from_hadron = final_mu & (np.abs(rec.pid[rec.mother]) > 100)
    assert from_hadron.sum() >= 10
    assert not z_mu[from_hadron].any() and not products[from_hadron].any()
    inputs = S.jet_inputs(rec, products, load_card(CARD).process)
    assert np.isin(np.flatnonzero(from_hadron), inputs).mean() > 0.9  # (|eta| < 6 acceptance)


def test_selected_muons_are_the_flagged_pair(raw_batch):
    cfg = load_card(CARD).process
    selected, flags = S.select(raw_batch, cfg)
    rec = S.FlatRecord.from_batch(raw_batch)
    _, z_mu = S.z_decay_products(rec)
    kept = np.flatnonzero(flags.keep)
    assert len(selected) == len(kept) > 0
    idx = np.flatnonzero(z_mu & flags.keep[rec.event])
    pt = np.hypot(rec.px[idx], rec.py[idx])
    want = np.sort(pt.reshape(-1, 2), axis=1)[:, ::-1]  # per event (idx is event-ordered)
    have = ak.to_numpy(selected["Muon"].pt)
    assert np.allclose(have, want, rtol=1e-12)


def test_collections_are_hepgens_event_representation(raw_batch):
    from hepgen.events import make_collection

    selected, _ = S.select(raw_batch, load_card(CARD).process)
    for name in ("Muon", "Jet"):
        got = selected[name]
        extra = {"charge": ak.flatten(got.charge)} if "charge" in got.fields else {}
        want = make_collection(*(ak.flatten(got[f]) for f in ("pt", "eta", "phi", "mass")),
                               counts=ak.num(got, axis=1), **extra)
        assert got.type == want.type and ak.array_equal(got, want)
        assert got.layout.form == want.layout.form


def test_jet_inputs_are_the_visible_particles_outside_the_z_decay(raw_batch):
    cfg = load_card(CARD).process
    rec = S.FlatRecord.from_batch(raw_batch)
    products, _ = S.z_decay_products(rec)
    inputs = S.jet_inputs(rec, products, cfg)
    with np.errstate(divide="ignore", invalid="ignore"):  # incoming partons have pT = 0
        eta = np.arcsinh(rec.pz / np.hypot(rec.px, rec.py))
    expect = np.flatnonzero(
        (rec.status > 0) & ~np.isin(np.abs(rec.pid), [12, 14, 16]) & ~products & (np.abs(eta) < 6.0)
    )
    assert np.array_equal(np.sort(inputs), expect)


def test_a_hard_photon_radiated_by_a_z_muon_is_not_a_jet(raw_batch):
    """Real events with a > 20 GeV QED photon from a Z muon: no selected jet sits on it (if
    the photon were clustered, it would be a >= 20 GeV jet at its own direction)."""
    cfg = load_card(CARD).process
    selected, flags = S.select(raw_batch, cfg)
    rec = S.FlatRecord.from_batch(raw_batch)
    products, _ = S.z_decay_products(rec)
    hard = np.flatnonzero(products & (rec.pid == 22) & (np.hypot(rec.px, rec.py) > 20.0))
    hard = hard[flags.keep[rec.event[hard]]]
    assert len(hard) >= 5  # 12 in these 2000 events
    position = np.cumsum(flags.keep) - 1  # batch event -> index in the selected sample
    for i in hard:
        jets = selected["Jet"][position[rec.event[i]]]
        eta = np.arcsinh(rec.pz[i] / np.hypot(rec.px[i], rec.py[i]))
        phi = np.arctan2(rec.py[i], rec.px[i])
        dphi = (ak.to_numpy(jets.phi) - phi + np.pi) % (2 * np.pi) - np.pi
        assert np.all(np.hypot(ak.to_numpy(jets.eta) - eta, dphi) > 0.2)


# --------------------------------------------------------------------------------------------
# reproducibility


def _arrays(sample):
    return {f"{c}_{f}": ak.to_numpy(ak.flatten(sample[c][f]))
            for c in ("Muon", "Jet") for f in sample[c].fields}


def test_events_do_not_depend_on_the_batch_size():
    process = load_card(CARD).process
    lines = tuple(P.settings(load_card(CARD)))
    a = run_worker(WorkerTask(0, 120, 4242, lines, process, batch=1000), progress=lambda *_: None)
    b = run_worker(WorkerTask(0, 120, 4242, lines, process, batch=37), progress=lambda *_: None)
    assert a.stats.tried == b.stats.tried
    for (k, x), y in zip(_arrays(a.sample).items(), _arrays(b.sample).values()):
        assert np.array_equal(x, y), k


def test_same_seed_same_events_different_seed_different(tmp_path):
    card = small_card()
    paths = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        paths[name] = produce(card, events=150, seed=seed, output=tmp_path / f"{name}.root",
                              jobs=2, quiet=True)
    a, b, c = (read_events(paths[k]) for k in "abc")
    assert a.info["worker_seeds"] == b.info["worker_seeds"] != c.info["worker_seeds"]
    for (k, x), y in zip(_arrays(a).items(), _arrays(b).values()):
        assert np.array_equal(x, y), k
    assert not np.array_equal(_arrays(a)["Muon_pt"], _arrays(c)["Muon_pt"])
    assert len(a) == len(c) == 150


def test_worker_seeds_are_distinct_and_in_pythia_range():
    seeds = {P.worker_seed(s, i) for s in range(50) for i in range(8)}
    assert len(seeds) == 400
    assert all(1 <= s <= P.MAX_SEED for s in seeds)


# --------------------------------------------------------------------------------------------
# the z_jet process option


def test_z_plus_parton_process_gives_the_same_kind_of_sample():
    card = small_card(hard_process="z_jet", pthat_min=10.0)
    lines = tuple(P.settings(card))
    assert "WeakBosonAndParton:qg2gmZq = on" in lines and "PhaseSpace:pTHatMin = 10" in lines
    r = run_worker(WorkerTask(0, 100, 99, lines, card.process, batch=200), progress=lambda *_: None)
    mu = r.sample["Muon"]
    m = ak.to_numpy((mu[:, 0] + mu[:, 1]).mass)
    assert abs(np.median(m[(m > 81) & (m < 101)]) - Z_MASS) < 1.5
    assert set(np.unique(r.sample.n_jets)) <= {1, 2, 3}
    assert r.stats.accepted / r.stats.tried > 0.3  # most Z + parton events have a 20 GeV jet


# --------------------------------------------------------------------------------------------
# command line and safe output


def _hepgen(*args, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "hepgen", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, **kw)


def test_cli_writes_a_readable_nanoaod_file_and_refuses_to_overwrite(tmp_path):
    import uproot

    out = tmp_path / "ref.root"
    r = _hepgen("simulate", str(CARD), "-n", "100", "--seed", "3", "-o", str(out), "--jobs", "1")
    assert r.returncode == 0, r.stderr
    assert f"wrote {out}" in r.stdout
    assert "PYTHIA" not in r.stdout + r.stderr and "FastJet" not in r.stdout + r.stderr
    with uproot.open(out) as f:
        assert set(f["Events"].keys()) == {
            "nMuon", "Muon_pt", "Muon_eta", "Muon_phi", "Muon_mass", "Muon_charge",
            "nJet", "Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "weight"}
        assert f["Events"]["Jet_pt"].interpretation.content.from_dtype == np.dtype(">f4")
    s = read_events(out)
    assert len(s) == 100 and s.info["seed"] == "3"
    assert (tmp_path / "ref.card.yaml").read_text() == s.info["card"]

    before = out.read_bytes()
    r = _hepgen("simulate", str(CARD), "-n", "50", "-o", str(out), "--jobs", "1")
    assert r.returncode == 2
    assert r.stderr.strip() == f"hepgen: error: output {out} exists; use --force to overwrite it"
    assert out.read_bytes() == before

    r = _hepgen("simulate", str(CARD), "-n", "50", "--seed", "4", "-o", str(out), "--jobs", "1", "--force")
    assert r.returncode == 0, r.stderr
    assert len(read_events(out)) == 50


def test_bad_pythia_setting_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "x.root"
    r = _hepgen("simulate", str(CARD), "-n", "10", "-o", str(out), "--set",
                "simulate.pythia=['Foo:bar = 3']")
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "hepgen: error: card: Pythia does not accept the setting 'Foo:bar = 3'")
    assert list(tmp_path.iterdir()) == []


def test_interrupted_run_leaves_no_file(tmp_path):
    out = tmp_path / "big.root"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "hepgen", "simulate", str(CARD), "-n", "1000000",
                             "-o", str(out), "--jobs", "2"], cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a shell's background job (CI started with `&`) inherits SIGINT ignored,
                            # and Python keeps an ignored SIGINT: give the run the default, as a terminal does
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        # interrupt once both workers run (a fixed sleep raced the start-up on a cold CI machine:
        # a SIGINT during the parent's imports can be swallowed by an extension module)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if children.exists() and len(children.read_text().split()) >= 3:  # resource tracker + 2 workers
                break
            time.sleep(0.2)
        time.sleep(2)  # workers are generating
        proc.send_signal(signal.SIGINT)  # to the parent only, as a batch system would
        _, err = proc.communicate(timeout=60)
    finally:  # never leave a 1M-event run behind (it would keep CI busy and trip later tests)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode != 0
    assert "hepgen: interrupted" in err or "KeyboardInterrupt" in err  # (if still starting up)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_refused_before_simulating(tmp_path):
    out = tmp_path / "exists.root"
    out.write_bytes(b"precious")
    t = time.perf_counter()
    with pytest.raises(OutputError, match="exists; use --force"):
        produce(small_card(), events=10**6, output=out, jobs=1)
    assert time.perf_counter() - t < 5  # refused up front, not after a million events
    assert out.read_bytes() == b"precious"


def test_impossible_cuts_stop_with_a_message():
    card = load_card(CARD)
    process = dataclasses.replace(card.process, jet_pt_min=5000.0)
    task = WorkerTask(0, 10, 1, tuple(P.settings(card)), process, batch=500, give_up_after=1500)
    with pytest.raises(HepgenError, match="no event passed the selection in 1500 generated"):
        run_worker(task, progress=lambda *_: None)


def test_weighted_pythia_events_are_refused():
    card = small_card(hard_process="z_jet")  # a 2 -> 2 process: pT-hat biasing applies
    lines = (*P.settings(card), "PhaseSpace:bias2Selection = on", "PhaseSpace:bias2SelectionPow = 2")
    task = WorkerTask(0, 10, 1, lines, card.process, batch=50)
    with pytest.raises(HepgenError, match="weighted events"):
        run_worker(task, progress=lambda *_: None)


def test_bad_card_values_are_card_errors():
    with pytest.raises(CardError, match="hard_process"):
        card_from_dict({"simulate": {"hard_process": "ttbar"}})
    with pytest.raises(CardError, match="jet_input_eta_max"):
        card_from_dict({"process": {"jet_input_eta_max": 0}})
