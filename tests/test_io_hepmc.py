"""HepMC3 files as the simulation's input: Pythia events -> HepMC3 -> the same selected events.

Float tolerance: the writer prints 16 significant digits (HepMC3 ASCII's default), so a float64
comes back within one part in 1e15 (a round-off of the last digit); the comparisons below allow
REL = 1e-14. In practice the selected muons and jets came back bit-identical.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from hepgen.cards import load_card
from hepgen.errors import HepgenError, InputError
from hepgen.io.hepmc import HepmcWriter, read_hepmc, write_hepmc
from hepgen.io.hepmc_graph import EventGraph, flat_fields
from hepgen.io.root import read_events
from hepgen.simulate import produce
from hepgen.simulate import pythia as P
from hepgen.simulate import selection as S

ROOT = Path(__file__).resolve().parents[1]
CARD = ROOT / "cards" / "zjets.yaml"
FIXTURES = ROOT.parent / "shared" / "fixtures"
REL = 1e-14  # 16 significant digits in the file


@pytest.fixture(scope="module")
def card():
    return load_card(CARD)


@pytest.fixture(scope="module")
def batch(card):
    """400 raw Pythia Z+jets events (hadron level) with the card's settings."""
    return P.make_pythia(P.settings(card), 7).nextBatch(400)


@pytest.fixture(scope="module")
def hepmc_file(batch, tmp_path_factory):
    path = tmp_path_factory.mktemp("hepmc") / "zjets.hepmc"
    write_hepmc(path, [batch[:250], batch[250:]], {"cross_section_pb": "1500.0", "cross_section_error_pb": "20.0",
                                                  "generator": "Pythia", "generator_version": "8.317", "seed": "7"})
    return path


@pytest.fixture(scope="module")
def read_back(hepmc_file):
    reader = read_hepmc(hepmc_file, 128)
    batches = list(reader)
    return reader, batches, ak.concatenate(batches)


def _hepgen(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "hepgen", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def _where(batch, back):
    """Global particle index in ``batch`` -> global index of the same particle in ``back`` (the
    writer renumbers particles so that mothers come first; system entries map to each other)."""
    rec, rec_back = S.FlatRecord.from_batch(batch), S.FlatRecord.from_batch(back)
    where = np.zeros(len(rec.pid), dtype=np.int64)
    others = np.ones(len(rec_back.pid), dtype=bool)
    others[rec_back.offsets[:-1]] = False
    where[EventGraph(flat_fields(batch)).order] = np.flatnonzero(others)
    where[rec.offsets[:-1]] = rec_back.offsets[:-1]
    assert np.array_equal(rec_back.pid[where], rec.pid)
    return where


def _same_selection(a, b, float32=False):
    """The same muons and jets; ``float32``: ``b`` was read from a ROOT file (float32 branches)."""
    for name in ("Muon", "Jet"):
        assert np.array_equal(a.multiplicity(name), b.multiplicity(name))
        for field in ("pt", "eta", "phi", "mass"):
            x, y = (ak.to_numpy(ak.flatten(s[name][field])) for s in (a, b))
            if float32:
                x, y = x.astype(np.float32), y.astype(np.float32)
            np.testing.assert_allclose(y, x, rtol=REL, atol=1e-12)


# --------------------------------------------------------------------------------------------
# round trip


def test_layout_is_pythias_next_batch(read_back, batch):
    reader, batches, back = read_back
    assert [len(b) for b in batches] == [128, 128, 128, 16]
    assert reader.events == reader.total == 400 and reader.format == "hepmc3"
    assert reader.generator == f"Pythia 8.317; hepgen {__import__('hepgen').__version__}"
    assert reader.cross_section == (1500.0, 20.0)
    prt = back["prt"]
    assert set(prt.fields) >= {"id", "status", "mother1", "mother2", "p", "m"}
    assert set(prt["p"].fields) == {"px", "py", "pz", "e"}
    assert np.all(ak.to_numpy(prt.id[:, 0]) == 90) and np.all(ak.to_numpy(prt.mother1[:, 0]) == 0)
    assert np.all(ak.to_numpy(ak.num(prt)) == ak.to_numpy(ak.num(batch["prt"])))  # same particles, one system entry
    assert ak.all(ak.firsts(back["info"]["weights"], axis=1) == 1.0)
    # final state <-> positive status, and the system entry carries the final-state sum (pp at 13 TeV)
    assert np.array_equal(ak.to_numpy(ak.sum(prt.status > 0, axis=1)), ak.to_numpy(ak.sum(batch["prt"].status > 0, axis=1)))
    np.testing.assert_allclose(ak.to_numpy(prt.p.e[:, 0]), 13000.0, rtol=1e-9)


def test_selection_of_the_read_back_events_is_the_same(read_back, batch, card):
    original, flags = S.select(batch, card.process)
    again, flags_again = S.select(read_back[2], card.process)
    assert len(original) > 50
    assert np.array_equal(flags.keep, flags_again.keep) and np.array_equal(flags.n_jets, flags_again.n_jets)
    _same_selection(original, again)


def test_mother1_chains_survive_and_find_the_same_z_muons(read_back, batch):
    back = read_back[2]
    rec, rec_back = S.FlatRecord.from_batch(batch), S.FlatRecord.from_batch(back)
    where = _where(batch, back)
    system = np.zeros(len(rec.pid), dtype=bool)
    system[rec.offsets[:-1]] = True
    # every particle's mother1 is the read-back particle's mother1
    assert np.array_equal(rec_back.mother[where[~system]], where[rec.mother[~system]])
    assert np.array_equal(rec_back.pid[where], rec.pid)
    products, z_mu = S.z_decay_products(rec)
    products_back, z_mu_back = S.z_decay_products(rec_back)
    assert np.all(np.bincount(rec.event[z_mu], minlength=400) == 2)  # every event has its two Z muons
    assert np.array_equal(np.flatnonzero(z_mu_back), np.sort(where[z_mu]))
    assert np.array_equal(np.flatnonzero(products_back), np.sort(where[products]))


def test_second_mothers_come_back(read_back, batch):
    """Pythia's mother2 (the hard process's second parton, the last parton of a hadron's
    string) is the last incoming particle of the rebuilt vertex."""
    rec, back = S.FlatRecord.from_batch(batch), read_back[2]
    where = _where(batch, back)
    m2 = ak.to_numpy(ak.flatten(batch["prt"].mother2)).astype(np.int64)
    m2_back = ak.to_numpy(ak.flatten(back["prt"].mother2)).astype(np.int64)
    system, system_back = rec.offsets[:-1][rec.event], S.FlatRecord.from_batch(back).offsets[:-1]
    two = (m2 > 0) & (m2 + system != rec.mother)
    assert two.sum() > 1000 and set(np.abs(rec.status[two])) >= {22, 83, 84}
    k = where[np.flatnonzero(two)]
    event_back = np.searchsorted(system_back, k, side="right") - 1
    assert np.array_equal(m2_back[k] + system_back[event_back], where[(m2 + system)[two]])


def test_read_back_events_write_and_read_again(read_back, tmp_path, card):
    """Read-back batches are writer input too (compressed here). Pythia's string ranges are
    HepMC vertices by then, so the particles may be renumbered; the events are the same."""
    back = read_back[2]
    path = tmp_path / "again.hepmc.gz"
    write_hepmc(path, back)
    with gzip.open(path, "rb") as f:
        assert f.read(22) == b"HepMC::Version 3.02.05"
    again = ak.concatenate(list(read_hepmc(path, 1000)))
    final, final_again = (b["prt"][b["prt"].status > 0] for b in (back, again))
    for field in ("px", "py", "pz", "e"):  # the final state, event by event, in any order
        x, y = (ak.to_numpy(ak.flatten(ak.sort(f["p"][field], axis=1))) for f in (final, final_again))
        np.testing.assert_allclose(y, x, rtol=REL, atol=1e-12)
    _same_selection(S.select(back, card.process)[0], S.select(again, card.process)[0])
    rec, rec_again = S.FlatRecord.from_batch(back), S.FlatRecord.from_batch(again)
    assert np.array_equal(np.sort(rec.e[S.z_decay_products(rec)[1]]), np.sort(rec_again.e[S.z_decay_products(rec_again)[1]]))


# --------------------------------------------------------------------------------------------
# files hepgen did not write


def _foreign_event(pyhepmc, run, unit, number, weight=1.0, xs=None):
    """q qbar -> Z -> mu+ mu- with a photon, two beams, a vertex with two incoming particles;
    momenta in ``unit``."""
    k = 1000.0 if unit == pyhepmc.Units.MEV else 1.0
    ev = pyhepmc.GenEvent(unit, pyhepmc.Units.MM)
    ev.event_number = number
    b1 = pyhepmc.GenParticle((0, 0, 6500 * k, 6500 * k), 2212, 4)
    b2 = pyhepmc.GenParticle((0, 0, -6500 * k, 6500 * k), 2212, 4)
    q1 = pyhepmc.GenParticle((0, 0, 50 * k, 50 * k), 2, 21)
    q2 = pyhepmc.GenParticle((0, 0, -40 * k, 40 * k), -2, 21)
    z = pyhepmc.GenParticle((0, 0, 10 * k, 90 * k), 23, 22)
    z.generated_mass = 89.44 * k
    mu1 = pyhepmc.GenParticle((30 * k, 0, 5 * k, 30.42 * k), 13, 1)
    mu2 = pyhepmc.GenParticle((-29 * k, 0, 5 * k, 29.43 * k), -13, 1)
    gam = pyhepmc.GenParticle((-1 * k, 0, 0, 1 * k), 22, 1)
    for inc, out in (([b1], [q1]), ([b2], [q2]), ([q1, q2], [z]), ([z], [mu1, mu2, gam])):
        v = pyhepmc.GenVertex()
        for p in inc:
            v.add_particle_in(p)
        for p in out:
            v.add_particle_out(p)
        ev.add_vertex(v)
    ev.weights = [weight]
    ev.run_info = run
    if xs is not None:
        c = pyhepmc.GenCrossSection()
        c.set_cross_section(*xs)
        ev.cross_section = c
    return ev


def _write_foreign(path, n=3, unit="GEV", fmt=None, weights=None, xs=(1234.5, 6.7)):
    import pyhepmc

    unit = getattr(pyhepmc.Units, unit)
    run = pyhepmc.GenRunInfo()
    run.tools = [("Sherpa", "2.2.15", "a made-up run")]
    with pyhepmc.open(path, "w", format=fmt) as f:
        for i in range(n):
            f.write(_foreign_event(pyhepmc, run, unit, i + 1, 1.0 if weights is None else weights[i], xs))
    return path


@pytest.mark.parametrize("unit, fmt", [("GEV", None), ("MEV", None), ("GEV", "hepmc2")])
def test_a_file_written_by_another_tool(tmp_path, unit, fmt):
    path = _write_foreign(tmp_path / "other.hepmc", unit=unit, fmt=fmt)
    reader = read_hepmc(path, 2)
    back = ak.concatenate(list(reader))
    assert reader.format == (fmt or "hepmc3")
    if fmt is None:
        assert reader.generator == "Sherpa 2.2.15" and reader.cross_section == (1234.5, 6.7)
    prt = back["prt"]
    # HepMC numbers the particles as their vertices were added: beam 1, q, beam 2, qbar, ...
    assert ak.to_list(prt.id[0]) == [90, 2212, 2, 2212, -2, 23, 13, -13, 22]
    assert ak.to_list(prt.status[0]) == [-11, -4, -21, -4, -21, -22, 1, 1, 1]
    assert ak.to_list(prt.mother1[0]) == [0, 0, 1, 0, 3, 2, 5, 5, 5]
    assert ak.to_list(prt.mother2[0]) == [0, 0, 0, 0, 0, 4, 0, 0, 0]
    np.testing.assert_allclose(ak.to_list(prt.p.px[0]), [0, 0, 0, 0, 0, 0, 30, -29, -1], atol=1e-12)  # GeV
    np.testing.assert_allclose(prt.m[0, 5], 89.44)
    np.testing.assert_allclose([prt.p.pz[0, 0], prt.p.e[0, 0]], [10.0, 60.85])  # sum of the final state
    rec = S.FlatRecord.from_batch(back)
    _, z_mu = S.z_decay_products(rec)
    assert np.array_equal(np.flatnonzero(z_mu), [6, 7, 15, 16, 24, 25])


def test_the_shared_fixtures_hepmc_files_read():
    """scikit-hep-testdata (0.6.9) and the pyhepmc wheel ship no HepMC file, so
    ../shared/fixtures has none; any that is added there is read here."""
    found = sorted(p for p in FIXTURES.glob("*") if ".hepmc" in p.name.lower()) if FIXTURES.is_dir() else []
    if not found:
        pytest.skip("no HepMC file in ../shared/fixtures (scikit-hep-testdata ships none)")
    for path in found:
        reader = read_hepmc(path, 100)
        for b in reader:
            assert ak.all(b["prt"].id[:, 0] == 90) and ak.all(b["prt"].mother1 >= 0)
        assert reader.events == reader.total > 0


# --------------------------------------------------------------------------------------------
# bad input


def _bad_files(tmp_path, hepmc_file):
    text = hepmc_file.read_bytes()
    cut = text.index(b"\nE ", len(text) // 2)
    n_cut = text[:cut + 100].count(b"\nE ")  # the last one incomplete
    lines = text.split(b"\n")
    k = [i for i, line in enumerate(lines) if line.startswith(b"P ")][300]
    lines[k] = lines[k][:20]
    files = {
        "missing": (tmp_path / "absent.hepmc", "no such file"),
        "not HepMC": (tmp_path / "notes.hepmc", "not a HepMC file (no HepMC3 or HepMC2 ASCII header)"),
        "truncated": (tmp_path / "cut.hepmc", f"truncated (no end-of-listing line after {n_cut} event(s))"),
        "no events": (tmp_path / "empty.hepmc", "no events"),
        "malformed event": (tmp_path / "broken.hepmc", "event 2 of 400 is malformed"),
    }
    files["not HepMC"][0].write_text("E 1 2 3\nthis is not an event file\n")
    files["truncated"][0].write_bytes(text[:cut + 100])
    files["no events"][0].write_bytes(b"HepMC::Version 3.02.05\nHepMC::Asciiv3-START_EVENT_LISTING\n"
                                      b"HepMC::Asciiv3-END_EVENT_LISTING\n\n")
    files["malformed event"][0].write_bytes(b"\n".join(lines))
    return files


def test_bad_files_are_one_line_input_errors(tmp_path, hepmc_file):
    for name, (path, message) in _bad_files(tmp_path, hepmc_file).items():
        with pytest.raises(InputError) as err:
            sum(len(b) for b in read_hepmc(path, 100))
        assert str(err.value) == f"{path}: {message}", name


def test_weighted_files_are_refused_and_constant_weights_taken(tmp_path, card):
    _write_foreign(tmp_path / "w.hepmc", weights=[1.0, 2.0, 1.0])
    with pytest.raises(InputError, match=r"w.hepmc: event 2 has weight 2, the first 1; .*unweighted"):
        produce(card, input=tmp_path / "w.hepmc", output=tmp_path / "w.root", quiet=True)
    # three Z -> mu mu events without jets: none passes, said in one line
    _write_foreign(tmp_path / "c.hepmc", weights=[0.5, 0.5, 0.5])
    with pytest.raises(InputError, match=r"c.hepmc: none of its 3 events passed the selection"):
        produce(card, input=tmp_path / "c.hepmc", output=tmp_path / "c.root", quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.hepmc", "w.hepmc"]


def test_cli_bad_input_exit_2_one_line_no_output(tmp_path, hepmc_file):
    out = tmp_path / "out.root"
    for name, (path, message) in _bad_files(tmp_path, hepmc_file).items():
        r = _hepgen("simulate", CARD, "--input", path, "-o", out, "-q")
        assert r.returncode == 2, (name, r.stderr)
        assert r.stderr.strip() == f"hepgen: error: {path}: {message}", name
        assert not out.exists() and not (tmp_path / "out.card.yaml").exists()
    r = _hepgen("simulate", CARD, "--input", hepmc_file, "--save-hepmc", tmp_path / "x.hepmc", "-o", out)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--save-hepmc" in r.stderr


# --------------------------------------------------------------------------------------------
# hepgen simulate --input / --save-hepmc


def test_simulate_input_end_to_end(tmp_path, hepmc_file, batch, card):
    out = tmp_path / "from_hepmc.root"
    r = _hepgen("simulate", CARD, "--input", hepmc_file, "-n", 100000, "-o", out)
    assert r.returncode == 0, r.stderr
    assert "events from 400 read" in r.stderr and "sigma_gen = 1500 +- 20 pb" in r.stderr
    sample = read_events(out)
    expected, flags = S.select(batch, card.process)
    _same_selection(expected, sample, float32=True)  # the whole file, every event that passes (ROOT: float32)
    info = sample.info
    assert info["input_file"] == str(hepmc_file) and info["input_format"] == "hepmc3"
    assert info["generator"].startswith("Pythia 8.317; hepgen") and info["events_tried"] == "400"
    assert float(info["cross_section_pb"]) == pytest.approx(1500.0 * flags.keep.mean())
    assert "worker_seeds" not in info and "pythia8mc_version" not in info
    assert f"input: {hepmc_file}" in (tmp_path / "from_hepmc.card.yaml").read_text()

    # a file without a cross section: the output names none, one note says so
    plain = _write_foreign(tmp_path / "noxs.hepmc", xs=None)
    write_hepmc(plain, batch[:200], {}, force=True)
    out2 = tmp_path / "noxs.root"
    r = _hepgen("simulate", CARD, "--set", f"simulate.input={plain}", "-n", 5, "-o", out2)
    assert r.returncode == 0, r.stderr
    assert f"{plain} carries no cross section (GenCrossSection): {out2} names none" in r.stderr
    assert len(read_events(out2)) == 5 and "cross_section_pb" not in read_events(out2).info


@pytest.mark.parametrize("jobs", [1, 2])
def test_save_hepmc_then_input_gives_the_same_events(tmp_path, card, jobs):
    saved = tmp_path / "pythia.hepmc.gz"
    first = produce(card, events=40, seed=5, jobs=jobs, output=tmp_path / "a.root", save_hepmc=saved, quiet=True)
    again = produce(card, events=10_000, input=saved, output=tmp_path / "b.root", quiet=True)
    a, b = read_events(first), read_events(again)
    _same_selection(a, b)
    assert b.info["events_tried"] == a.info["events_tried"]  # every generated event, none after the last kept
    assert b.info["generator"].startswith("Pythia 8.317.2; hepgen")
    numbers = [int(line.split()[1]) for line in gzip.open(saved, "rt") if line.startswith("E ")]
    assert len(set(numbers)) == len(numbers) == int(a.info["events_tried"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.card.yaml", "a.root", "b.card.yaml", "b.root", saved.name]


def test_writer_leaves_nothing_on_error(tmp_path, batch):
    path = tmp_path / "x.hepmc"
    with pytest.raises(RuntimeError):
        with HepmcWriter(path) as w:
            w.write(batch[:5])
            raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []
    write_hepmc(tmp_path / "y.hepmc", batch[:2])
    with pytest.raises(HepgenError, match="exists; use --force"):
        write_hepmc(tmp_path / "y.hepmc", batch[:2])
