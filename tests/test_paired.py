"""The paired particle/reco simulation (hepgen/simulate/paired.py, cards/zjets_detector.yaml):
real Pythia events through the Z+jets selection and the detector stage, both levels per event."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from hepgen.cards import load_card
from hepgen.io.root import read_events
from hepgen.selection import min_pair_dr
from hepgen.simulate import produce

ROOT = Path(__file__).resolve().parents[1]
CARD = ROOT / "cards" / "zjets_detector.yaml"


def small(card_path=CARD, **simulate):
    card = load_card(card_path)
    return dataclasses.replace(card, simulate=dataclasses.replace(card.simulate, batch=500, **simulate))


@pytest.fixture(scope="module")
def paired(tmp_path_factory):
    out = tmp_path_factory.mktemp("paired") / "paired.root"
    produce(small(), events=400, seed=5, output=out, jobs=1, quiet=True)
    return out


def _passes(muons, jets, cfg, need_muon_pair: bool) -> np.ndarray:
    """The Z+jets selection written out here: n_jets in n_jets, jet pairs separated, and at reco
    level two leading muons of opposite charge."""
    n = ak.to_numpy(ak.num(jets, axis=1))
    width = max(int(n.max()), 1)
    pad = lambda f: ak.to_numpy(ak.fill_none(ak.pad_none(jets[f], width, axis=1, clip=True), 0.0))  # noqa: E731
    ok = np.isin(n, cfg.n_jets) & (min_pair_dr(pad("eta"), pad("phi"), np.arange(width)[None] < n[:, None]) > cfg.jet_dr_min)
    if need_muon_pair:
        q = ak.to_numpy(ak.fill_none(ak.pad_none(muons.charge, 2, axis=1, clip=True), 0))
        ok &= (ak.to_numpy(ak.num(muons, axis=1)) >= 2) & (q[:, 0] * q[:, 1] < 0)
    return ok


def test_both_levels_and_their_flags(paired):
    """Every event holds both levels; the flags are the selections of their levels; every
    kept event passes one; jets at both levels pass the jet cuts."""
    s = read_events(paired)
    cfg = load_card(CARD).process
    assert set(s.collections) == {"GenMuon", "GenJet", "Muon", "Jet"} and len(s) == 400
    gen, reco = s.scalars["pass_gen"], s.scalars["pass_reco"]
    np.testing.assert_array_equal(gen, _passes(s["GenMuon"], s["GenJet"], cfg, False))
    np.testing.assert_array_equal(reco, _passes(s["Muon"], s["Jet"], cfg, True))
    assert (gen | reco).all() and (gen & reco).any() and (gen & ~reco).any()
    assert (ak.to_numpy(ak.num(s["GenMuon"], axis=1)) == 2).all()
    for name in ("GenJet", "Jet"):
        pt, eta = ak.flatten(s[name].pt), ak.flatten(s[name].eta)
        assert ak.all(pt > cfg.jet_pt_min) and ak.all(abs(eta) < cfg.jet_eta_max)
    # the detector measures the muons: reco m_mumu within a few GeV of the particle level's
    both = s.select(gen & reco)
    m = lambda mu: ak.to_numpy((mu[:, 0] + mu[:, 1]).mass)  # noqa: E731
    dm = m(both["Muon"]) - m(both["GenMuon"])
    assert np.median(np.abs(dm)) < 2.0  # GeV; the muon resolution gives about 1 GeV (docs/detector.md)


def test_particle_level_is_the_zjets_simulation_of_the_same_seed(paired, tmp_path):
    """The events passing the particle-level selection are, in order, the Z+jets reference
    simulation of the same card settings and seed: the detector stage changes nothing there."""
    s = read_events(paired)
    g = s.select(s.scalars["pass_gen"])
    zcard = small(ROOT / "cards" / "zjets.yaml")
    out = tmp_path / "z.root"
    produce(zcard, events=len(g), seed=5, output=out, jobs=1, quiet=True)
    z = read_events(out)
    for mine, theirs in (("GenMuon", "Muon"), ("GenJet", "Jet")):
        for f in ("pt", "eta", "phi"):
            np.testing.assert_array_equal(ak.to_numpy(ak.flatten(g[mine][f])), ak.to_numpy(ak.flatten(z[theirs][f])))


def test_reproducible_by_seed(paired, tmp_path):
    again = tmp_path / "again.root"
    produce(small(), events=400, seed=5, output=again, jobs=1, quiet=True)
    a, b = read_events(paired), read_events(again)
    for name in ("Muon", "Jet"):
        np.testing.assert_array_equal(ak.to_numpy(ak.flatten(a[name].pt)), ak.to_numpy(ak.flatten(b[name].pt)))
    np.testing.assert_array_equal(a.scalars["pass_reco"], b.scalars["pass_reco"])
