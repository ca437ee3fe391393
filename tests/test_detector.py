"""The detector stage: its response reproduces the formulas it came from, it is reproducible by
seed, its jets are clustered from smeared particles, and its card section is strict.

Resolutions and efficiencies are measured on single-particle events made here (every region,
every pT bin, two pT or energy ranges per resolution region, 20 000 particles each), through :func:`hepgen.detector.reconstruct` itself, and
compared with Delphes's CMS-card formulas written out below from the card's text
(``cards/delphes_card_CMS.tcl`` of delphes/delphes), independently of hepgen's tables.

Tolerances: a fitted width within 5 % of the formula, an efficiency within 5 % (relative), as
the issue asks. With 20 000 particles the statistical error of a Gaussian width is
1/sqrt(2 N) = 0.5 % (at most 0.7 % for the skewed log-normal calorimeter response, whose
sigma/E reaches 0.3 here, from its kurtosis), and of an efficiency sqrt(eps (1 - eps) / N)
<= 0.4 % absolute, 0.6 % relative at eps = 0.6: 5 % is more than 7 standard deviations, so no
seed makes the tests fail. A wrong region edge, bin, term or formula shape fails them; a
coefficient off by less than the tolerance (0.98 for 0.99) would not.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hepgen.cards import Card, card_from_dict, card_hash, dump_card, load_card
from hepgen.detector import detector_config, reconstruct
from hepgen.detector.reco import ECAL, HCAL, INVISIBLE_IDS, TRACK
from hepgen.errors import CardError
from hepgen.simulate import pythia as P
from hepgen.simulate import selection as S

N = 20_000  # particles per region / bin
WIDTH_TOL = 0.05
EFF_TOL = 0.05
PROCESS = Card().process
DEFAULT = detector_config(Card())


# --------------------------------------------------------------------------------------------
# Delphes's CMS card, written out from its text (module name above each)


def _a(eta):
    return np.abs(eta)


def muon_sigma_rel(pt, eta):  # MuonMomentumSmearing
    a = _a(eta)
    return ((a <= 0.5) * (pt > 0.1) * np.sqrt(0.01**2 + pt**2 * 1.0e-4**2)
            + ((a > 0.5) & (a <= 1.5)) * (pt > 0.1) * np.sqrt(0.015**2 + pt**2 * 1.5e-4**2)
            + ((a > 1.5) & (a <= 2.5)) * (pt > 0.1) * np.sqrt(0.025**2 + pt**2 * 3.5e-4**2))


def hadron_sigma_rel(pt, eta):  # ChargedHadronMomentumSmearing
    a = _a(eta)
    return ((a <= 0.5) * (pt > 0.1) * np.sqrt(0.01**2 + pt**2 * 1.5e-4**2)
            + ((a > 0.5) & (a <= 1.5)) * (pt > 0.1) * np.sqrt(0.015**2 + pt**2 * 2.5e-4**2)
            + ((a > 1.5) & (a <= 2.5)) * (pt > 0.1) * np.sqrt(0.025**2 + pt**2 * 5.5e-4**2))


def electron_sigma_rel(pt, eta):  # ElectronMomentumSmearing
    a = _a(eta)
    return ((a <= 0.5) * (pt > 0.1) * np.sqrt(0.03**2 + pt**2 * 1.3e-3**2)
            + ((a > 0.5) & (a <= 1.5)) * (pt > 0.1) * np.sqrt(0.05**2 + pt**2 * 1.7e-3**2)
            + ((a > 1.5) & (a <= 2.5)) * (pt > 0.1) * np.sqrt(0.15**2 + pt**2 * 3.1e-3**2))


def ecal_sigma(e, eta):  # ECal
    a = _a(eta)
    return ((a <= 1.5) * (1 + 0.64 * eta**2) * np.sqrt(e**2 * 0.008**2 + e * 0.11**2 + 0.40**2)
            + ((a > 1.5) & (a <= 2.5)) * (2.16 + 5.6 * (a - 2) ** 2) * np.sqrt(e**2 * 0.008**2 + e * 0.11**2 + 0.40**2)
            + ((a > 2.5) & (a <= 5.0)) * np.sqrt(e**2 * 0.107**2 + e * 2.08**2))


def hcal_sigma(e, eta):  # HCal
    a = _a(eta)
    return ((a <= 3.0) * np.sqrt(e**2 * 0.050**2 + e * 1.50**2)
            + ((a > 3.0) & (a <= 5.0)) * np.sqrt(e**2 * 0.130**2 + e * 2.70**2))


def hadron_tracking(pt, eta):  # ChargedHadronTrackingEfficiency
    a = _a(eta)
    return ((a <= 1.5) * ((pt > 0.1) & (pt <= 1.0)) * 0.70 + (a <= 1.5) * (pt > 1.0) * 0.95
            + ((a > 1.5) & (a <= 2.5)) * ((pt > 0.1) & (pt <= 1.0)) * 0.60
            + ((a > 1.5) & (a <= 2.5)) * (pt > 1.0) * 0.85)


def electron_tracking(pt, eta):  # ElectronTrackingEfficiency
    a = _a(eta)
    barrel, endcap = a <= 1.5, (a > 1.5) & (a <= 2.5)
    low, mid, high = (pt > 0.1) & (pt <= 1.0), (pt > 1.0) & (pt <= 1.0e2), pt > 1.0e2
    return (barrel * (low * 0.73 + mid * 0.95 + high * 0.99) + endcap * (low * 0.50 + mid * 0.83 + high * 0.90))


def muon_reco(pt, eta):  # MuonTrackingEfficiency x MuonEfficiency (pT below 1 TeV)
    a = _a(eta)
    tracking = ((a <= 1.5) * ((pt > 0.1) & (pt <= 1.0)) * 0.75 + (a <= 1.5) * (pt > 1.0) * 0.99
                + ((a > 1.5) & (a <= 2.5)) * ((pt > 0.1) & (pt <= 1.0)) * 0.70
                + ((a > 1.5) & (a <= 2.5)) * (pt > 1.0) * 0.98)
    identification = (a <= 2.4) * (pt > 10.0) * 0.95
    return tracking * identification


# --------------------------------------------------------------------------------------------
# single-particle events


def single_particles(pid: int, pt, eta, rng, mass: float = 0.0) -> S.FlatRecord:
    """One final-state particle per event (``pid``; arrays ``pt``, ``eta`` [N]; phi uniform)."""
    pt, eta = np.asarray(pt, dtype=np.float64), np.asarray(eta, dtype=np.float64)
    n = len(pt)
    phi = rng.uniform(-np.pi, np.pi, n)
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    e = np.sqrt(px**2 + py**2 + pz**2 + mass**2)
    return S.FlatRecord(n_events=n, offsets=np.arange(n + 1), event=np.arange(n),
                        pid=np.full(n, pid), status=np.ones(n, dtype=np.int64), mother=np.zeros(n, dtype=np.int64),
                        px=px, py=py, pz=pz, e=e, m=np.full(n, mass))


def _inside(lo, hi, rng, n=N):
    """n values uniform in (lo, hi), 1 % of the interval away from both ends, signs random
    (for eta)."""
    margin = 0.01 * (hi - lo)
    return rng.uniform(lo + margin, hi - margin, n)


def _eta(lo, hi, rng):
    return _inside(lo, hi, rng) * rng.choice([-1.0, 1.0], N)


def _fitted_width(pulls: np.ndarray) -> float:
    """Maximum-likelihood width of a zero-mean Gaussian fitted to the pulls."""
    return float(np.sqrt(np.mean(pulls**2)))


# pid, mass, the formula, the |eta| regions, and two pT ranges (GeV): one where the constant
# term a dominates sigma/pT, one where b pT does, so that both terms are measured
TRACKERS = {
    "muon": (13, 0.10566, muon_sigma_rel, (0.5, 1.5, 2.5), ((12.0, 20.0), (150.0, 500.0))),
    "charged_hadron": (211, 0.13957, hadron_sigma_rel, (0.5, 1.5, 2.5), ((12.0, 20.0), (150.0, 500.0))),
    "electron": (11, 0.000511, electron_sigma_rel, (0.5, 1.5, 2.5), ((12.0, 20.0), (60.0, 100.0))),
}


def _regions(regions):
    return list(zip((0.0, *regions[:-1]), regions))


@pytest.mark.parametrize("name", sorted(TRACKERS))
def test_track_resolution_reproduces_the_formula_in_every_eta_region(name):
    pid, mass, formula, regions, pt_ranges = TRACKERS[name]
    rng, reco_rng = np.random.default_rng(1), np.random.default_rng(2)
    for (lo, hi), (pt_lo, pt_hi) in ((r, p) for r in _regions(regions) for p in pt_ranges):
        eta, pt = _eta(lo, hi, rng), rng.uniform(pt_lo, pt_hi, N)  # sigma/pT <= 0.34: pT' > 0
        rec = single_particles(pid, pt, eta, rng, mass)
        reco = reconstruct(rec, DEFAULT, PROCESS, reco_rng)
        tracks = reco.candidate_kind == TRACK
        src = reco.candidate_source[tracks]
        pt_meas = np.hypot(reco.candidate_p[tracks, 1], reco.candidate_p[tracks, 2])
        pulls = (pt_meas / pt[src] - 1.0) / formula(pt[src], eta[src])
        assert len(pulls) > 0.8 * N
        width = _fitted_width(pulls)
        where = f"{name} {lo} < |eta| <= {hi}, pT {pt_lo}-{pt_hi} GeV"
        assert abs(width - 1.0) < WIDTH_TOL, f"{where}: width {width:.4f} of the formula's"
        assert abs(np.mean(pulls)) < 0.05, where  # unbiased
        if name == "muon":  # the reco muons carry the track's pT
            assert np.allclose(np.sort(reco.muon_pt), np.sort(pt_meas[reco.candidate_muon[tracks]]))


# pid, mass, formula, |eta| regions, kind, and per region two energy ranges (GeV) that measure
# every term (the noise c at low E, the stochastic b, the constant a at high E), far enough
# above the thresholds (E' >= 2 sigma(E')) that they cut nothing
CALOS = {
    "ecal": (22, 0.0, ecal_sigma, (1.5, 2.5, 5.0), ECAL,
             (((8.0, 20.0), (200.0, 500.0)), ((20.0, 40.0), (200.0, 500.0)), ((200.0, 400.0), (2000.0, 4000.0)))),
    "hcal": (130, 0.497611, hcal_sigma, (3.0, 5.0), HCAL,
             (((60.0, 150.0), (1500.0, 3000.0)), ((150.0, 300.0), (2000.0, 4000.0)))),
}


@pytest.mark.parametrize("name", sorted(CALOS))
def test_calorimeter_resolution_reproduces_the_formula_in_every_eta_region(name):
    pid, mass, formula, regions, kind, e_ranges = CALOS[name]
    rng, reco_rng = np.random.default_rng(3), np.random.default_rng(4)
    for (lo, hi), ranges in zip(_regions(regions), e_ranges):
        for e_lo, e_hi in ranges:
            eta, e = _eta(lo, hi, rng), rng.uniform(e_lo, e_hi, N)
            rec = single_particles(pid, np.sqrt(e**2 - mass**2) / np.cosh(eta), eta, rng, mass)
            reco = reconstruct(rec, DEFAULT, PROCESS, reco_rng)
            assert np.all(reco.candidate_kind == kind)
            assert len(reco.candidate_source) > 0.999 * N
            src = reco.candidate_source
            pulls = (reco.candidate_p[:, 0] - rec.e[src]) / formula(rec.e[src], eta[src])
            width = _fitted_width(pulls)
            where = f"{name} {lo} < |eta| <= {hi}, E {e_lo}-{e_hi} GeV"
            assert abs(width - 1.0) < WIDTH_TOL, f"{where}: width {width:.4f} of the formula's"
            assert abs(np.mean(pulls)) < 0.05, where  # log-normal with the true energy as its mean


def test_calorimeter_thresholds_hold_for_every_candidate():
    """Soft photons: every candidate passes E' >= 0.5 GeV and E' >= 2 sigma(E') (ECal EnergyMin,
    EnergySignificanceMin), and some are cut."""
    rng = np.random.default_rng(5)
    eta = _eta(0.0, 5.0, rng)
    rec = single_particles(22, rng.uniform(0.1, 10.0, N) / np.cosh(eta), eta, rng)
    reco = reconstruct(rec, DEFAULT, PROCESS, np.random.default_rng(6))
    e_meas = reco.candidate_p[:, 0]
    assert np.all(e_meas >= 0.5)
    assert np.all(e_meas >= 2.0 * ecal_sigma(e_meas, eta[reco.candidate_source]))
    assert 0.05 < len(e_meas) / N < 0.95


def _bins(edges):
    """pT intervals inside each efficiency bin (the last bin: up to 200 GeV)."""
    highs = (*edges[1:], 200.0)
    return list(zip(edges, highs))


EFFICIENCIES = {  # pid, mass, formula, |eta| edges, pT edges; measured as: tracks or reco muons
    "charged_hadron": (211, 0.13957, hadron_tracking, (1.5, 2.5), (0.1, 1.0)),
    "electron": (11, 0.000511, electron_tracking, (1.5, 2.5), (0.1, 1.0, 100.0)),
    "muon": (13, 0.10566, muon_reco, (1.5, 2.4, 2.5), (0.1, 1.0, 10.0)),
}


@pytest.mark.parametrize("name", sorted(EFFICIENCIES))
def test_efficiencies_reproduce_the_tables_in_every_region_and_pt_bin(name):
    pid, mass, formula, eta_regions, pt_edges = EFFICIENCIES[name]
    rng = np.random.default_rng(7)
    for lo, hi in _regions(eta_regions):
        for pt_lo, pt_hi in _bins(pt_edges):
            eta, pt = _eta(lo, hi, rng), _inside(pt_lo, pt_hi, rng)
            rec = single_particles(pid, pt, eta, rng, mass)
            reco = reconstruct(rec, DEFAULT, PROCESS, np.random.default_rng(8))
            if name == "muon":
                found = reco.muon_counts.astype(bool)
                assert np.all(reco.muon_charge == -1)  # PDG 13 is a mu-
            else:
                found = np.zeros(N, dtype=bool)
                found[reco.candidate_source[reco.candidate_kind == TRACK]] = True
            expected = formula(pt, eta)
            where = f"{name} {lo} < |eta| <= {hi}, {pt_lo} < pT <= {pt_hi}"
            if np.all(expected == 0):  # a muon just below 10 GeV may be measured above: rarely
                assert found.mean() < 0.01, where
                continue
            measured = found.mean()
            assert abs(measured / expected.mean() - 1.0) < EFF_TOL, f"{where}: {measured:.4f} vs {expected.mean():.4f}"
    # outside the tracker (|eta| > 2.5) nothing is tracked; a charged hadron is still seen by the HCAL
    rec = single_particles(211, np.full(1000, 50.0), rng.uniform(2.6, 4.5, 1000), rng, 0.13957)
    reco = reconstruct(rec, DEFAULT, PROCESS, np.random.default_rng(9))
    assert np.all(reco.candidate_kind == HCAL) and len(reco.candidate_kind) > 990


# --------------------------------------------------------------------------------------------
# isolation


def _record(events: list[list[tuple[int, float, float, float]]]) -> S.FlatRecord:
    """A record from per-event lists of (pid, pt, eta, phi), massless final-state particles."""
    counts = np.array([len(ev) for ev in events])
    rows = np.array([p for ev in events for p in ev], dtype=np.float64)
    pt, eta, phi = rows[:, 1], rows[:, 2], rows[:, 3]
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return S.FlatRecord(n_events=len(events), offsets=offsets, event=np.repeat(np.arange(len(events)), counts),
                        pid=rows[:, 0].astype(np.int64), status=np.ones(len(rows), dtype=np.int64),
                        mother=np.zeros(len(rows), dtype=np.int64), px=px, py=py, pz=pz,
                        e=np.sqrt(px**2 + py**2 + pz**2), m=np.zeros(len(rows)))


def test_isolation_counts_the_candidates_in_the_cone_of_the_same_event_only():
    perfect = detector_config(card_from_dict({"detector": _perfect()}))
    rec = _record([
        [(13, 40.0, 0.0, 0.0), (22, 15.0, 0.3, 0.0)],  # 15/40 > 0.25 inside the cone: not isolated
        [(-13, 40.0, 0.0, 0.0), (22, 15.0, 0.0, 0.6)],  # the photon is outside Delta R 0.5: isolated
        [(13, 40.0, 0.0, 0.0), (22, 8.0, 0.0, 0.4)],  # 8/40 = 0.2: isolated
        [(13, 40.0, 0.0, 0.1), (22, 30.0, 0.0, 3.0)],  # this photon sits where event 4's muon is
        [(-13, 30.0, 0.0, 3.0)],  # alone in its event: isolated
        [(-13, 30.0, 0.0, 3.0), (13, 20.0, 0.0, -3.0)],  # two muons 0.28 apart (across phi = pi)
    ])
    iso = dataclasses.replace(perfect, muons=dataclasses.replace(perfect.muons, isolation=DEFAULT.muons.isolation))
    reco = reconstruct(rec, iso, PROCESS, np.random.default_rng(0))
    assert reco.muon_counts.tolist() == [0, 1, 1, 1, 1, 0]
    assert reco.muon_charge.tolist() == [1, -1, -1, 1]  # PDG -13 is a mu+
    # a muon that fails the isolation is a jet input: event 0's jet is the muon and the photon
    assert reco.jet_counts[0] == 1 and reco.jet_pt[0] == pytest.approx(55.0)
    assert reco.jet_counts[5] == 1 and reco.jet_pt[-1] == pytest.approx(np.hypot(30 * np.cos(3) + 20 * np.cos(-3), 30 * np.sin(3) + 20 * np.sin(-3)))


def test_empty_events_and_particles_along_the_beam():
    """A batch without particles keeps its events (zero counts); a particle with pT = 0 (|eta|
    infinite) is outside every detector, without a warning (warnings are errors here)."""
    nothing = _record([[(22, 1.0, 0.0, 0.0)]])
    nothing = dataclasses.replace(nothing, n_events=3, offsets=np.array([0, 0, 0, 0]),
                                  **{k: getattr(nothing, k)[:0] for k in ("event", "pid", "status", "mother",
                                                                          "px", "py", "pz", "e", "m")})
    reco = reconstruct(nothing, DEFAULT, PROCESS, np.random.default_rng(0))
    assert reco.muon_counts.tolist() == reco.jet_counts.tolist() == [0, 0, 0]
    assert [len(c) for c in reco.collections().values()] == [3, 3]
    for pid in (22, 211, 2112):
        beam = single_particles(pid, np.array([0.0, 50.0]), np.array([0.0, 1.0]), np.random.default_rng(1))
        beam.pz[0] = beam.e[0] = 3000.0
        reco = reconstruct(beam, DEFAULT, PROCESS, np.random.default_rng(2))
        assert reco.candidate_source.tolist() == [1]


# --------------------------------------------------------------------------------------------
# real Z+jets events


@pytest.fixture(scope="module")
def zjets():
    """300 raw Pythia Z+jets events (the card's settings), flattened."""
    pythia = P.make_pythia(P.settings(load_card("cards/zjets.yaml")), 17)
    return S.FlatRecord.from_batch(pythia.nextBatch(300))


def _arrays(reco):
    return {k: v for k, v in vars(reco).items() if isinstance(v, np.ndarray)}


def test_same_generator_state_same_events_other_state_other_events(zjets):
    a = _arrays(reconstruct(zjets, DEFAULT, PROCESS, np.random.default_rng(42)))
    b = _arrays(reconstruct(zjets, DEFAULT, PROCESS, np.random.default_rng(42)))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    rng = np.random.default_rng(42)
    reconstruct(zjets, DEFAULT, PROCESS, rng)
    c = _arrays(reconstruct(zjets, DEFAULT, PROCESS, rng))  # the generator moved on
    assert not np.array_equal(a["candidate_p"], c["candidate_p"])
    assert not np.array_equal(a["jet_pt"], c["jet_pt"])


def test_reco_objects_of_zjets_events(zjets):
    reco = reconstruct(zjets, DEFAULT, PROCESS, np.random.default_rng(1))
    n = zjets.n_events
    # the Z muons inside the muon acceptance (|eta| < 2.4, pT > 10 GeV) are found with the tracking
    # x identification efficiency (0.99 x 0.95 or 0.98 x 0.95) times the isolation's (~0.95)
    _, z_mu = S.z_decay_products(zjets)
    i = np.flatnonzero(z_mu)
    pt = np.hypot(zjets.px[i], zjets.py[i])
    accepted = np.sum((np.abs(np.arcsinh(zjets.pz[i] / pt)) < 2.4) & (pt > 10.0))
    assert 0.8 < reco.muon_counts.sum() / accepted < 0.95
    assert np.all(reco.jet_pt > PROCESS.jet_pt_min)
    assert np.all(np.abs(reco.muon_eta) <= 2.4) and np.all(reco.muon_pt > 10.0)
    for counts, pt in ((reco.muon_counts, reco.muon_pt), (reco.jet_counts, reco.jet_pt)):
        ev = np.repeat(np.arange(n), counts)
        assert np.all(np.diff(pt)[np.diff(ev) == 0] <= 0)  # pT-ordered inside each event
    coll = reco.collections()
    assert len(coll["Muon"]) == len(coll["Jet"]) == n
    assert coll["Jet"].pt.tolist()[:5] == [list(x) for x in np.split(reco.jet_pt, np.cumsum(reco.jet_counts))[:5]]
    # invisible particles and untracked muons never make a candidate
    src_pid = np.abs(zjets.pid[reco.candidate_source])
    assert not np.isin(src_pid, INVISIBLE_IDS).any()
    assert np.all(reco.candidate_kind[src_pid == 13] == TRACK)


def _perfect() -> dict:
    """A detector section with no smearing, full efficiency everywhere and no thresholds."""
    everywhere = {"eta_regions": [100.0]}
    tracker = {"tracking": {**everywhere, "pt_edges": [0.0], "efficiency": [[1.0]]},
               "resolution": {**everywhere, "a": [0.0], "b": [0.0]}}
    calo = {**everywhere, "a": [0.0], "b": [0.0], "c": [0.0], "shape": [[1.0, 0.0, 0.0]],
            "energy_min": 0.0, "significance_min": 0.0}
    return {"muons": {**tracker, "identification": {**everywhere, "pt_edges": [0.0], "efficiency": [[1.0]]},
                      "isolation": {"pt_ratio_max": 1.0e9}},
            "charged_hadrons": tracker, "electrons": tracker, "ecal": calo, "hcal": calo}


def test_reco_jets_are_clustered_from_the_particles(zjets):
    """With no smearing, full efficiency and every muon isolated, the reco jets are exactly the
    particle-level jets (hepgen.simulate.selection.cluster_jets) of the visible non-muon particles,
    and the reco muons are the muons: the jets are built from (smeared) particles."""
    perfect = detector_config(card_from_dict({"detector": _perfect()}))
    reco = reconstruct(zjets, perfect, PROCESS, np.random.default_rng(3))
    final = np.flatnonzero(zjets.status > 0)
    abspid = np.abs(zjets.pid[final])
    inputs = final[~np.isin(abspid, INVISIBLE_IDS) & (abspid != 13)]
    (pt, eta, phi, m), counts = S.cluster_jets(zjets, inputs, PROCESS)
    order = np.lexsort((-pt, np.repeat(np.arange(zjets.n_events), counts)))
    assert np.array_equal(reco.jet_counts, counts)
    for got, want in ((reco.jet_pt, pt), (reco.jet_eta, eta), (reco.jet_phi, phi), (reco.jet_mass, m)):
        assert np.array_equal(got, want[order])
    mu = final[abspid == 13]
    assert reco.muon_counts.sum() == len(mu)
    assert np.array_equal(np.sort(reco.muon_pt), np.sort(np.hypot(zjets.px[mu], zjets.py[mu])))
    # the default detector's jets differ from them: the smearing reaches the jets
    smeared = reconstruct(zjets, DEFAULT, PROCESS, np.random.default_rng(3))
    assert not np.array_equal(smeared.jet_pt[:20], reco.jet_pt[:20])


# --------------------------------------------------------------------------------------------
# the card section


def test_no_detector_section_leaves_the_card_dump_and_hash_unchanged():
    card = load_card("cards/zjets.yaml")
    assert "detector" not in dump_card(card)
    assert detector_config(card) == DEFAULT
    changed = card_from_dict({"detector": {"muons": {"isolation": {"pt_ratio_max": 0.1}}}})
    assert card_hash(changed) != card_hash(Card())
    again = card_from_dict(__import__("yaml").safe_load(dump_card(changed)))
    assert detector_config(again).muons.isolation.pt_ratio_max == 0.1
    assert detector_config(again).muons.resolution == DEFAULT.muons.resolution  # the rest: defaults


@pytest.mark.parametrize("section, message", [
    ({"muon": {}}, r"unknown key 'detector\.muon'; allowed here: muons, charged_hadrons"),
    ({"muons": {"isolation": {"dr": 0.4}}}, r"unknown key 'detector\.muons\.isolation\.dr'"),
    ({"muons": 3}, r"detector\.muons = 3 is not a mapping"),
    ({"hcal": {"a": "x"}}, r"detector\.hcal\.a\[0\] = 'x' is not a number"),
    ({"hcal": {"energy_min": -1}}, r"detector\.hcal\.energy_min = -1\.0 is out of range"),
    ({"muons": {"resolution": {"a": [0.01, 0.02]}}}, r"detector\.muons\.resolution\.a has 2 values for 3 \|eta\| regions"),
    ({"ecal": {"eta_regions": [2.0, 1.0, 5.0]}}, r"detector\.ecal\.eta_regions = \[2\.0, 1\.0, 5\.0\] must be strictly increasing"),
    ({"ecal": {"eta_regions": [0.0, 2.5, 5.0]}}, r"detector\.ecal\.eta_regions = .* must be finite and positive"),
    ({"hcal": {"b": [-1.0, 2.7]}}, r"detector\.hcal\.b = \[-1\.0, 2\.7\] must be finite and non-negative"),
    ({"electrons": {"tracking": {"efficiency": [[0.7, 1.2, 1.0], [0.5, 0.8, 0.9]]}}},
     r"detector\.electrons\.tracking\.efficiency\[0\] = .* must be in \[0, 1\]"),
    ({"charged_hadrons": {"tracking": {"pt_edges": [0.1]}}},
     r"detector\.charged_hadrons\.tracking\.efficiency\[0\] has 2 values for 1 pT bins"),
    ({"muons": {"identification": {"pt_edges": [10.0, 5.0], "efficiency": [[1, 1], [1, 1]]}}},
     r"detector\.muons\.identification\.pt_edges = \[10\.0, 5\.0\] must be strictly increasing"),
    ({"ecal": {"shape": [[1.0, 0.64], [2.16, 5.6, 2.0], [1.0, 0.0, 0.0]]}},
     r"detector\.ecal\.shape\[0\] = \[1\.0, 0\.64\] must be three numbers"),
    ({"muons": {"resolution": {"eta_regions": [0.5, 1.5, 2.0]}}},
     r"detector\.muons\.resolution\.eta_regions end at \|eta\| = 2, inside the tracking acceptance"),
])
def test_bad_detector_keys_are_one_line_card_errors(section, message):
    with pytest.raises(CardError, match=message) as info:
        detector_config(card_from_dict({"name": "z", "detector": section}))
    assert str(info.value).startswith("card z: ")
    assert "\n" not in str(info.value)
