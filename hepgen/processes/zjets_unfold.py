"""Unfolding Z -> mu mu + jets by generation: p(particle-level event | reco-level event).

``process.name: zjets_unfold`` (cards/zjets_unfold.yaml). The training data is a paired
sample (``GenMuon`` / ``GenJet`` at particle level, ``Muon`` / ``Jet`` at reco level, the flags
``pass_gen`` / ``pass_reco``; docs/unfolding.md), of which the events that pass both
selections are learned: x the particle-level event, c the reco event
(:mod:`hepgen.coords.unfold`). Any family with a condition learns it (cfm by default).

The pipeline takes a reco event where a forward generator takes noise alone::

    input [N, S + m + 1]  S = 4 (2 + J) + 2 "source" columns: the reco momenta (mu1, mu2, jets,
                       pT-ordered, (pt, eta, phi, mass), absent jets 0), the reco jet
                       multiplicity and the charge of the reco leading muon; then the family's
                       m noise columns; then one uniform column, the draw of the particle-level
                       jet multiplicity from p(n_gen | reco)
    output             as Z+jets: momenta [N, 2 + J, 4], n_jets [N], charge [N, 2]
                       (particle level)

so ``hepgen generate RUN --source reco.root`` unfolds each reco event once, and ``hepgen
unfold RUN reco.root --samples K`` K times (:mod:`hepgen.unfold.posterior`). Events outside the
reco selection (and the fakes that pass it without a particle-level partner) are not handled
by the network: see docs/unfolding.md "What the network does not do".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import awkward as ak
import numpy as np
import torch
from torch import nn

from ..cards import Card
from ..modelcards import draws
from ..coords.unfold import GEN_NAMES, RECO_NAMES, UnfoldCoords, level, require_soft_jets, soft_jets
from ..coords.zjets import ZJetsInverse
from ..errors import InputError
from ..events import EventSample
from ..export.manifest import GraphSpec, Port
from ..io.root import read_events
from ..simulate import training_file
from ..simulate.reference import independent_reference
from .base import AfterTraining, Categories, FrozenSampler, Log, Selection, settings_of
from .zjets import PROCESS as ZJETS
from .zjets import assemble

PASS_FLAGS = ("pass_gen", "pass_reco")
CALIBRATION_SAMPLES, CALIBRATION_EVENTS = 20, 3000  # the after-training calibration: K samples of the first events


def paired_events(sample: EventSample, source: str) -> np.ndarray:
    """bool ``[N]``: the events of a paired sample that pass both selections; a one-line
    InputError for a sample without both levels or without the pass flags."""
    for names in (GEN_NAMES, RECO_NAMES):
        level(sample, names, source)
    missing = [f for f in PASS_FLAGS if f not in sample.scalars]
    if missing:
        raise InputError(f"{source}: no {', '.join(missing)} flag: not a paired particle/reco sample "
                         "(make one with 'hepgen simulate cards/zjets_detector.yaml')")
    return sample.scalars["pass_gen"] & sample.scalars["pass_reco"]


def reco_rows(sample: EventSample, n_values, source: str, soft: int = 0) -> torch.Tensor:
    """The reco events of ``sample`` (collections Muon, Jet; SoftJet for a run with soft jets) as
    pipeline source rows ``[N, S]`` float64; a one-line InputError when an event is outside the reco
    selection the run learned (2 muons, a jet multiplicity in ``n_values``)."""
    reco = level(sample, RECO_NAMES, source)
    n_mu, n_jets = reco.multiplicity("Muon"), reco.n_jets
    bad = (n_mu < 2) | ~np.isin(n_jets, n_values)
    if bad.any():
        raise InputError(f"{source}: {int(bad.sum())} of {len(sample)} events are outside the reco selection "
                         f"(2 muons, n_jets in {list(n_values)}); unfold the events with pass_reco")
    max_jets = max(n_values)
    p = np.nan_to_num(np.concatenate([reco.padded("Muon", 2), reco.padded("Jet", max_jets)], axis=1), nan=0.0)
    mu = reco["Muon"]
    q1 = (ak.to_numpy(ak.firsts(mu.charge)).astype(np.float64) if "charge" in mu.fields
          else np.ones(len(reco)))
    rows = torch.from_numpy(np.concatenate([p.reshape(len(p), -1), n_jets[:, None].astype(np.float64),
                                            q1[:, None]], axis=1))
    return torch.cat([rows, soft_jets(sample, soft, source).reshape(len(rows), -1)], dim=1) if soft else rows


class UnfoldPipeline(nn.Module):
    """``[N, S + m]`` float32 (reco event, then the family's noise) -> Z+jets outputs at particle
    level (see the module docstring)."""

    def __init__(self, sampler: FrozenSampler, coords: UnfoldCoords):
        super().__init__()
        self.sampler, self.coords = sampler.module, coords
        self.relative = coords.relative()  # a Python bool: the exported graph cannot read the buffer
        self.inverse = ZJetsInverse(coords.gen, torch.float32)
        self.max_jets = coords.max_jets
        self.soft_jets = coords.soft_jets
        self.azimuth_slot = coords.gen.azimuth.reference  # the frame's global azimuth: that reco object's
        self.event_dim = 4 * (2 + self.max_jets) + 2  # the reco event's columns, then the soft jets'
        self.source_dim = self.event_dim + 4 * self.soft_jets
        self.model_noise_dim = sampler.noise_dim
        self.noise_dim = self.source_dim + sampler.noise_dim + 1
        self.noise_layout = ["source"] * self.source_dim + list(sampler.noise_layout) + ["uniform"]

    def record(self) -> dict[str, str]:
        return {}

    def draw_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        raise InputError("an unfolding generator unfolds reco events; give them with --source FILE (or hepgen unfold)")

    def forward(self, inputs: torch.Tensor):
        s = self.event_dim
        p_reco = inputs[:, :s - 2].reshape(-1, 2 + self.max_jets, 4)
        n_reco, q1 = inputs[:, s - 2], inputs[:, s - 1]
        soft = inputs[:, s:self.source_dim].reshape(-1, self.soft_jets, 4) if self.soft_jets else None
        c = self.coords.condition(p_reco, n_reco, self.relative, soft)
        onehot = self.coords.posterior(c, inputs[:, -1])  # n_gen drawn from p(n_gen | reco)
        z = inputs[:, self.source_dim:self.source_dim + self.model_noise_dim]
        x = self.coords.absolute(self.sampler(z, torch.cat([c, onehot], dim=-1)), p_reco, n_reco, self.relative)
        n_values = torch.tensor([float(v) for v in self.coords.n_values], dtype=x.dtype)
        n_jets = (onehot * n_values).sum(-1)
        # the global azimuth: the reco object's the frame measures from (the leading muon, or jet 1)
        u_phi = (p_reco[:, self.azimuth_slot, 2] + math.pi) / (2 * math.pi)
        p = self.inverse(x, u_phi, n_jets)
        return assemble(p, n_jets, torch.where(q1 < 0, -torch.ones_like(q1), torch.ones_like(q1)))


@dataclass(frozen=True)
class ZJetsUnfoldSettings:
    """The unfolding process's own card keys (``process.settings``): its learned coordinates."""

    # residual: the particle-level dimuon mass as a residual from the reco one (like the other muon
    # columns); analytic: its quantile under an analytic posterior, a Breit-Wigner prior times the reco
    # muons' resolution (hepgen.coords.massposterior), so the network learns only the deviation from it
    mass_posterior: Literal["residual", "analytic"] = "residual"
    # the leading soft reco jets (SoftJet, simulate.soft_jet_pt_min) in the condition: where a particle-level
    # jet lost below the reco threshold was measured; 0 = none
    soft_jets: int = field(default=0, metadata={"range": {"ge": 0, "le": 4}})
    # the particle level's frame (hepgen.coords.zjets): muon, each object learned, the leading muon's azimuth
    # the reco one; imbalance, the event's pT imbalance learned (its components along the leading jet as
    # residuals from the reco event's), the dimuon's pT the imbalance minus the jets', the leading jet's
    # azimuth the reco one (hepgen.coords.imbalance); balance: the muon frame with the imbalance along the
    # leading jet learned in place of its pT (hepgen.coords.imbalance.BalanceFrame)
    frame: Literal["muon", "imbalance", "balance"] = "muon"
    # the reco event's pT imbalance (along and across its leading jet) as two more condition columns
    # (hepgen.coords.unfold.UnfoldCoords.balance): the detector's imbalance, which the jets' posterior undoes
    reco_balance: bool = False


class ZJetsUnfoldProcess:
    """Z+jets unfolding (see the module docstring); selection, events and validation are Z+jets's."""

    name = "zjets_unfold"
    settings_class = ZJetsUnfoldSettings
    writes_events = True
    observables = "zjets"
    takes_source = True  # its pipeline's input is a reco event (Run.maps_samples)

    def categories(self, sample: EventSample, card: Card) -> Categories:
        return ZJETS.categories(sample, card)

    def cut_violations(self, sample: EventSample, card: Card) -> dict[str, float]:
        return ZJETS.cut_violations(sample, card)

    def validation_sample(self, sample: EventSample, source: str, log: Log) -> EventSample:
        """A paired sample (the validation reference) is validated by its particle level of the
        events that pass both selections, the truth of the unfolded reco events; any other
        sample (unfolded events) as Z+jets."""
        if all(v in sample.collections for v in GEN_NAMES.values()) and "pass_gen" in sample.scalars:
            sample = level(sample.select(paired_events(sample, source)), GEN_NAMES, source)
        return ZJETS.validation_sample(sample, source, log)

    # -- data ---------------------------------------------------------------------------------
    def load_data(self, card: Card, log: Log) -> EventSample:
        path = training_file(card, log)
        sample = read_events(path, tree=card.data.tree)
        sample.check_finite(str(path))
        require_soft_jets(sample, settings_of(self, card).soft_jets, str(path))
        both = paired_events(sample, str(path))
        log(f"{path}: {int(both.sum())} of {len(sample)} paired events pass both selections (the training data)")
        sample = sample.select(both)
        if card.data.max_events and len(sample) > card.data.max_events:
            sample = sample.select(np.arange(card.data.max_events))
        return sample

    def validation_reference(self, card: Card, log: Log, simulate: bool = True) -> Path | None:
        return independent_reference(card, log, simulate=simulate)

    def coords(self, card: Card) -> UnfoldCoords:
        cfg = card.process
        settings = settings_of(self, card)
        return UnfoldCoords(cfg.n_jets, cfg.jet_pt_min, cfg.jet_dr_min, mass_posterior=settings.mass_posterior,
                            soft_jets=settings.soft_jets, frame=settings.frame, reco_balance=settings.reco_balance)

    # -- generation ---------------------------------------------------------------------------
    def pipeline(self, run, sampler: FrozenSampler, draw: int | None) -> UnfoldPipeline:
        return UnfoldPipeline(sampler, run.coords).eval()

    def source_events(self, sample: EventSample) -> np.ndarray:
        """bool ``[N]``: the events of ``sample`` to unfold: those of a paired sample that pass both
        selections (a closure test: their particle level is the truth to compare with), those of
        a reco sample with ``pass_reco``, else all."""
        if all(f in sample.scalars for f in PASS_FLAGS):
            return sample.scalars["pass_gen"] & sample.scalars["pass_reco"]
        if "pass_reco" in sample.scalars:
            return sample.scalars["pass_reco"].copy()
        return np.ones(len(sample), dtype=bool)

    def source_input(self, sample: EventSample, card: Card) -> torch.Tensor:
        """The events of :meth:`source_events` as pipeline source rows ``[n, S]`` float32."""
        source = sample.info.get("source", "reco sample")
        return reco_rows(sample.select(self.source_events(sample)), card.process.n_jets, source,
                         settings_of(self, card).soft_jets).float()

    def select(self, out: tuple[np.ndarray, ...], card: Card) -> Selection:
        return ZJETS.select(out, card)

    def to_events(self, out, info: dict[str, str] | None = None) -> EventSample:
        return ZJETS.to_events(out, info)

    def export_spec(self, run, pipe: UnfoldPipeline, sampler: FrozenSampler, draw_pipes: list) -> tuple[GraphSpec, dict]:
        cfg = run.card.process
        layout = pipe.noise_layout
        s, j = pipe.source_dim, pipe.max_jets
        objects = ["mu1", "mu2"] + [f"j{i + 1}" for i in range(j)]
        spec = GraphSpec(
            inputs=(Port("reco", (len(layout),),
                         f"columns 0..{s - 1}: the reco event ({', '.join(objects)}: pt, eta, phi, mass each, pT-ordered, "
                         f"absent jets 0; then the reco jet multiplicity and the charge of mu1"
                         + (f"; then {pipe.soft_jets} soft reco jets (pt, eta, phi, mass each, absent ones 0)"
                            if pipe.soft_jets else "") + "); then "
                         f"{len(layout) - s - 1} N(0,1) columns ({sampler.family} noise); then one U[0,1) column "
                         "(the draw of the particle-level jet multiplicity)",
                         "pt GeV, eta, phi rad, mass GeV; multiplicity and charge as float32"),),
            outputs=(Port("momenta", (len(objects), 4), "particle level: mu1, mu2 (pT-ordered), then jets (pT-ordered; "
                          "absent jets all zero)", "pt GeV, eta, phi rad in [-pi, pi], mass GeV"),
                     Port("n_jets", (), "particle-level exclusive jet multiplicity (integer value as float32)"),
                     Port("charge", (2,), "charges of mu1, mu2 (+1 / -1 as float32)")),
            noise_layout=tuple(layout), objects=tuple(objects),
            notes=("One call = one posterior sample per reco event; K samples: K calls with fresh noise "
                   "(a Bayesian export: weight file k for sample k).",
                   f"The reco event must pass the reco selection: 2 muons, n_jets in {list(cfg.n_jets)}, jets with "
                   f"pT > {cfg.jet_pt_min} GeV, |eta| < {cfg.jet_eta_max}, pairs with Delta R > {cfg.jet_dr_min}."),
        )
        physics = {"process": self.name, "sqrt_s_GeV": cfg.sqrt_s, "n_jets": [int(v) for v in run.coords.n_values],
                   "jet_selection": {"pt_min_GeV": cfg.jet_pt_min, "eta_max": cfg.jet_eta_max, "r": cfg.jet_r,
                                     "dr_min": cfg.jet_dr_min},
                   "detector": dict(run.card.detector), "record": pipe.record()}
        return spec, physics

    # -- after training -----------------------------------------------------------------------
    def after_training(self, run, tools: AfterTraining, log: Log) -> None:
        """Unfold the reco events of the independent paired reference once each (weight means,
        and one file per Bayesian draw), validate against their particle level, and check the
        posterior calibration (:mod:`hepgen.unfold.report`: 20 samples of 3000 events)."""
        card = run.card
        reference = self.validation_reference(card, log)
        if reference is None:
            log("no validation reference (validate.reference_events = 0): nothing unfolded after training")
            return
        tools.generate(run, None, output=run.path / "generated.root", force=True, log=log, source=reference)
        if run.bayesian and draws(card.model) > 1:
            tools.generate(run, None, bayes_samples=draws(card.model), output=run.path / "generated.root",
                           force=True, log=log, source=reference)
        if card.train.validate:
            tools.validate(run.path, log)
            if tools.calibrate is not None:
                tools.calibrate(run, reference, samples=CALIBRATION_SAMPLES, events=CALIBRATION_EVENTS, log=log)


PROCESS = ZJetsUnfoldProcess()
