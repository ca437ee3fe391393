"""Reconstruction: a particle-level batch -> reco muons and reco jets (:func:`reconstruct`).

A simple particle-flow picture with Delphes's CMS parametrisation (docs/detector.md). Every
visible stable particle (``status > 0``; neutrinos and neutralinos are invisible) is measured
once, by the first sub-detector that sees it:

* **muons** (|PDG id| 13): a track (tracking efficiency, momentum smearing); a tracked muon
  that passes the muon identification efficiency (at its measured pT) is a muon candidate. A
  muon without a track is lost (muons leave almost nothing in the calorimeters);
* **electrons** (11) and **charged hadrons** (211, 321, 2212, and the charged hyperons 3112,
  3222, 3312, 3334 when a generator leaves them stable): a track with their own efficiency and
  resolution; without a track (efficiency, or |eta| beyond the tracker) the calorimeter
  measures them instead, electrons in the ECAL, hadrons in the HCAL;
* **photons** (22, and a pi0 left stable): the ECAL;
* **neutral hadrons** (every other visible particle: n, K0_L, ...): the HCAL.

Each measurement that survives (efficiency, pT' > 0, calorimeter thresholds) is one
particle-flow candidate, with the particle's direction: a track's 3-momentum is scaled by
pT'/pT at the particle's mass, a calorimeter's four-momentum by E'/E. **Reco muons** are the
muon candidates that pass the isolation (:class:`~hepgen.detector.config.Isolation`, Delphes's
MuonIsolation over all candidates). **Reco jets** are FastJet anti-kT jets (``process.jet_r``,
pT > ``process.jet_pt_min``, no eta cut) of all candidates except the reco muons (a muon
candidate that fails the isolation stays in the jets), through :func:`hepgen.jets.cluster`,
the call that clusters the particle-level jets too.

Random numbers: three per final-state particle, drawn in one fixed order from the caller's
``numpy.random.Generator`` (uniforms for tracking and muon identification, one standard normal
for the track or calorimeter measurement), so the output is a function of (record, config,
generator state), and two configs with the same generator state use the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import awkward as ak
import numpy as np

from ..cards import ProcessConfig
from ..kinematics import MUON_MASS, delta_r
from ..jets import cluster, jagged
from . import response as R
from .config import DetectorConfig

INVISIBLE_IDS = (12, 14, 16, 1000022, 1000023, 1000025, 1000035, 1000045)  # Delphes's 0-energy list
MUON_ID = 13
ELECTRON_ID = 11
CHARGED_HADRON_IDS = (211, 321, 2212, 3112, 3222, 3312, 3334)
ECAL_IDS = (22, 111)  # photons and a stable pi0

TRACK, ECAL, HCAL = 0, 1, 2  # RecoBatch.candidate_kind


@dataclass
class RecoBatch:
    """The reconstructed events of a batch of N events: flat arrays and per-event counts.

    Muons [M] (``muon_counts`` [N]): the isolated reco muons, ``muon_pt`` (GeV), ``muon_eta``,
    ``muon_phi``, ``muon_charge`` (int32, +1 for mu+), ordered by decreasing pT in each event.
    Jets [J] (``jet_counts`` [N]): ``jet_pt`` (GeV), ``jet_eta``, ``jet_phi``, ``jet_mass``
    (GeV), ordered by decreasing pT in each event. Flat arrays are grouped by event in event
    order (event i's objects are ``counts[:i].sum()`` onwards).

    The particle-flow candidates [C], for studies and tests: ``candidate_source`` (the global
    index in the input record of the particle each came from, ascending), ``candidate_kind``
    (:data:`TRACK`, :data:`ECAL`, :data:`HCAL`), ``candidate_p`` [C, 4] = (E, px, py, pz) GeV,
    and ``candidate_muon`` (bool [C]: it is a reco muon, so not a jet input).
    """

    n_events: int
    muon_counts: np.ndarray
    muon_pt: np.ndarray
    muon_eta: np.ndarray
    muon_phi: np.ndarray
    muon_charge: np.ndarray
    jet_counts: np.ndarray
    jet_pt: np.ndarray
    jet_eta: np.ndarray
    jet_phi: np.ndarray
    jet_mass: np.ndarray
    candidate_source: np.ndarray
    candidate_kind: np.ndarray
    candidate_p: np.ndarray
    candidate_muon: np.ndarray

    def collections(self) -> dict[str, ak.Array]:
        """``{"Muon": ..., "Jet": ...}``: ``[N, var]`` ``Momentum4D`` collections as
        :func:`hepgen.events.make_collection` builds them (muons with the muon mass and
        ``charge``), ready for :meth:`hepgen.events.EventSample.build`."""
        muons = jagged({"pt": self.muon_pt, "eta": self.muon_eta, "phi": self.muon_phi,
                        "mass": np.full(len(self.muon_pt), MUON_MASS), "charge": self.muon_charge},
                       self.muon_counts, record="Momentum4D")
        jets = jagged({"pt": self.jet_pt, "eta": self.jet_eta, "phi": self.jet_phi, "mass": self.jet_mass},
                      self.jet_counts, record="Momentum4D")
        return {"Muon": muons, "Jet": jets}


def reconstruct(rec, cfg: DetectorConfig, process: ProcessConfig, rng: np.random.Generator) -> RecoBatch:
    """Reconstruct a batch: the detector's muons and jets of every event.

    ``rec``: a :class:`hepgen.simulate.selection.FlatRecord` (any object with its fields:
    ``n_events``, and per particle [P] ``event`` (non-decreasing), ``pid``, ``status``, ``px``,
    ``py``, ``pz``, ``e`` in GeV); the final-state particles are ``status > 0``. ``cfg``: the
    detector (:func:`hepgen.detector.detector_config` of a card); ``process``: the card's
    process section (``jet_r``, ``jet_pt_min``); ``rng``: the generator all random numbers
    come from (3 draws per final-state particle), advanced by this call. Events keep their
    order and index; an event with nothing reconstructed has zero counts.

    Vectorised over the whole batch (numpy, one FastJet call). The same record, config and
    generator state give identical output.
    """
    final = np.flatnonzero(rec.status > 0)
    n = len(final)
    u_track, u_id, z = rng.random(n), rng.random(n), rng.standard_normal(n)
    pid = rec.pid[final]
    abspid = np.abs(pid)
    px, py, pz, e = rec.px[final], rec.py[final], rec.pz[final], rec.e[final]
    pt = np.hypot(px, py)
    with np.errstate(over="ignore"):  # pT = 0: |eta| = inf, outside every region
        abs_eta = np.abs(np.arcsinh(pz / np.where(pt > 0, pt, 1e-300)))

    is_mu = abspid == MUON_ID
    is_el = abspid == ELECTRON_ID
    is_ch = np.isin(abspid, CHARGED_HADRON_IDS)
    neutral = ~(is_mu | is_el | is_ch | np.isin(abspid, INVISIBLE_IDS))
    photon_like = neutral & np.isin(abspid, ECAL_IDS)

    scale = np.zeros(n)  # measured / true momentum of each particle's candidate (0: none)
    kind = np.full(n, -1, dtype=np.int8)
    tracked = np.zeros(n, dtype=bool)
    for mask, tracker in ((is_mu, cfg.muons), (is_el, cfg.electrons), (is_ch, cfg.charged_hadrons)):
        t = mask & R.passes(tracker.tracking, pt, abs_eta, u_track)
        pt_meas = R.smear_pt(tracker.resolution, pt[t], abs_eta[t], z[t])
        scale[t] = np.where(pt_meas > 0, pt_meas / pt[t], 0.0)
        kind[t] = TRACK
        tracked |= t
    to_ecal = photon_like | (is_el & ~tracked)
    to_hcal = (neutral & ~photon_like) | (is_ch & ~tracked)
    for mask, calo, code in ((to_ecal, cfg.ecal, ECAL), (to_hcal, cfg.hcal, HCAL)):
        e_meas = R.smear_energy(calo, e[mask], abs_eta[mask], z[mask])
        seen = R.calo_seen(calo, e_meas, abs_eta[mask])
        scale[mask] = np.where(seen, e_meas / np.where(e[mask] > 0, e[mask], 1.0), 0.0)
        kind[mask] = code

    cand = np.flatnonzero(scale > 0)  # positions in `final`, so grouped by event
    s = scale[cand]
    c_px, c_py, c_pz = s * px[cand], s * py[cand], s * pz[cand]
    p2 = px[cand] ** 2 + py[cand] ** 2 + pz[cand] ** 2
    c_kind = kind[cand]
    # a track keeps the particle's mass (exact: E' = E when s = 1); a calorimeter scales E
    c_e = np.where(c_kind == TRACK, np.sqrt(np.maximum(e[cand] ** 2 + (s * s - 1.0) * p2, 0.0)), s * e[cand])
    c_event = rec.event[final[cand]]
    c_pt = s * pt[cand]

    # muon candidates: tracked muons that pass the identification at their measured pT
    c_mu = is_mu[cand] & (c_kind == TRACK) & R.passes(cfg.muons.identification, c_pt, abs_eta[cand], u_id[cand])
    phi = np.arctan2(c_py, c_px)
    eta = np.sign(pz[cand]) * abs_eta[cand]
    iso = _isolated(np.flatnonzero(c_mu), c_event, c_pt, eta, phi, rec.n_events, cfg.muons.isolation)
    reco_mu = np.zeros(len(cand), dtype=bool)
    reco_mu[iso] = True

    jin = ~reco_mu
    (jpt, jeta, jphi, jm), jcounts = cluster(c_event[jin], c_px[jin], c_py[jin], c_pz[jin], c_e[jin],
                                             rec.n_events, process.jet_r, process.jet_pt_min)
    jevent = np.repeat(np.arange(rec.n_events), jcounts)
    jorder = np.lexsort((-jpt, jevent))

    mevent = c_event[iso]
    morder = np.lexsort((-c_pt[iso], mevent))
    m = iso[morder]
    return RecoBatch(
        n_events=rec.n_events,
        muon_counts=np.bincount(mevent, minlength=rec.n_events).astype(np.int64),
        muon_pt=c_pt[m], muon_eta=eta[m], muon_phi=phi[m],
        muon_charge=np.where(pid[cand[m]] > 0, -1, 1).astype(np.int32),  # PDG 13 is mu-
        jet_counts=jcounts, jet_pt=jpt[jorder], jet_eta=jeta[jorder], jet_phi=jphi[jorder], jet_mass=jm[jorder],
        candidate_source=final[cand], candidate_kind=c_kind,
        candidate_p=np.stack([c_e, c_px, c_py, c_pz], axis=1), candidate_muon=reco_mu,
    )


def _isolated(muons: np.ndarray, event: np.ndarray, pt: np.ndarray, eta: np.ndarray, phi: np.ndarray,
              n_events: int, iso) -> np.ndarray:
    """The candidates ``muons`` (indices into the candidate arrays [C], grouped by event) that
    pass the isolation: sum of pT of the other candidates with pT > iso.pt_min within
    Delta R <= iso.dr_max, over the muon's pT, at most iso.pt_ratio_max.

    Vectorised over (muon, candidate of the same event) pairs: about 2 x (candidates per
    event) pairs per event for a Z -> mu mu sample.
    """
    if len(muons) == 0:
        return muons
    counts = np.bincount(event, minlength=n_events)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    n_pairs = counts[event[muons]]
    which = np.repeat(np.arange(len(muons)), n_pairs)
    first = np.cumsum(n_pairs) - n_pairs
    other = start[event[muons]][which] + (np.arange(int(n_pairs.sum())) - first[which])
    mu = muons[which]
    near = (other != mu) & (pt[other] > iso.pt_min)
    near &= delta_r(eta[mu], phi[mu], eta[other], phi[other]) <= iso.dr_max
    sums = np.bincount(which, weights=np.where(near, pt[other], 0.0), minlength=len(muons))
    return muons[sums <= iso.pt_ratio_max * pt[muons]]
