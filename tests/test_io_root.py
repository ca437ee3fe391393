"""ROOT I/O: NanoAOD-style TTrees round trip to the last float32 bit, external ntuples via a
branch mapping, TH1D histograms, and every bad input as a one-line InputError/OutputError."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from hepgen.errors import InputError, OutputError
from hepgen.events import EventSample, make_collection
from hepgen.io.root import RootWriter, iterate_events, read_events, read_histograms, write_events, write_histograms

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared/fixtures"
HZZ = FIXTURES / "uproot-HZZ.root"
HZZ_MAPPING = {
    "nJet": "NJet", "Jet_px": "Jet_Px", "Jet_py": "Jet_Py", "Jet_pz": "Jet_Pz", "Jet_E": "Jet_E",
    "nMuon": "NMuon", "Muon_px": "Muon_Px", "Muon_py": "Muon_Py", "Muon_pz": "Muon_Pz", "Muon_E": "Muon_E",
    "Muon_charge": "Muon_Charge", "weight": "EventWeight",
}


def random_sample(n: int, seed: int, info=None) -> EventSample:
    """Seeded Z+jets-like sample: 2 muons with charges, 0-3 jets, pT-ordered, random weights."""
    rng = np.random.default_rng(seed)

    def coll(counts, **extra):
        total = int(counts.sum())
        pt = ak.sort(ak.unflatten(20 + rng.exponential(40, total), counts), axis=1, ascending=False)
        return make_collection(
            pt, ak.unflatten(rng.normal(0, 2, total), counts),
            ak.unflatten(rng.uniform(-np.pi, np.pi, total), counts),
            ak.unflatten(rng.uniform(0, 15, total), counts),
            **{k: ak.unflatten(v, counts) for k, v in extra.items()},
        )

    n_mu = np.full(n, 2)
    n_jet = rng.integers(0, 4, n)
    muons = coll(n_mu, charge=rng.choice(np.array([-1, 1], dtype=np.int32), 2 * n))
    return EventSample.build({"Muon": muons, "Jet": coll(n_jet)}, weight=rng.normal(1.0, 0.3, n), info=info)


def flat(arr) -> np.ndarray:
    return ak.to_numpy(ak.flatten(arr, axis=None))


def assert_same_float32(written: EventSample, read: EventSample):
    """Every value read equals the written value rounded to float32, bit for bit."""
    assert len(read) == len(written)
    for name, coll in written.collections.items():
        np.testing.assert_array_equal(read.multiplicity(name), written.multiplicity(name))
        for f in ("pt", "eta", "phi", "mass"):
            want = flat(coll[f]).astype(np.float32)
            got = flat(read[name][f])
            assert got.astype(np.float32).tobytes() == want.tobytes(), f"{name}_{f}"
            assert np.array_equal(got, want.astype(np.float64)), f"{name}_{f} not exact in float64"
        if "charge" in coll.fields:
            np.testing.assert_array_equal(flat(read[name].charge), flat(coll.charge))
    assert read.weight.astype(np.float32).tobytes() == written.weight.astype(np.float32).tobytes()


# ---------------------------------------------------------------------------- round trips


def test_round_trip_is_bit_exact_in_float32_and_keeps_provenance(tmp_path):
    sample = random_sample(3000, seed=1, info={"seed": "1", "generator": "pythia"})
    path = write_events(tmp_path / "ev.root", sample, info={"card": "cards/zjets.yaml", "seed": "7"})
    back = read_events(path)
    assert_same_float32(sample, back)
    assert back.info["card"] == "cards/zjets.yaml"
    assert back.info["seed"] == "7"  # the info argument wins over sample.info
    assert back.info["generator"] == "pythia"
    assert "hepgen_version" in back.info


def test_file_is_a_nanoaod_style_ttree(tmp_path):
    path = write_events(tmp_path / "ev.root", random_sample(500, seed=2))
    with uproot.open(path) as f:
        assert f.classnames(cycle=False)["Events"] == "TTree"  # not an RNTuple
        tree = f["Events"]
        types = {k: tree[k].typename for k in tree.keys()}
        info = json.loads(str(f["hepgen_info"]))
    assert types["nMuon"] == "int32_t" and types["nJet"] == "int32_t"
    for c in ("Muon", "Jet"):
        for v in ("pt", "eta", "phi", "mass"):
            assert types[f"{c}_{v}"] == "float[]"
    assert types["Muon_charge"] == "int32_t[]"
    assert "Jet_charge" not in types
    assert types["weight"] == "float"
    assert info["hepgen_version"]


def test_streaming_chunks_equal_one_write_and_iterate(tmp_path):
    chunks = [random_sample(n, seed=s) for s, n in ((3, 700), (4, 0), (5, 1300), (6, 250))]
    whole = EventSample.concatenate(chunks)
    with RootWriter(tmp_path / "s.root", chunk_size=1000) as w:
        for c in chunks:
            w.write(c)
    assert w.n_written == len(whole)
    with uproot.open(tmp_path / "s.root") as f:
        # 700+0+1300 reach the 1000-event threshold: one extend, then the 250 at close
        assert f["Events"]["weight"].num_baskets == 2
    assert_same_float32(whole, read_events(tmp_path / "s.root"))
    parts = list(iterate_events(tmp_path / "s.root", step_size=600))
    assert [len(p) for p in parts] == [600, 600, 600, 450]
    assert_same_float32(whole, EventSample.concatenate(parts))
    middle = read_events(tmp_path / "s.root", entry_start=100, entry_stop=400)
    assert_same_float32(whole.select(np.arange(100, 400)), middle)


def test_empty_writer_gives_a_valid_empty_file(tmp_path):
    with RootWriter(tmp_path / "e.root"):
        pass
    with uproot.open(tmp_path / "e.root") as f:
        assert f["Events"].num_entries == 0


def test_external_ntuple_via_cartesian_branch_mapping():
    if not HZZ.exists():
        pytest.skip(f"fixture {HZZ} absent (needs ../shared/fixtures beside the checkout)")
    sample = read_events(HZZ, tree="events", branches=HZZ_MAPPING)
    with uproot.open(HZZ) as f:
        raw = f["events"].arrays(["NJet", "Jet_Px", "Jet_Py", "Jet_Pz", "Muon_Px", "Muon_Py", "Muon_Charge", "EventWeight"])
    assert len(sample) == 2421
    np.testing.assert_array_equal(sample.n_jets, ak.to_numpy(raw.NJet))
    # independent expectation: pT = hypot(px, py), per event sorted descending
    for c in ("Jet", "Muon"):
        px = raw[f"{c}_Px"].to_list()
        py = raw[f"{c}_Py"].to_list()
        want = [sorted((float(np.hypot(np.float64(a), np.float64(b))) for a, b in zip(x, y)), reverse=True)
                for x, y in zip(px, py)]
        got = sample[c].pt.to_list()
        assert len(got) == len(want)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-12)
    # eta of a jet: asinh(pz/pt); the charges follow their muons through the re-sort
    j = np.flatnonzero(ak.to_numpy(raw.NJet) > 0)[0]
    k = int(np.argmax(np.hypot(raw.Jet_Px[j].to_numpy(), raw.Jet_Py[j].to_numpy())))
    pt0 = np.hypot(np.float64(raw.Jet_Px[j][k]), np.float64(raw.Jet_Py[j][k]))
    assert sample["Jet"].eta[j][0] == pytest.approx(np.arcsinh(np.float64(raw.Jet_Pz[j][k]) / pt0), rel=1e-12)
    for i in range(50):
        pt = np.hypot(raw.Muon_Px[i].to_numpy(), raw.Muon_Py[i].to_numpy())
        np.testing.assert_array_equal(sample["Muon"].charge[i].to_numpy(), raw.Muon_Charge[i].to_numpy()[np.argsort(-pt, kind="stable")])
    np.testing.assert_array_equal(sample.weight, ak.to_numpy(raw.EventWeight).astype(np.float64))
    # iterating with the same mapping gives the same sample
    parts = list(iterate_events(HZZ, tree="events", branches=HZZ_MAPPING, step_size=1000))
    assert [len(p) for p in parts] == [1000, 1000, 421]
    np.testing.assert_array_equal(flat(EventSample.concatenate(parts)["Jet"].pt), flat(sample["Jet"].pt))


def test_histograms_written_as_th1d(tmp_path):
    import hist

    h = hist.Hist(hist.axis.Regular(10, 0.0, 200.0, name="pt_j1"), storage=hist.storage.Weight())
    h.fill(np.array([5.0, 25.0, 25.0, 199.0, 250.0]), weight=np.array([1.0, 2.0, 0.5, 3.0, 4.0]))
    path = write_histograms(tmp_path / "h.root", {"pt_j1": h})
    with uproot.open(path) as f:
        assert f.classnames(cycle=False)["pt_j1"] == "TH1D"
        th = f["pt_j1"]
        np.testing.assert_array_equal(th.values(), [1.0, 2.5, 0, 0, 0, 0, 0, 0, 0, 3.0])
        np.testing.assert_array_equal(th.variances(), [1.0, 4.25, 0, 0, 0, 0, 0, 0, 0, 9.0])
        np.testing.assert_array_equal(th.values(flow=True)[-1], 4.0)  # overflow kept
        np.testing.assert_array_equal(th.axis().edges(), np.linspace(0, 200, 11))
    back = read_histograms(path)["pt_j1"]
    np.testing.assert_array_equal(back.values(), h.values())
    with pytest.raises(OutputError, match="exists"):
        write_histograms(path, {"pt_j1": h})
    cut = tmp_path / "cut.root"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(InputError, match="cut.root: truncated"):
        read_histograms(cut)


# ---------------------------------------------------------------------------- bad input


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_missing_file(tmp_path):
    with pytest.raises(InputError) as err:
        read_events(tmp_path / "nope.root")
    assert "nope.root" in one_line(err) and "no such file" in one_line(err)


@pytest.mark.parametrize("keep", [0.02, 0.5, 0.9, 0.999])
def test_truncated_file(tmp_path, keep):
    path = write_events(tmp_path / "t.root", random_sample(4000, seed=8))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(InputError) as err:
        read_events(path)
    assert "t.root" in one_line(err) and "truncated" in one_line(err)


def test_not_a_root_file(tmp_path):
    path = tmp_path / "text.root"
    path.write_text("this is not ROOT\n")
    with pytest.raises(InputError, match="text.root.*not a readable ROOT file"):
        read_events(path)


def test_missing_tree_names_the_trees_present(tmp_path):
    path = write_events(tmp_path / "ev.root", random_sample(10, seed=9))
    with pytest.raises(InputError) as err:
        read_events(path, tree="events")
    assert "no TTree 'events'" in one_line(err) and "Events" in one_line(err)


def test_missing_branch(tmp_path):
    if not HZZ.exists():
        pytest.skip(f"fixture {HZZ} absent")
    mapping = dict(HZZ_MAPPING, Jet_E="Jet_Energy")
    with pytest.raises(InputError) as err:
        read_events(HZZ, tree="events", branches=mapping)
    assert "lacks branch Jet_E -> Jet_Energy" in one_line(err) and "uproot-HZZ.root" in one_line(err)
    # a hepgen-layout file missing one kinematic branch
    path = tmp_path / "partial.root"
    with uproot.recreate(path) as f:
        f.mktree("Events", {"Jet": "var * {pt: float32, eta: float32, phi: float32}"}).extend(
            {"Jet": ak.zip({"pt": [[30.0]], "eta": [[0.1]], "phi": [[0.2]]})}
        )
    with pytest.raises(InputError, match="needs Jet_pt/_eta/_phi/_mass"):
        read_events(path)
    # a mapping that names an unknown field
    with pytest.raises(InputError, match="Jet_energy: unknown field"):
        read_events(HZZ, tree="events", branches={"Jet_energy": "Jet_E"})


def test_nan_momenta_in_input(tmp_path):
    sample = random_sample(100, seed=10)
    eta = ak.to_numpy(ak.flatten(sample["Jet"].eta)).copy()
    eta[3] = np.nan
    jets = sample["Jet"]
    bad = EventSample.build({"Muon": sample["Muon"], "Jet": make_collection(jets.pt, ak.unflatten(eta, ak.num(jets)), jets.phi, jets.mass)})
    # hepgen refuses to write it ...
    with pytest.raises(OutputError, match="nan.root.*Jet_eta"):
        write_events(tmp_path / "nan.root", bad)
    assert list(tmp_path.iterdir()) == []
    # ... and to read such a file written by another tool
    path = tmp_path / "nan.root"
    with uproot.recreate(path) as f:
        f.mktree("Events", {"Jet": "var * {pt: float32, eta: float32, phi: float32, mass: float32}"}).extend(
            {"Jet": ak.zip({k: ak.values_astype(bad["Jet"][k], np.float32) for k in ("pt", "eta", "phi", "mass")})}
        )
    with pytest.raises(InputError) as err:
        read_events(path)
    assert "nan.root" in one_line(err) and "Jet_eta" in one_line(err)
    with pytest.raises(InputError, match="Jet_eta"):
        list(iterate_events(path))


def test_existing_output_refused_unless_force(tmp_path):
    path = tmp_path / "ev.root"
    path.write_bytes(b"old content")
    with pytest.raises(OutputError) as err:
        write_events(path, random_sample(10, seed=11))
    assert "exists" in one_line(err) and "--force" in one_line(err)
    assert path.read_bytes() == b"old content"
    write_events(path, random_sample(10, seed=11), force=True)
    assert len(read_events(path)) == 10


def test_unwritable_directory(tmp_path):
    parent_file = tmp_path / "file.txt"
    parent_file.write_text("x")
    with pytest.raises(OutputError) as err:
        write_events(parent_file / "out.root", random_sample(10, seed=12))
    assert "file.txt" in one_line(err)
    assert parent_file.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="cannot write"):
            write_events(ro / "out.root", random_sample(10, seed=12))
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)


def test_failure_mid_stream_leaves_nothing(tmp_path):
    path = tmp_path / "ev.root"

    def chunks():
        yield random_sample(500, seed=13)
        yield random_sample(500, seed=14)
        raise RuntimeError("generator crashed")

    with pytest.raises(RuntimeError, match="generator crashed"):
        with RootWriter(path, chunk_size=400) as w:  # the first chunk is already on disk
            for c in chunks():
                w.write(c)
    assert list(tmp_path.iterdir()) == []
    # with force over an existing file: the old file survives the crash untouched
    write_events(path, random_sample(20, seed=15))
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        write_events(path, chunks(), force=True)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ev.root"]


def test_inconsistent_chunks_refused(tmp_path):
    a = random_sample(10, seed=16)
    no_jets = EventSample.build({"Muon": a["Muon"]})
    mu = a["Muon"]
    no_charge = EventSample.build({"Muon": make_collection(mu.pt, mu.eta, mu.phi, mu.mass), "Jet": a["Jet"]})
    for b in (no_jets, no_charge):
        with pytest.raises(OutputError, match="chunk has branches"):
            write_events(tmp_path / "x.root", [a, b])
        assert list(tmp_path.iterdir()) == []


def test_branch_mapping_expressions_and_card_data_section(tmp_path):
    if not HZZ.exists():
        pytest.skip(f"fixture {HZZ} absent")
    from hepgen.cards import DataConfig
    from hepgen.io import read_data, read_sample

    plain = read_events(HZZ, tree="events", branches=HZZ_MAPPING)
    scaled = dict(HZZ_MAPPING, **{f"Jet_{c}": f"Jet_{c.capitalize() if c != 'E' else 'E'} * 1000" for c in ("px", "py", "pz", "E")})
    assert scaled["Jet_px"] == "Jet_Px * 1000"
    mev = read_sample(HZZ, tree="events", branches=scaled)
    np.testing.assert_allclose(flat(mev["Jet"].pt), 1000 * flat(plain["Jet"].pt), rtol=1e-6)  # float32 products
    np.testing.assert_allclose(flat(mev["Jet"].eta), flat(plain["Jet"].eta), rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="cannot evaluate a branch expression.*Jet_Q"):
        read_events(HZZ, tree="events", branches=dict(HZZ_MAPPING, Jet_E="Jet_Q * 2"))
    cfg = DataConfig(path=str(HZZ), format="root", tree="events", branches=HZZ_MAPPING, max_events=100)
    head = read_data(cfg)
    assert len(head) == 100
    np.testing.assert_array_equal(flat(head["Muon"].pt), flat(plain.select(np.arange(100))["Muon"].pt))
    with pytest.raises(InputError, match="unknown event file format"):
        read_sample(tmp_path / "events.csv")


# ---------------------------------------------------------------------------- per-event scalars


def test_scalars_round_trip_as_bool_and_int64_branches_through_chunks_and_selection(tmp_path):
    """A paired sample's pass flags and event indices are bool / int64 branches named in the provenance; they come back
    per event through streamed chunks, iteration and selection."""
    rng = np.random.default_rng(4)
    parts = []
    for seed in (1, 2):
        s = random_sample(300, seed)
        parts.append(replace(s, scalars={"pass_gen": rng.random(300) < 0.7, "pass_reco": rng.random(300) < 0.4,
                                         "event": np.arange(300, dtype=np.int64) + 10**12 * seed}))
    with RootWriter(tmp_path / "f.root", chunk_size=250) as w:
        for p in parts:
            w.write(p)
    whole = EventSample.concatenate(parts)
    with uproot.open(tmp_path / "f.root") as f:
        assert f["Events"]["pass_gen"].typename == "bool"
        assert f["Events"]["event"].typename == "int64_t"
        assert json.loads(json.loads(str(f["hepgen_info"]))["scalar_branches"]) == ["pass_gen", "pass_reco", "event"]
    back = read_events(tmp_path / "f.root")
    assert list(back.scalars) == ["pass_gen", "pass_reco", "event"]
    assert back.scalars["event"].dtype == np.int64 and back.scalars["pass_gen"].dtype == bool
    for k in whole.scalars:
        np.testing.assert_array_equal(back.scalars[k], whole.scalars[k])
    chunks = list(iterate_events(tmp_path / "f.root", step_size=170))
    np.testing.assert_array_equal(np.concatenate([c.scalars["pass_reco"] for c in chunks]), whole.scalars["pass_reco"])
    sel = back.select(back.scalars["pass_gen"])
    assert sel.scalars["pass_gen"].all() and len(sel.scalars["pass_reco"]) == len(sel)
    # a file without scalars has none; a chunk with other scalars than the first is refused
    write_events(tmp_path / "plain.root", random_sample(10, 3))
    assert read_events(tmp_path / "plain.root").scalars == {}
    with pytest.raises(OutputError, match="scalars"):
        with RootWriter(tmp_path / "bad.root") as w:
            w.write(parts[0])
            w.write(random_sample(10, 3))
    assert not (tmp_path / "bad.root").exists()
