"""Event selection on Pythia's record: the Z muons from the history, anti-kT jets, the cuts.

Input is one ``Pythia.nextBatch`` result (awkward ``[N]`` events with a particle list
``prt[N, var]``: id, status, mother1, p = (px, py, pz, e) in GeV, ...). Everything here works
on the flattened particle arrays with numpy (one pass per ancestry step), and on FastJet's
multi-event awkward interface for the clustering, so a batch costs a few C++ loops, not a
Python loop over events.

Definitions (DESIGN.md "Reference physics"):

* **Z decay products** are final-state leptons and photons whose ``mother1`` chain, through
  leptons and photons only, reaches the Z/gamma* (PDG id 23). That includes the photons the
  muons radiate (QED final-state radiation).
* **Z muons** are the final-state muons whose chain through muons of the same id reaches the
  Z: exactly one mu+ and one mu- per event, the decay muons after their QED radiation
  ("bare" muons). They are never "the two hardest muons": muons from hadron decays are not
  in this chain.
* **Jet inputs** are all other visible final-state particles: not neutrinos, not a Z decay
  product (so a hard FSR photon of a muon is not a jet), inside |eta| < jet_input_eta_max
  (default 6: one unit beyond the jet acceptance |eta| < 5 plus R, the beam-remnant region no
  LHC detector sees; it halves FastJet's time, whose rapidity tiling spans all inputs, and
  changed no jet multiplicity and no leading-jet pT by more than 0.1% in 10k events compared
  with all particles; ``.inf`` in the card takes every particle).
* **Jets**: anti-kT with radius R, pT > pt_min, |eta| < eta_max, pT-ordered, mass from the
  jet four-momentum. An event whose selected jets have a pair closer than ``dr_min`` is
  dropped (not repaired by removing a jet): anti-kT jets are separated by about R already,
  so this removes a tiny fraction (counted as ``dropped_dr``), and it keeps ``Delta R_jj >
  dr_min`` a strict property of the sample, as in the reference analysis.
* Events are kept when their jet multiplicity is one of ``n_jets`` (exclusive).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import awkward as ak
import numpy as np

from ..cards import ProcessConfig
from ..events import EventSample
from ..jets import cluster, field_reader, jagged
from ..kinematics import MUON_MASS, delta_r, epxpypz_to_ptetaphim
from ..selection import jet_selected, separated

Z_ID = 23
MUON_ID = 13
_EW_CHAIN_IDS = (11, 13, 15, 22)  # leptons and photons: the QED shower of the Z decay
_MAX_STEPS = 10_000  # the ancestry walk always ends (mothers come earlier); a safety net


@dataclass
class FlatRecord:
    """A batch's particle record, flattened: per-particle numpy arrays of length P.

    ``event`` is the event index [P]; ``mother`` the *global* index of mother1 [P]
    (index 0 of every event is Pythia's system entry, id 90, which ends every chain);
    ``offsets`` [N+1] delimit the events. Momenta and the generated mass ``m`` in GeV.
    """

    n_events: int
    offsets: np.ndarray
    event: np.ndarray
    pid: np.ndarray
    status: np.ndarray
    mother: np.ndarray
    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
    e: np.ndarray
    m: np.ndarray

    @classmethod
    def from_batch(cls, batch: ak.Array) -> "FlatRecord":
        prt = batch["prt"]
        counts = ak.to_numpy(ak.num(prt, axis=1)).astype(np.int64)
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        event = np.repeat(np.arange(len(counts)), counts)
        get = field_reader(prt)
        return cls(
            n_events=len(counts), offsets=offsets, event=event,
            pid=get("id"), status=get("status"), mother=get("mother1") + offsets[:-1][event],
            px=get("p", "px"), py=get("p", "py"), pz=get("p", "pz"), e=get("p", "e"), m=get("m"),
        )


def _walk_up(mother: np.ndarray, start: np.ndarray, through: np.ndarray) -> np.ndarray:
    """From particles ``start`` (global indices), follow mother1 while ``through[mother]``;
    return the first mother (global index) that is not ``through``."""
    cur = mother[start]
    active = np.flatnonzero(through[cur])
    for _ in range(_MAX_STEPS):
        if active.size == 0:
            return cur
        cur[active] = mother[cur[active]]
        active = active[through[cur[active]]]
    raise RuntimeError("Pythia record: a mother1 chain does not end")  # cannot happen


def z_decay_products(rec: FlatRecord) -> tuple[np.ndarray, np.ndarray]:
    """Masks [P]: (final-state Z decay products, the two Z muons).

    See the module docstring for the definitions.
    """
    final = rec.status > 0
    abspid = np.abs(rec.pid)
    ew = np.isin(abspid, _EW_CHAIN_IDS)
    cand = np.flatnonzero(final & ew)
    top = _walk_up(rec.mother, cand, ew)
    products = np.zeros(len(rec.pid), dtype=bool)
    products[cand[rec.pid[top] == Z_ID]] = True

    # walk through copies of the same muon (QED radiation makes new copies), stop elsewhere
    mu = cand[abspid[cand] == MUON_ID]
    z_muons = np.zeros(len(rec.pid), dtype=bool)
    z_muons[mu[rec.pid[origin(rec, mu)] == Z_ID]] = True
    return products, z_muons


def origin(rec: FlatRecord, start: np.ndarray) -> np.ndarray:
    """Global indices [len(start)]: the particle each of ``start`` comes from, following mother1
    through copies of itself (same PDG id: a radiating or recoiling copy) to the first mother
    with another id (a muon's Z, a b quark's top, a W's top)."""
    cur = rec.mother[start]
    active = np.flatnonzero(rec.pid[cur] == rec.pid[start])
    for _ in range(_MAX_STEPS):
        if active.size == 0:
            return cur
        cur[active] = rec.mother[cur[active]]
        active = active[rec.pid[cur[active]] == rec.pid[start[active]]]
    raise RuntimeError("Pythia record: a mother1 chain does not end")  # cannot happen


@dataclass
class BatchFlags:
    """Per tried event of a batch, [N] each: what the selection found.

    ``n_jets``: selected jets (after pT and eta cuts), -1 without a Z mu+ mu- pair;
    ``too_close``: a selected jet pair with Delta R <= dr_min; ``keep``: the event is kept.
    """

    n_jets: np.ndarray
    too_close: np.ndarray
    keep: np.ndarray

    def stats(self, stop: int | None = None) -> "SelectionStats":
        """The counts of the first ``stop`` events (all by default)."""
        return SelectionStats.from_flags(self, stop)


@dataclass
class SelectionStats:
    """Counts over tried events (a batch prefix or a whole run; add with ``+=``)."""

    tried: int = 0
    accepted: int = 0
    no_z_pair: int = 0  # not exactly one Z mu+ and one Z mu- (never seen; kept as a check)
    dropped_dr: int = 0  # wanted multiplicity, but a selected jet pair closer than dr_min
    by_njets: dict[int, int] = field(default_factory=dict)  # tried events by jet multiplicity

    @classmethod
    def from_flags(cls, flags: BatchFlags, stop: int | None = None) -> "SelectionStats":
        """The counts of the first ``stop`` events (all by default)."""
        nj, close, keep = flags.n_jets[:stop], flags.too_close[:stop], flags.keep[:stop]
        values, counts = np.unique(nj[nj >= 0], return_counts=True)
        return cls(
            tried=len(nj), accepted=int(keep.sum()), no_z_pair=int((nj < 0).sum()),
            dropped_dr=int(close.sum()),
            by_njets={int(v): int(c) for v, c in zip(values, counts)},
        )

    def __iadd__(self, other: "SelectionStats") -> "SelectionStats":
        self.tried += other.tried
        self.accepted += other.accepted
        self.no_z_pair += other.no_z_pair
        self.dropped_dr += other.dropped_dr
        for k, v in other.by_njets.items():
            self.by_njets[k] = self.by_njets.get(k, 0) + v
        return self


def cluster_jets(rec: FlatRecord, inputs: np.ndarray, cfg: ProcessConfig):
    """Anti-kT jets of the particles ``inputs`` (global indices, ascending), with pT > jet_pt_min.

    Returns flat jet arrays (pt, eta, phi, mass), float64 [J], and counts [N], before the eta
    cut: :func:`hepgen.jets.cluster` (the FastJet call the detector's jets share) of the inputs.
    """
    return cluster(rec.event[inputs], rec.px[inputs], rec.py[inputs], rec.pz[inputs], rec.e[inputs],
                   rec.n_events, cfg.jet_r, cfg.jet_pt_min)


def jet_inputs(rec: FlatRecord, products: np.ndarray, cfg: ProcessConfig) -> np.ndarray:
    """Global indices of the jet inputs: final-state, visible (not a neutrino), not a Z decay
    product (``products``, bool [P]), inside |eta| < jet_input_eta_max."""
    final = np.flatnonzero(rec.status > 0)
    abspid = np.abs(rec.pid[final])
    invisible = (abspid == 12) | (abspid == 14) | (abspid == 16) | products[final]
    inputs = final[~invisible]
    # |eta| < eta_max written as pz^2 < pT^2 sinh^2(eta_max): no division, and .inf works
    px, py, pz = rec.px[inputs], rec.py[inputs], rec.pz[inputs]
    inside = pz * pz < (px * px + py * py) * np.sinh(cfg.jet_input_eta_max) ** 2
    return inputs[inside]


def select(batch: ak.Array, cfg: ProcessConfig) -> tuple[EventSample, BatchFlags]:
    """Select events of one ``nextBatch`` result.

    Returns the kept events (collections "Muon": the two Z muons, fields pt, eta, phi, mass
    (fixed to the muon mass), charge; "Jet": fields pt, eta, phi, mass; both pT-ordered;
    unit weights), in the order of the batch, and the per-event flags.
    """
    rec = FlatRecord.from_batch(batch)
    n = rec.n_events
    products, z_mu = z_decay_products(rec)

    # --- muons: exactly one mu+ and one mu- from the Z
    mu_idx = np.flatnonzero(z_mu)
    n_mu = np.bincount(rec.event[mu_idx], minlength=n)
    n_mu_plus = np.bincount(rec.event[mu_idx], weights=rec.pid[mu_idx] < 0, minlength=n)
    good_z = (n_mu == 2) & (n_mu_plus == 1)

    # --- jets
    (jpt, jeta, jphi, jm), jcounts = cluster_jets(rec, jet_inputs(rec, products, cfg), cfg)
    jevent = np.repeat(np.arange(n), jcounts)
    # pT > pt_min strictly, also after the float32 rounding of the output files
    good = jet_selected(jpt, jeta, cfg.jet_pt_min, cfg.jet_eta_max)
    good &= jpt.astype(np.float32) > cfg.jet_pt_min
    jpt, jeta, jphi, jm, jevent = jpt[good], jeta[good], jphi[good], jm[good], jevent[good]
    jcounts = np.bincount(jevent, minlength=n)
    order = np.lexsort((-jpt, jevent))
    jpt, jeta, jphi, jm = jpt[order], jeta[order], jphi[order], jm[order]

    # --- Delta R between selected jets, all pairs, in events of a wanted multiplicity
    wanted = good_z & np.isin(jcounts, np.asarray(cfg.n_jets, dtype=np.int64))
    too_close = np.zeros(n, dtype=bool)
    pairs = wanted & (jcounts >= 2)
    if cfg.jet_dr_min > 0 and pairs.any():
        jin = pairs[np.repeat(np.arange(n), jcounts)]
        jets_ak = jagged({"eta": jeta[jin], "phi": jphi[jin]}, jcounts[pairs])
        a, b = ak.unzip(ak.combinations(jets_ak, 2, axis=1))
        dr = delta_r(a["eta"], a["phi"], b["eta"], b["phi"])
        too_close[pairs] = ak.to_numpy(ak.any(~separated(dr, cfg.jet_dr_min), axis=1))
    keep = wanted & ~too_close
    n_kept = int(keep.sum())
    flags = BatchFlags(n_jets=np.where(good_z, jcounts, -1), too_close=too_close, keep=keep)

    # --- build the collections of the kept events
    jkeep = keep[np.repeat(np.arange(n), jcounts)]
    jets = jagged(
        {"pt": jpt[jkeep], "eta": jeta[jkeep], "phi": jphi[jkeep], "mass": jm[jkeep]},
        jcounts[keep], record="Momentum4D",
    )

    mu_idx = mu_idx[keep[rec.event[mu_idx]]]
    mpt, meta, mphi, _ = epxpypz_to_ptetaphim(rec.e[mu_idx], rec.px[mu_idx], rec.py[mu_idx], rec.pz[mu_idx])
    mevent = rec.event[mu_idx]
    morder = np.lexsort((-mpt, mevent))
    charge = np.where(rec.pid[mu_idx] > 0, -1, 1).astype(np.int32)  # PDG 13 is mu-
    muons = jagged(
        {"pt": mpt[morder], "eta": meta[morder], "phi": mphi[morder],
         "mass": np.full(len(mu_idx), MUON_MASS), "charge": charge[morder]},
        np.full(n_kept, 2), record="Momentum4D",
    )
    return EventSample.build({"Muon": muons, "Jet": jets}), flags
