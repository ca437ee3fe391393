"""Paired particle/reco Z+jets events: the Z+jets simulation plus the detector stage, one file
entry per event with both levels (cards/zjets_detector.yaml, docs/unfolding.md).

Per event (NanoAOD names):

* particle level, ``GenMuon`` (the two Z muons from the record history, with charge) and
  ``GenJet`` (anti-kT jets of the visible particles, pT > jet_pt_min, |eta| < jet_eta_max):
  :func:`hepgen.simulate.selection.select` with every multiplicity allowed;
* reco level, ``Muon`` (the detector's isolated muons) and ``Jet`` (anti-kT jets of the smeared
  particle-flow candidates with the same cuts): :func:`hepgen.detector.reconstruct`;
* with ``simulate.soft_jet_pt_min`` > 0, ``SoftJet``: the reco jets with soft_jet_pt_min < pT <=
  jet_pt_min (|eta| < jet_eta_max, pT-ordered), the same clustering (anti-kT does not depend on the
  threshold, so ``Jet`` is unchanged). A particle-level jet lost at reco level is mostly one measured
  below the threshold (docs/unfolding.md); these jets are not in the selection;
* ``pass_gen``: the Z+jets selection at particle level (n_jets in process.n_jets, every jet pair
  separated by more than jet_dr_min); ``pass_reco``: the same at reco level, with two leading
  muons of opposite charge.

An event is kept when it passes either selection, so efficiency (``pass_gen`` only), fakes
(``pass_reco`` only) and migrations are all in the file; ``simulate.events`` counts the kept
events. The detector's random numbers are seeded from the card's seed and the batch's own
particle record (a hash of its momenta), so the file is reproducible by seed and a batch's
smearing does not depend on which worker made it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from functools import partial

import awkward as ak
import numpy as np

from ..cards import Card, ProcessConfig, card_to_dict
from ..detector import DetectorConfig, detector_config, reconstruct
from ..events import EventSample
from ..selection import jet_selected, min_pair_dr, separated
from . import pythia as _pythia
from .selection import FlatRecord, select
from .simulation import PassStats, Simulation

ALL_MULTIPLICITIES = tuple(range(0, 64))  # the particle level of every event with a Z muon pair


@dataclass
class PairedStats(PassStats):
    """Counts over tried events: kept (either level), and passing each level and both."""

    pass_gen: int = 0
    pass_reco: int = 0
    pass_both: int = 0

    def __iadd__(self, other: "PairedStats") -> "PairedStats":
        super().__iadd__(other)
        self.pass_gen += other.pass_gen
        self.pass_reco += other.pass_reco
        self.pass_both += other.pass_both
        return self


@dataclass
class PairedFlags:
    """Per tried event of a batch: ``keep``, ``gen`` and ``reco`` (bool ``[N]``)."""

    keep: np.ndarray
    gen: np.ndarray
    reco: np.ndarray

    def stats(self, stop: int | None = None) -> PairedStats:
        g, r, k = self.gen[:stop], self.reco[:stop], self.keep[:stop]
        return PairedStats(tried=len(k), accepted=int(k.sum()), pass_gen=int(g.sum()), pass_reco=int(r.sum()),
                           pass_both=int((g & r).sum()))


def jet_level(jets: ak.Array, cfg: ProcessConfig) -> tuple[ak.Array, np.ndarray]:
    """One level's jets after the jet cuts (pT > jet_pt_min also in float32, |eta| < jet_eta_max)
    and whether each event passes the jet selection (multiplicity in n_jets, pairs separated)."""
    pt, eta = jets.pt, jets.eta
    good = jet_selected(pt, eta, cfg.jet_pt_min, cfg.jet_eta_max) & (ak.values_astype(pt, np.float32) > cfg.jet_pt_min)
    jets = jets[good]
    n = ak.to_numpy(ak.num(jets, axis=1))
    max_n = int(n.max()) if len(n) else 0
    padded = lambda f: ak.to_numpy(ak.fill_none(ak.pad_none(jets[f], max(max_n, 1), axis=1, clip=True), 0.0))
    present = np.arange(max(max_n, 1))[None, :] < n[:, None]
    dr_ok = separated(min_pair_dr(padded("eta"), padded("phi"), present), cfg.jet_dr_min)
    return jets, np.isin(n, cfg.n_jets) & dr_ok


def batch_seed(seed: int, rec: FlatRecord) -> int:
    """The detector's seed for one batch: the card's seed and a hash of the batch's momenta."""
    digest = hashlib.blake2b(np.ascontiguousarray(rec.pz).tobytes(), digest_size=16,
                             key=f"hepgen-detector/{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def jets_below_threshold(jets: ak.Array, cfg: ProcessConfig, pt_min: float) -> ak.Array:
    """The jets with pt_min < pT <= jet_pt_min (also in float32) and |eta| < jet_eta_max, in their order."""
    pt32 = ak.values_astype(jets.pt, np.float32)
    return jets[(jets.pt > pt_min) & ~(pt32 > cfg.jet_pt_min) & (abs(jets.eta) < cfg.jet_eta_max)]


def paired_select(batch, cfg: ProcessConfig, detector: DetectorConfig, seed: int,
                  soft_pt_min: float = 0.0) -> tuple[EventSample, PairedFlags]:
    """One ``nextBatch`` result -> (the kept paired events, per-event flags); see the module docstring."""
    gen, gflags = select(batch, replace(cfg, n_jets=ALL_MULTIPLICITIES, jet_dr_min=0.0))
    zpair = gflags.keep  # events with the two Z muons (all, in practice)
    rec = FlatRecord.from_batch(batch)
    clustered = replace(cfg, jet_pt_min=min(soft_pt_min, cfg.jet_pt_min)) if soft_pt_min > 0 else cfg
    reco = EventSample.build(reconstruct(rec, detector, clustered, np.random.default_rng(batch_seed(seed, rec))).collections())
    reco = reco.select(zpair)
    gen_jets, pass_gen = jet_level(gen["Jet"], cfg)
    reco_jets, reco_jets_ok = jet_level(reco["Jet"], cfg)
    soft = {"SoftJet": jets_below_threshold(reco["Jet"], cfg, soft_pt_min)} if soft_pt_min > 0 else {}
    mu = reco["Muon"]
    q = ak.to_numpy(ak.fill_none(ak.pad_none(mu.charge, 2, axis=1, clip=True), 0))
    pass_reco = reco_jets_ok & (ak.to_numpy(ak.num(mu, axis=1)) >= 2) & (q[:, 0] * q[:, 1] < 0)
    keep_z = pass_gen | pass_reco
    sample = EventSample.build(
        {"GenMuon": gen["Muon"], "GenJet": gen_jets, "Muon": mu, "Jet": reco_jets, **soft},
        scalars={"pass_gen": pass_gen, "pass_reco": pass_reco},
    ).select(keep_z)
    n = len(zpair)
    g, r = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    g[zpair], r[zpair] = pass_gen, pass_reco
    return sample, PairedFlags(keep=g | r, gen=g, reco=r)


def _provenance(card: Card, sample: EventSample, stats: PairedStats) -> dict[str, str]:
    return {
        "generator": "Pythia 8 (pythia8mc) + FastJet anti-kT + hepgen detector (docs/detector.md)",
        "process": f"pp -> Z/gamma* -> mu+ mu- + jets ({card.simulate.hard_process}), particle and reco level, "
                   f"sqrt(s) = {card.process.sqrt_s:g} GeV",
        **_pythia.versions(),
        "detector": json.dumps(card_to_dict(card).get("detector", {}), sort_keys=True),
        "pass_counts": json.dumps({"tried": stats.tried, "kept": stats.accepted, "pass_gen": stats.pass_gen,
                                   "pass_reco": stats.pass_reco, "pass_both": stats.pass_both}),
    }


def _summary(card: Card, sample: EventSample, stats: PairedStats) -> str:
    return (f"pass gen {stats.pass_gen / max(stats.tried, 1):.1%}, reco {stats.pass_reco / max(stats.tried, 1):.1%}, "
            f"both {stats.pass_both / max(stats.tried, 1):.1%} of tried events")


def paired_simulation(card: Card) -> Simulation:
    """The card's paired particle/reco Z+jets simulation (Z+jets Pythia settings, its detector)."""
    return Simulation(
        settings=tuple(_pythia.settings(card)),
        select=partial(paired_select, detector=detector_config(card), seed=card.seed,
                       soft_pt_min=card.simulate.soft_jet_pt_min),
        provenance=partial(_provenance, card),
        summary=partial(_summary, card),
        give_up_hint="check the card's process cuts and detector section",
    )
