"""LHE I/O: LHEF 3.0 written at full precision and read back bit-exact, read by pylhe and
accepted by Pythia 8; POWHEG and MadGraph files read; every bad input a one-line error."""

from __future__ import annotations

import math
import os
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from hepgen.errors import InputError, OutputError
from hepgen.events import EventSample, make_collection
from hepgen.io.lhe import LheWriter, iterate_lhe, load_lhe, read_lhe, write_lhe
from hepgen.kinematics import MUON_MASS, delta_phi, ptetaphim_to_epxpypz

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared/fixtures"
POWHEG = FIXTURES / "pylhe-testfile-powheg-box-v2-Zj.lhe"
MADGRAPH = FIXTURES / "pylhe-testfile-madgraph-2.0.0-wbj.lhe"


def zjets_sample(n: int, seed: int, info=None, weighted=True) -> EventSample:
    """Seeded Z->mumu + 1-3 jets-like sample: opposite-charge muons, jets with masses."""
    rng = np.random.default_rng(seed)

    def coll(counts, mass, **extra):
        t = int(counts.sum())
        pt = ak.sort(ak.unflatten(20 + rng.exponential(30, t), counts), axis=1, ascending=False)
        return make_collection(
            pt, ak.unflatten(np.clip(rng.normal(0, 1.2, t), -3.0, 3.0), counts),
            ak.unflatten(rng.uniform(-np.pi, np.pi, t), counts), ak.unflatten(mass(t), counts),
            **{k: ak.unflatten(v, counts) for k, v in extra.items()},
        )

    q = rng.choice(np.array([-1, 1], np.int32), n)
    muons = coll(np.full(n, 2), lambda t: np.full(t, MUON_MASS), charge=np.stack([q, -q], axis=1).ravel())
    jets = coll(rng.integers(1, 4, n), lambda t: rng.uniform(2, 15, t))
    w = rng.normal(1.0, 0.6, n) if weighted else None
    return EventSample.build({"Muon": muons, "Jet": jets}, weight=w, info=info)


def flat(a) -> np.ndarray:
    return ak.to_numpy(ak.flatten(a, axis=None))


def one_line(err: pytest.ExceptionInfo) -> str:
    assert "\n" not in str(err.value)
    return str(err.value)


# ---------------------------------------------------------------------------- writing


def test_round_trip_full_precision(tmp_path):
    s = zjets_sample(300, seed=1, info={"seed": "1", "cross_section_pb": "1234.5678901234567"})
    rng = np.random.default_rng(2)
    variations = {f"bnn_{k}": s.weight * (1 + 1e-9 * rng.normal(size=len(s))) for k in range(3)}
    path = write_lhe(tmp_path / "ev.lhe", s, weights=variations, info={"card": "cards/zjets.yaml"})
    back = load_lhe(path)
    # weights and variations: every float64 bit (differences of 1e-9 survive)
    assert back.sample.weight.tobytes() == s.weight.tobytes()
    assert list(back.weights) == list(variations)
    for k, v in variations.items():
        assert back.weights[k].tobytes() == v.tobytes()
    # the written Cartesian momenta are exactly the float64 values of the sample
    fs = back.particles[back.particles.status == 1]
    for name, pdg in (("Muon", 13), ("Jet", 21)):
        got = fs[abs(fs.pdgId) == pdg]
        e, px, py, pz = ptetaphim_to_epxpypz(*(flat(s[name][f]) for f in ("pt", "eta", "phi", "mass")))
        for want, f in ((px, "px"), (py, "py"), (pz, "pz"), (e, "e")):
            assert flat(got[f]).tobytes() == want.tobytes(), f"{name} {f}"
        assert flat(got.m).tobytes() == flat(s[name].mass).tobytes()
    # and the objects come back in (pt, eta, phi, m) to float64 rounding
    for name in ("Muon", "Jet"):
        np.testing.assert_array_equal(back.sample.multiplicity(name), s.multiplicity(name))
        a, b = s[name], back.sample[name]
        np.testing.assert_allclose(flat(b.pt), flat(a.pt), rtol=1e-14)
        np.testing.assert_allclose(flat(b.eta), flat(a.eta), rtol=1e-13, atol=1e-14)
        assert np.abs(delta_phi(flat(b.phi), flat(a.phi))).max() < 1e-14
        assert flat(b.mass).tobytes() == flat(a.mass).tobytes()
    np.testing.assert_array_equal(flat(back.sample["Muon"].charge), flat(s["Muon"].charge))
    assert back.sample.info["card"] == "cards/zjets.yaml" and back.sample.info["seed"] == "1"
    assert back.init.cross_section_pb == 1234.5678901234567
    assert back.init.beam_id == (2212, 2212) and back.init.beam_energy == (6500.0, 6500.0)


def test_event_record_structure(tmp_path):
    s = zjets_sample(200, seed=3, weighted=False)
    back = load_lhe(write_lhe(tmp_path / "u.lhe", s, sqrt_s=13600.0))
    assert back.init.idwtup == 3
    assert back.init.beam_energy == (6800.0, 6800.0)
    p = back.particles
    n_obj = s.multiplicity("Muon") + s.multiplicity("Jet")
    np.testing.assert_array_equal(ak.num(p, axis=1), 2 + 1 + n_obj)  # 2 incoming + Z + objects
    assert ak.all(p.spinup == 9)
    # incoming partons: u along +z, ubar along -z, no pT
    assert ak.all(p.pdgId[:, 0] == 2) and ak.all(p.pdgId[:, 1] == -2)
    assert ak.all(p.status[:, :2] == -1)
    assert ak.all(p.px[:, :2] == 0) and ak.all(p.py[:, :2] == 0)
    assert ak.all(p.pz[:, 0] > 0) and ak.all(p.pz[:, 1] < 0)
    # E and pz conserved between incoming and final state
    fs = p[p.status == 1]
    for f in ("e", "pz"):
        np.testing.assert_allclose(ak.sum(p[f][:, :2], axis=1), ak.sum(fs[f], axis=1), rtol=1e-12)
    # the Z: status 2, mothers 1 2, four-momentum of the muon pair, the muons' mother (1-based)
    z = p[:, 2]
    assert ak.all(z.pdgId == 23) and ak.all(z.status == 2) and ak.all(z.mother1 == 1) and ak.all(z.mother2 == 2)
    mu = fs[abs(fs.pdgId) == 13]
    assert ak.all(ak.num(mu) == 2) and ak.all(mu.mother1 == 3) and ak.all(mu.mother2 == 3)
    for f in ("px", "py", "pz", "e"):
        np.testing.assert_allclose(z[f], ak.sum(mu[f], axis=1), rtol=1e-12)
    # muon charge -1 -> pdgId 13; jets are gluons with colour
    np.testing.assert_array_equal(flat(mu.pdgId), np.where(flat(s["Muon"].charge) < 0, 13, -13))
    jets = fs[fs.pdgId == 21]
    np.testing.assert_array_equal(ak.num(jets), s.multiplicity("Jet"))
    assert ak.all(jets.mother1 == 1) and ak.all(jets.color1 > 0) and ak.all(jets.color2 > 0)
    # XWGTUP of an unweighted sample is 1
    assert np.all(back.sample.weight == 1.0)


def test_idwtup_follows_the_weights(tmp_path):
    s = zjets_sample(50, seed=4)
    positive = EventSample.build(s.collections, weight=np.abs(s.weight) + 0.1)
    negative = EventSample.build(s.collections, weight=np.where(np.arange(50) == 7, -0.5, 1.0))
    assert load_lhe(write_lhe(tmp_path / "p.lhe", positive)).init.idwtup == 4
    back = load_lhe(write_lhe(tmp_path / "n.lhe", negative))
    assert back.init.idwtup == -4
    assert back.init.processes[0][2] == 1.0  # XMAXUP = max |w|
    assert back.init.cross_section_pb == pytest.approx((49 - 0.5) / 50)  # no xsec in info: mean weight


def test_streaming_chunks_give_the_same_file(tmp_path):
    s = zjets_sample(400, seed=5, info={"seed": "5"})
    w = {"v": s.weight * 2}
    write_lhe(tmp_path / "one.lhe", s, weights=w)
    with LheWriter(tmp_path / "chunks.lhe") as writer:
        for lo, hi in ((0, 150), (150, 150), (150, 400)):
            idx = np.arange(lo, hi)
            writer.write(s.select(idx), weights={"v": w["v"][idx]})
    assert (tmp_path / "one.lhe").read_bytes() == (tmp_path / "chunks.lhe").read_bytes()
    parts = list(iterate_lhe(tmp_path / "one.lhe", step_size=160))
    assert [len(p.sample) for p in parts] == [160, 160, 80]
    joined = np.concatenate([p.weights["v"] for p in parts])
    assert joined.tobytes() == w["v"].tobytes()


def test_provenance_completed_after_the_last_chunk(tmp_path):
    """``update_info`` after the header is out (counts known only at the end): the header carries
    the final keys, the events are untouched, and the file still reads with pylhe. Provenance
    that outgrows the room kept for it is an OutputError that leaves no file."""
    s = zjets_sample(120, seed=8, info={"seed": "8"})
    write_lhe(tmp_path / "plain.lhe", s, info={"events": "120"})
    with LheWriter(tmp_path / "late.lhe", info={"events": "pending"}) as writer:
        writer.write(s.select(np.arange(60)))
        writer.write(s.select(np.arange(60, 120)))
        writer.update_info({"events": "120", "dropped_dR_jj": "3"})
    back = load_lhe(tmp_path / "late.lhe")
    assert back.sample.info["events"] == "120" and back.sample.info["dropped_dR_jj"] == "3"
    assert back.sample.info["seed"] == "8"
    plain = load_lhe(tmp_path / "plain.lhe")
    assert ak.to_list(back.sample["Jet"].pt) == ak.to_list(plain.sample["Jet"].pt)
    np.testing.assert_array_equal(back.sample.weight, plain.sample.weight)
    pylhe = pytest.importorskip("pylhe")
    assert len(list(pylhe.LHEFile.fromfile(str(tmp_path / "late.lhe")).events)) == 120
    with pytest.raises(OutputError, match="outgrew"):
        with LheWriter(tmp_path / "big.lhe") as writer:
            writer.write(s)
            writer.update_info({"notes": "x" * 5000})
    assert not (tmp_path / "big.lhe").exists()


def test_pylhe_reads_our_file_at_full_precision(tmp_path):
    pylhe = pytest.importorskip("pylhe")
    s = zjets_sample(40, seed=6, info={"cross_section_pb": "55.5"})
    var = {"b0": s.weight * (1 + 3e-8)}
    path = write_lhe(tmp_path / "ev.lhe", s, weights=var)
    f = pylhe.LHEFile.fromfile(str(path))
    events = list(f.events)
    assert len(events) == 40
    assert f.init.initInfo.beamA == 2212 and f.init.initInfo.energyA == 6500.0
    assert f.init.initInfo.weightingStrategy == -4
    assert f.init.procInfo[0].xSection == 55.5
    np.testing.assert_array_equal([e.eventinfo.weight for e in events], s.weight)
    np.testing.assert_array_equal([e.weights["b0"] for e in events], var["b0"])  # pylhe parses all digits
    assert [p.id for p in events[0].particles][:3] == [2, -2, 23]


def test_pythia_accepts_the_file(tmp_path):
    pythia8mc = pytest.importorskip("pythia8mc")
    s = zjets_sample(100, seed=7, info={"cross_section_pb": "700"})
    path = write_lhe(tmp_path / "ev.lhe", s)
    py = pythia8mc.Pythia("", False)
    for setting in ("Beams:frameType = 4", f"Beams:LHEF = {path}", "PartonLevel:all = off",
                    "HadronLevel:all = off", "Next:numberCount = 0", "Next:numberShowLHA = 0",
                    "Next:numberShowInfo = 0", "Next:numberShowProcess = 0", "Next:numberShowEvent = 0"):
        assert py.readString(setting)
    assert py.init()
    mu_px = flat(ptetaphim_to_epxpypz(*(s["Muon"][f] for f in ("pt", "eta", "phi", "mass")))[1])
    seen = []
    for i in range(len(s)):
        assert py.next(), f"Pythia rejected event {i}"
        assert py.infoPython().eventWeightLHEF == s.weight[i]
        rec = py.process
        seen += [rec[j].px() for j in range(rec.size()) if rec[j].isFinal() and abs(rec[j].id()) == 13]
    assert not py.next() and py.infoPython().atEndOfFile()
    np.testing.assert_allclose(seen, mu_px, rtol=1e-12)


# ---------------------------------------------------------------------------- other generators


def test_read_powheg_file():
    pylhe = pytest.importorskip("pylhe")
    if not POWHEG.exists():
        pytest.skip(f"fixture {POWHEG} absent (needs ../shared/fixtures beside the checkout)")
    c = load_lhe(POWHEG)
    s = c.sample
    ref = list(pylhe.LHEFile.fromfile(str(POWHEG)).events)
    assert len(s) == len(ref) == 100
    assert sorted(s.collections) == ["Electron", "Jet"]
    assert s.info["cross_section_pb"] == "141.939" and s.info["cross_section_error_pb"] == "21.6282"
    assert c.init.beam_id == (2212, -2212) and c.init.idwtup == -4
    np.testing.assert_array_equal(s.weight, [e.eventinfo.weight for e in ref])
    # final-state electrons from pylhe, pT from hypot(px, py), sorted per event
    for i, ev in enumerate(ref[:20]):
        ele = [p for p in ev.particles if p.status == 1 and abs(p.id) == 11]
        want = sorted((math.hypot(p.px, p.py) for p in ele), reverse=True)
        np.testing.assert_allclose(s["Electron"].pt[i].to_list(), want, rtol=1e-15)
        got_charge = s["Electron"].charge[i].to_list()
        by_pt = sorted(ele, key=lambda p: -math.hypot(p.px, p.py))
        assert got_charge == [-1 if p.id > 0 else 1 for p in by_pt]
        partons = [p for p in ev.particles if p.status == 1 and (abs(p.id) <= 5 or p.id == 21)]
        assert len(s["Jet"][i]) == len(partons)
    assert np.all(s.multiplicity("Electron") == 2)


def test_read_madgraph_file_with_reweighting():
    pylhe = pytest.importorskip("pylhe")
    if not MADGRAPH.exists():
        pytest.skip(f"fixture {MADGRAPH} absent (needs ../shared/fixtures beside the checkout)")
    c = load_lhe(MADGRAPH)
    ref = list(pylhe.LHEFile.fromfile(str(MADGRAPH)).events)
    assert len(c.sample) == len(ref) == 59
    assert list(c.weights) == [str(k) for k in range(1001, 1010)]
    for k in c.weights:
        np.testing.assert_array_equal(c.weights[k], [e.weights[k] for e in ref])
    assert c.init.pdf_id == (21100, 21100) and c.init.cross_section_pb == 50.109086
    # W bosons left undecayed (status 1) are kept in "Boson"; b and d quarks are jets
    np.testing.assert_array_equal(flat(c.sample["Boson"].pdgId), [
        p.id for e in ref for p in e.particles if p.status == 1 and abs(p.id) == 24])
    assert np.all(c.sample.multiplicity("Jet") == 2)


# ---------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path):
    with pytest.raises(InputError) as err:
        read_lhe(tmp_path / "none.lhe")
    assert "none.lhe: no such file" in one_line(err)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("hello world\n", "not an LHE file"),
        ('<LesHouchesEvents version="3.0">\n<init>\n2212 2212 6500 6500\n</init>\n', "malformed <init>"),
        ('<LesHouchesEvents version="3.0">\n<init>\n2212 2212 6500 6500 0 0 -1 -1 3 1\n1 0 1 1\n</init>\n'
         "<event>\n1 1 1.0 91 -1 -1\n13 1 1 2 0 0 1.0 2.0 x 4.0 0.1 0 9\n</event>\n</LesHouchesEvents>\n",
         "malformed event 1: not a number in a particle line"),
        ('<LesHouchesEvents version="3.0">\n<init>\n2212 2212 6500 6500 0 0 -1 -1 3 1\n1 0 1 1\n</init>\n'
         "<event>\n2 1 1.0 91 -1 -1\n13 1 1 2 0 0 1.0 2.0 3.0 4.0 0.1 0 9\n</event>\n</LesHouchesEvents>\n",
         "inside event 1"),
    ],
)
def test_malformed_file(tmp_path, text, problem):
    path = tmp_path / "bad.lhe"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        read_lhe(path)
    assert "bad.lhe: line" in one_line(err) and problem in one_line(err)


def test_truncated_file(tmp_path):
    path = write_lhe(tmp_path / "ev.lhe", zjets_sample(30, seed=8))
    text = path.read_text()
    # cut in the middle of the particle lines of event 12
    start = [i for i in range(len(text)) if text.startswith("<event>", i)][11]
    cut = tmp_path / "cut.lhe"
    cut.write_text(text[: start + 300])
    with pytest.raises(InputError) as err:
        read_lhe(cut)
    assert "cut.lhe" in one_line(err) and "truncated" in one_line(err) and "event 12" in one_line(err)
    # cut cleanly between events: the missing closing tag is still noticed
    end = text.rindex("</event>") + len("</event>\n")
    cut.write_text(text[:end])
    with pytest.raises(InputError, match="truncated: no closing </LesHouchesEvents>"):
        read_lhe(cut)
    # iterating yields the complete chunks, then raises at the damage
    cut.write_text(text[: start + 300])
    chunks = iterate_lhe(cut, step_size=5)
    assert [len(next(chunks).sample) for _ in range(2)] == [5, 5]
    with pytest.raises(InputError, match="truncated"):
        list(chunks)


def test_nan_momenta_in_input(tmp_path):
    path = write_lhe(tmp_path / "ev.lhe", zjets_sample(10, seed=9))
    lines = path.read_text().splitlines(keepends=True)
    k = next(i for i, l in enumerate(lines) if l.startswith("21 1 "))
    fields = lines[k].split()
    fields[8] = "nan"  # pz of a jet
    lines[k] = " ".join(fields) + "\n"
    path.write_text("".join(lines))
    with pytest.raises(InputError) as err:
        read_lhe(path)
    assert "ev.lhe" in one_line(err) and "Jet_eta" in one_line(err)


def test_existing_output_refused_unless_force(tmp_path):
    path = tmp_path / "ev.lhe"
    path.write_text("old")
    with pytest.raises(OutputError, match="exists; use --force"):
        write_lhe(path, zjets_sample(5, seed=10))
    assert path.read_text() == "old"
    write_lhe(path, zjets_sample(5, seed=10), force=True)
    assert len(read_lhe(path)) == 5


def test_unwritable_directory(tmp_path):
    parent = tmp_path / "file.txt"
    parent.write_text("x")
    with pytest.raises(OutputError) as err:
        write_lhe(parent / "ev.lhe", zjets_sample(5, seed=11))
    assert "file.txt" in one_line(err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="cannot write"):
            write_lhe(ro / "ev.lhe", zjets_sample(5, seed=11))
    finally:
        ro.chmod(0o700)


def test_failure_mid_stream_leaves_nothing(tmp_path):
    def chunks():
        yield zjets_sample(20, seed=12)
        raise RuntimeError("network crashed")

    with pytest.raises(RuntimeError, match="network crashed"):
        write_lhe(tmp_path / "ev.lhe", chunks())
    assert list(tmp_path.iterdir()) == []
    # non-finite momenta while writing: an OutputError, and still nothing on disk
    s = zjets_sample(5, seed=13)
    pt = flat(s["Jet"].pt).copy()
    pt[2] = np.inf
    bad = EventSample.build({"Muon": s["Muon"], "Jet": make_collection(
        ak.unflatten(pt, ak.num(s["Jet"])), s["Jet"].eta, s["Jet"].phi, s["Jet"].mass)})
    with pytest.raises(OutputError, match="non-finite momenta"):
        write_lhe(tmp_path / "ev.lhe", bad)
    assert list(tmp_path.iterdir()) == []


def test_gzip_output_is_reproducible_and_reads_back(tmp_path):
    import gzip

    s = zjets_sample(30, seed=14)
    a = write_lhe(tmp_path / "a.lhe.gz", s)
    b = write_lhe(tmp_path / "b.lhe.gz", s)
    plain = write_lhe(tmp_path / "c.lhe", s)
    assert a.read_bytes() == b.read_bytes()  # no time stamp in the gzip header
    assert gzip.decompress(a.read_bytes()) == plain.read_bytes()
    assert read_lhe(a).weight.tobytes() == s.weight.tobytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.lhe.gz", "b.lhe.gz", "c.lhe"]
    cut = tmp_path / "cut.lhe.gz"
    cut.write_bytes(a.read_bytes()[: len(a.read_bytes()) // 2])
    with pytest.raises(InputError, match="cut.lhe.gz.*truncated"):
        read_lhe(cut)


# ---------------------------------------------------------------------------- command line


def run_cli(args, capsys) -> tuple[int, str, str]:
    from hepgen.cli import main

    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


def test_cli_convert_lhe_root_lhe(tmp_path, capsys):
    if not POWHEG.exists():
        pytest.skip(f"fixture {POWHEG} absent (needs ../shared/fixtures beside the checkout)")
    rc, out, _ = run_cli(["convert", POWHEG, tmp_path / "z.root"], capsys)
    assert rc == 0 and "100 events" in out
    rc, out, _ = run_cli(["convert", tmp_path / "z.root", tmp_path / "z.lhe", "--sqrt-s", 1960], capsys)
    assert rc == 0
    orig, back = read_lhe(POWHEG), load_lhe(tmp_path / "z.lhe")
    assert back.init.beam_energy == (980.0, 980.0)
    np.testing.assert_array_equal(back.sample.weight, orig.weight.astype(np.float32))  # ROOT stores float32
    np.testing.assert_array_equal(flat(back.sample["Electron"].charge), flat(orig["Electron"].charge))
    np.testing.assert_allclose(flat(back.sample["Electron"].pt), flat(orig["Electron"].pt), rtol=1e-6)
    assert back.sample.info["converted_from"] == str(tmp_path / "z.root")


def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    rc, out, err = run_cli(["convert", tmp_path / "missing.lhe", tmp_path / "o.root"], capsys)
    assert rc == 2 and err.strip().count("\n") == 0
    assert err.startswith("hepgen: error: ") and "missing.lhe: no such file" in err
    good = write_lhe(tmp_path / "ev.lhe", zjets_sample(20, seed=15))
    cut = tmp_path / "cut.lhe"
    cut.write_text(good.read_text()[:3000])
    rc, out, err = run_cli(["convert", cut, tmp_path / "o.root"], capsys)
    assert rc == 2 and "truncated" in err and err.strip().count("\n") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.lhe", "ev.lhe"]
    (tmp_path / "o.root").write_text("keep")
    rc, out, err = run_cli(["convert", good, tmp_path / "o.root"], capsys)
    assert rc == 2 and "exists; use --force" in err and (tmp_path / "o.root").read_text() == "keep"


def test_pythia_accepts_a_converted_madgraph_file(tmp_path):
    """Quark jets, undecayed W bosons and no muons: still a record Pythia reads."""
    pythia8mc = pytest.importorskip("pythia8mc")
    if not MADGRAPH.exists():
        pytest.skip(f"fixture {MADGRAPH} absent (needs ../shared/fixtures beside the checkout)")
    from hepgen.io import convert

    path, n = convert(MADGRAPH, tmp_path / "mg.lhe", sqrt_s=8000.0, progress=False)
    back = load_lhe(path)
    assert n == 59 and ak.all(back.sample["Jet"].pdgId == 21)
    assert back.weights["1003"].tobytes() == load_lhe(MADGRAPH).weights["1003"].tobytes()
    py = pythia8mc.Pythia("", False)
    for setting in ("Beams:frameType = 4", f"Beams:LHEF = {path}", "PartonLevel:all = off",
                    "HadronLevel:all = off", "Next:numberCount = 0", "Next:numberShowLHA = 0",
                    "Next:numberShowInfo = 0", "Next:numberShowProcess = 0", "Next:numberShowEvent = 0"):
        assert py.readString(setting)
    assert py.init()
    for i in range(n):
        assert py.next(), f"Pythia rejected event {i}"
    assert not py.next() and py.infoPython().atEndOfFile()
