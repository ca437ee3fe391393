"""Z -> mu mu + {1, 2, 3} jets: the reference process (Pythia 8 + FastJet, DESIGN.md).

Data: the card's reference sample (``data.path``, ROOT or LHE); when that file is absent and it
is the card's own ``simulate.output``, the simulation runs first. Events are kept with two
muons and a jet multiplicity in ``process.n_jets``; the sample's cross section
(:mod:`hepgen.crosssection`) is scaled by the weight fraction kept.

Pipeline (:class:`ZJetsPipeline`), one exportable module per Bayesian draw::

    noise [N, m + 3] float32 -> (p [N, 2 + J, 4], n_jets [N], charge [N, 2])

Noise columns: ``[:, :m]`` the generator family's own noise, then three uniforms in [0, 1):
``[:, m]`` picks the jet multiplicity from the sampling fractions, ``[:, m+1]`` the global
azimuth (phi of the leading muon before sorting), ``[:, m+2]`` the charge of the leading muon;
with ``process.settings.mass_sampling: marginal`` a fourth, ``[:, m+3]``, draws the dimuon mass from
the training line shape of the drawn multiplicity (:mod:`hepgen.coords.marginal`), and the
network generates the rest of the event given it.
``p`` holds (pT [GeV], eta, phi [rad], m [GeV]): muons first, then J jet slots, each group
pT-ordered (a compare-and-swap network), absent jets all zero; ``n_jets`` and ``charge``
(+-1) are float32. Every op is elementary (MatMul, Add, Mul, Exp, Log, Sin, Cos, Where,
comparisons, Slice, Concat); the solver loop is unrolled.

Bayesian draws: ``draw=k`` also draws the multiplicity fractions from their Dirichlet
posterior (counts + 1); ``draw=None`` uses the observed fractions.

Fractions at nu (``model.nuisance``): the multiplicity is drawn with the sampling fractions times
each multiplicity's mean nuisance weight over the training events, <w(x; nu)>_n (exact: w expanded
in its 3^K terms, :func:`hepgen.nuisance_mixture.category_means`), normalised; per-event edges from the
noise's nu columns, inside the graph. The cut correction uses the pass rates at nu = 0.

Cut-corrected fractions: the cuts (:func:`hepgen.selection`) remove more 3-jet than 1-jet
events, which would bias the multiplicity mix of the kept events. The pipeline therefore
measures each multiplicity's pass rate eps_k on ``generate.calibration_events`` events of its
own (seeded noise, per draw) and samples the multiplicities with f_k / eps_k (normalised), so
the surviving events carry the fractions f_k (``generate.calibration_events: 0`` turns it off).

Selection at generation (:meth:`ZJetsProcess.select`): events with a jet pair closer than
``process.jet_dr_min`` are dropped (``dR_jj``), as are events with a jet outside the jet
selection or more energy than the beams (``acceptance``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import awkward as ak
import numpy as np
import torch
from torch import nn

from .. import crosssection as xsec
from .. import selection
from ..cards import Card
from ..modelcards import draws
from ..coords import ZJetsCoords, ZJetsInverse
from ..coords.marginal import MassDraw
from ..coords.zjets import MASS_COLUMN, categorical_onehot
from ..errors import InputError
from ..events import EventSample, make_collection
from ..export.manifest import GraphSpec, Port
from ..io.lhe import read_lhe
from ..io.root import read_events
from ..kinematics import ptetaphim_to_epxpypz
from ..nuisance import NUISANCE
from ..nuisance_mixture import expansion_terms, probability_edges, term_factors
from ..rngstate import derived_seed
from ..simulate import training_file
from ..simulate.reference import independent_reference
from .base import AfterTraining, Categories, Category, FrozenSampler, Log, Selection, settings_of

N_EXTRA = 3  # uniform columns after the family's noise: multiplicity, azimuth, charge (then the dimuon mass)
N_EXTRA_NAMES = ("jet multiplicity", "global azimuth", "leading-muon charge")
MASS_NAME = "dimuon mass (mass_sampling marginal: drawn from the training line shape of the multiplicity)"


def _dirichlet_fractions(counts: np.ndarray, seed: int, draw: int | None) -> np.ndarray:
    if draw is None:
        return counts / counts.sum()
    rng = np.random.default_rng(derived_seed("fractions", seed, draw))
    return rng.dirichlet(counts + 1.0)


def _swap(a: torch.Tensor, b: torch.Tensor, cond: torch.Tensor):
    c = cond.unsqueeze(-1)
    return torch.where(c, b, a), torch.where(c, a, b)


def _edges(fractions) -> torch.Tensor:
    cum = np.concatenate([[0.0], np.cumsum(fractions)[:-1], [2.0]])  # last edge above any u < 1
    return torch.tensor(cum, dtype=torch.float32)


class ZJetsPipeline(nn.Module):
    """noise ``[N, m + 3]`` float32 -> (p ``[N, 2+J, 4]``, n_jets ``[N]``, charge ``[N, 2]``); with
    ``mass`` (mass_sampling marginal) one more uniform column, the draw of the dimuon mass."""

    def __init__(self, sampler: FrozenSampler, inverse: nn.Module, fractions: np.ndarray, n_values, charge_frac: float,
                 mass: MassDraw | None = None, nuisance_table: torch.Tensor | None = None):
        super().__init__()
        self.sampler, self.inverse, self.mass = sampler.module, inverse, mass
        self.n_extra = N_EXTRA + (mass is not None)
        self.register_buffer("edges", _edges(fractions))
        # model.nuisance: the nu columns of the sampler's noise and the multiplicities' mean weight terms
        cols = [j for j, word in enumerate(sampler.noise_layout) if word == NUISANCE]
        self.nu_cols = slice(cols[0], cols[-1] + 1) if cols else None  # contiguous (nuisance.conditioned): a Slice
        self.register_buffer("sampling", torch.tensor(np.asarray(fractions), dtype=torch.float32))
        self.register_buffer("nu_table", None if nuisance_table is None or not cols
                             else nuisance_table.to(torch.float32).clone())
        self.register_buffer("n_values", torch.tensor(list(n_values), dtype=torch.float32))
        self.register_buffer("charge_frac", torch.tensor(float(charge_frac), dtype=torch.float32))
        self.model_noise_dim = sampler.noise_dim
        self.noise_dim = sampler.noise_dim + self.n_extra
        self.noise_layout = list(sampler.noise_layout) + ["uniform"] * self.n_extra
        self.max_jets = int(max(n_values))
        self._draw_model_noise = sampler.draw_noise
        self.fractions = [float(f) for f in fractions]
        self.pass_rates = [1.0] * len(self.fractions)

    def record(self) -> dict[str, str]:
        """What generated files record: the sampling fractions and the measured pass rates."""
        return {"jet_fractions": ",".join(f"{f:.6f}" for f in self.fractions),
                "jet_pass_rates": ",".join(f"{r:.6f}" for r in self.pass_rates)}

    def set_fractions(self, fractions) -> None:
        """Sample the multiplicities with ``fractions`` (sum 1) from now on."""
        self.edges.copy_(_edges(fractions))
        self.sampling.copy_(torch.tensor(np.asarray(fractions), dtype=torch.float32))
        self.fractions = [float(f) for f in fractions]

    def edges_at(self, nu: torch.Tensor) -> torch.Tensor:
        """``[N, K + 1]`` per-event multiplicity edges at nu ``[N, K_nu]``: the sampling fractions times
        each multiplicity's mean nuisance weight (:func:`hepgen.nuisance_mixture.category_means`), normalised.
        Exportable (Relu, MatMul, Div, Add; no CumSum)."""
        p = self.sampling * (term_factors(nu) @ self.nu_table)
        return probability_edges(p / p.sum(-1, keepdim=True))

    def draw_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``[n, noise_dim]`` float32: the family's noise, then 3 (4) uniforms (see module docstring)."""
        z = self._draw_model_noise(n, generator).float()
        return torch.cat([z, torch.rand(n, self.n_extra, generator=generator)], dim=-1)

    def forward(self, noise: torch.Tensor):
        m = self.model_noise_dim
        z, u_mult, u_phi, u_q = noise[:, :m], noise[:, m], noise[:, m + 1], noise[:, m + 2]
        edges = self.edges if self.nu_table is None else self.edges_at(noise[:, self.nu_cols])
        onehot = categorical_onehot(u_mult, edges)
        if self.mass is None:
            x = self.sampler(z, onehot)
        else:  # the mass first, then the rest of the event given it; x's mass column is the drawn one
            s = self.mass(noise[:, m + 3], onehot).unsqueeze(-1)
            x = self.sampler(z, torch.cat([onehot, s], dim=-1))
            x = torch.cat([x[:, :MASS_COLUMN], s, x[:, MASS_COLUMN + 1:]], dim=-1)
        n_jets = (onehot * self.n_values).sum(-1)
        p = self.inverse(x, u_phi, n_jets)
        q1 = torch.where(u_q < self.charge_frac, torch.ones_like(u_q), -torch.ones_like(u_q))
        return assemble(p, n_jets, q1)


def assemble(p: torch.Tensor, n_jets: torch.Tensor, q1: torch.Tensor):
    """Exportable: decoded momenta ``[N, 2 + J, 4]`` (all jet slots), multiplicity ``[N]`` and the
    charge of the first muon ``[N]`` -> the pipeline outputs (p with the muons and the present
    jets pT-ordered and absent jets all zero, n_jets, charges ``[N, 2]``)."""
    max_jets = p.shape[1] - 2
    mu1, mu2 = p[:, 0], p[:, 1]
    q = [q1.unsqueeze(-1), -q1.unsqueeze(-1)]
    swap = mu1[:, 0] < mu2[:, 0]
    mu1, mu2 = _swap(mu1, mu2, swap)
    q[0], q[1] = _swap(q[0], q[1], swap)
    jets = []
    for j in range(max_jets):
        present = (n_jets > j + 0.5).unsqueeze(-1)
        jets.append(torch.where(present, p[:, 2 + j], torch.zeros_like(p[:, 2 + j])))
    for i in range(max_jets):  # bubble-sort network on pT; absent jets (pT 0) sink
        for j in range(max_jets - 1 - i):
            jets[j], jets[j + 1] = _swap(jets[j], jets[j + 1], jets[j][:, 0] < jets[j + 1][:, 0])
    out = torch.stack([mu1, mu2] + jets, dim=1)
    return out, n_jets, torch.cat(q, dim=-1)


def acceptance(p: np.ndarray, n_jets: np.ndarray, card: Card) -> tuple[np.ndarray, np.ndarray]:
    """(dR_ok, kin_ok) ``[N]`` for pipeline momenta ``p`` ``[N, 2 + J, 4]``: every present jet
    pair separated, and every present jet selected and the final state within the beams
    (:mod:`hepgen.selection`)."""
    cfg = card.process
    present = np.arange(p.shape[1] - 2)[None, :] < n_jets[:, None]
    dr_ok = selection.separated(selection.min_pair_dr(p[:, 2:, 1], p[:, 2:, 2], present), cfg.jet_dr_min)
    jets_ok = np.all(~present | selection.jet_selected(p[:, 2:, 0], p[:, 2:, 1], cfg.jet_pt_min, cfg.jet_eta_max), axis=1)
    w = np.concatenate([np.ones((len(p), 2), bool), present], axis=1)
    with np.errstate(over="ignore", invalid="ignore"):
        e, _, _, pz = ptetaphim_to_epxpypz(p[..., 0], p[..., 1], p[..., 2], p[..., 3])
        beams_ok = selection.within_beams((e * w).sum(1), (pz * w).sum(1), cfg.sqrt_s / 2, cfg.sqrt_s / 2)
    return dr_ok, jets_ok & beams_ok


def pass_rates(pipe: ZJetsPipeline, card: Card, events: int, draw: int | None = None) -> np.ndarray:
    """``[K]``: the fraction of the pipeline's events of each multiplicity that pass the cuts,
    from ``events`` calibration events per multiplicity with their own noise (seeded by the
    card's seed and the draw). Multiplicities with fraction 0 get 1."""
    gen = torch.Generator().manual_seed(derived_seed("calibration", card.seed, draw))
    edges = pipe.edges.double().numpy()
    rates = np.ones(len(pipe.fractions))
    for k, f in enumerate(pipe.fractions):
        noise = pipe.draw_noise(events, gen)
        if f <= 0:
            continue
        noise[:, pipe.model_noise_dim] = float(0.5 * (edges[k] + min(edges[k + 1], 1.0)))
        with torch.no_grad():
            p, n_jets, _ = pipe(noise)
        dr_ok, kin_ok = acceptance(p.double().numpy(), np.rint(n_jets.numpy()).astype(np.int64), card)
        rates[k] = max(float(np.mean(dr_ok & kin_ok)), 1.0 / events)
    return rates


def cut_corrected_fractions(fractions: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """Sampling fractions f_k / eps_k (normalised) whose surviving events have the fractions f_k."""
    f = np.asarray(fractions, dtype=np.float64) / np.asarray(rates, dtype=np.float64)
    return f / f.sum()


_WORDS = {"normal": "N(0,1)", "uniform": "U[0,1)", "nuisance": "nuisance parameter nu (0 = nominal)"}


def _describe(layout: list[str]) -> str:
    parts, i = [], 0
    while i < len(layout):
        j = i
        while j < len(layout) and layout[j] == layout[i]:
            j += 1
        parts.append(f"{j - i} {_WORDS.get(layout[i], layout[i])}")
        i = j
    return ", ".join(parts)


@dataclass(frozen=True)
class ZJetsSettings:
    """The Z+jets process's own card keys (``process.settings``); they configure the learned
    coordinates, not the simulation (a reference file made with other values is still valid)."""

    # the dimuon-mass column: log m0, or logit of the Breit-Wigner CDF fitted to the training sample
    # (hepgen.coords.zjets.BreitWignerMass: the Z peak spread over a few units)
    mass_coordinate: Literal["log", "breit_wigner"] = "log"
    # leading-order mu mu + parton events (process.n_jets: [1]): the dimuon system and its decay are
    # learned, the parton's pT and azimuth are set to the dimuon's recoil, so generated events balance
    # exactly and pass the parton's pT cut by construction (hepgen.coords.dimuon.DimuonFrame)
    jet_recoil: bool = False
    # network: the generator learns the dimuon-mass column; marginal: the mass is drawn from the training
    # sample's line shape per jet multiplicity and conditions the network (hepgen.coords.marginal)
    mass_sampling: Literal["network", "marginal"] = "network"
    # muon: the muons and each jet are learned (the leading muon's azimuth is the reference); imbalance: the
    # event's pT imbalance and the dimuon system are learned and the dimuon's pT is the imbalance minus the
    # jets', so the pT balance is not a cancellation of learned objects (hepgen.coords.imbalance); balance: the
    # muon frame with the imbalance along jet 1 learned in place of jet 1's pT (hepgen.coords.imbalance.BalanceFrame)
    frame: Literal["muon", "imbalance", "balance"] = "muon"


class ZJetsProcess:
    """pp -> Z/gamma* -> mu+ mu- + {1, 2, 3} jets (see the module docstring)."""

    name = "zjets"
    settings_class = ZJetsSettings  # besides the process section's shared keys (sqrt_s, the jet selection)
    writes_events = True
    observables = "zjets"

    # -- validation -----------------------------------------------------------------------------
    def categories(self, sample: EventSample, card: Card) -> Categories:
        """The classifier test and the fraction table split by exclusive jet multiplicity."""
        return Categories(sample.n_jets, {k: Category(str(k), f"{k} jet{'s' if k > 1 else ''}", f"{k}j")
                                          for k in card.process.n_jets}, "jets")

    def cut_violations(self, sample: EventSample, card: Card) -> dict[str, float]:
        return selection.cut_violations(sample, card.process.jet_pt_min, card.process.jet_dr_min)

    def validation_sample(self, sample: EventSample, source: str, log: Log) -> EventSample:
        """A sample needs its muons; one without a Jet collection (a dimuon ntuple) gets an empty
        one, said through ``log``."""
        if "Muon" not in sample.collections:
            raise InputError(f"{source}: no Muon collection to validate (the sample has "
                             f"{', '.join(sample.collections) or 'none'}; map one with --branches, or give another process's --card)")
        if "Jet" not in sample.collections:  # a dimuon ntuple: its events have no jets recorded
            empty = ak.unflatten(np.zeros(0), np.zeros(len(sample), dtype=np.int64))
            jets = make_collection(empty, empty, empty, empty)
            sample = replace(sample, collections={**sample.collections, "Jet": jets})
            log(f"{source}: no Jet collection; its events count as events without jets")
        return sample

    # -- data ---------------------------------------------------------------------------------
    def load_data(self, card: Card, log: Log) -> EventSample:
        path = training_file(card, log)
        if card.data.format == "lhe":
            sample = read_lhe(path)
        else:
            sample = read_events(path, tree=card.data.tree, branches=dict(card.data.branches) or None)
        if card.data.max_events and len(sample) > card.data.max_events:
            sample = sample.select(np.arange(card.data.max_events))
        sample.check_finite(str(path))
        keep = np.isin(sample.n_jets, card.process.n_jets) & (sample.multiplicity("Muon") >= 2)
        if not keep.all():
            log(f"{path}: kept {int(keep.sum())} of {len(sample)} events with 2 muons and n_jets in {list(card.process.n_jets)}")
            w = sample.weight
            sample = sample.select(keep).with_info(**xsec.scaled_record(sample.info, w[keep].sum(), w.sum()))
        return sample

    def validation_reference(self, card: Card, log: Log, simulate: bool = True) -> Path | None:
        """``validate.reference``: ``validate.reference_events`` events simulated like the
        training sample with another seed, produced when absent (with ``simulate``) and reused
        when its provenance matches (:func:`hepgen.simulate.reference.independent_reference`)."""
        return independent_reference(card, log, simulate=simulate)

    def coords(self, card: Card) -> ZJetsCoords:
        cfg = card.process
        settings = settings_of(self, card)
        if settings.mass_sampling == "marginal" and card.model.network.backbone == "lgatr":
            raise InputError("process.settings.mass_sampling: marginal: the lgatr backbone needs the dimuon mass "
                             "among the learned columns (use mass_sampling: network)")
        if settings.frame != "muon" and card.model.network.backbone == "lgatr":
            raise InputError(f"process.settings.frame: {settings.frame}: the lgatr backbone needs four-momenta from the "
                             "learned columns alone (use frame: muon)")
        return ZJetsCoords(cfg.n_jets, cfg.jet_pt_min, jet_dr_min=cfg.jet_dr_min, mass_coordinate=settings.mass_coordinate,
                           jet_recoil=settings.jet_recoil, mass_sampling=settings.mass_sampling,
                           nuisances=len(card.model.nuisance), frame=settings.frame)

    # -- generation ---------------------------------------------------------------------------
    def pipeline(self, run, sampler: FrozenSampler, draw: int | None) -> ZJetsPipeline:
        coords, card = run.coords, run.card
        fractions = _dirichlet_fractions(coords.mult_counts.numpy(), card.seed, draw)
        mass = None if coords.marginal is None else MassDraw(coords.marginal.table(card.seed, draw))
        pipe = ZJetsPipeline(sampler, ZJetsInverse(coords, torch.float32), fractions, coords.n_values,
                             float(coords.charge_frac), mass,
                             None if coords.mult_nuisance is None else coords.mult_nuisance.table).eval()
        if card.generate.calibration_events > 0:
            rates = pass_rates(pipe, card, card.generate.calibration_events, draw)
            pipe.set_fractions(cut_corrected_fractions(fractions, rates))
            pipe.pass_rates = [float(r) for r in rates]
        return pipe

    def select(self, out: tuple[np.ndarray, ...], card: Card) -> Selection:
        p, n_jets = out[0], out[1]
        dr_ok, kin_ok = acceptance(p, n_jets, card)
        return Selection(dr_ok & kin_ok, {"dR_jj": ~dr_ok, "acceptance": dr_ok & ~kin_ok})

    def to_events(self, out, info: dict[str, str] | None = None) -> EventSample:
        """Pipeline outputs (torch) -> EventSample (muons with charge, jets), float64."""
        p, n_jets, charge = (t.detach().double().numpy() for t in out)
        n = len(p)
        nj = np.rint(n_jets).astype(np.int64)
        mu = p[:, 0:2].reshape(-1, 4)
        mu = make_collection(mu[:, 0], mu[:, 1], mu[:, 2], mu[:, 3], counts=np.full(n, 2),
                             charge=np.rint(charge).astype(np.int32).reshape(-1))
        keep = np.arange(p.shape[1] - 2)[None, :] < nj[:, None]
        jets = p[:, 2:][keep]  # [sum n_jets, 4], event-major order
        jet = make_collection(jets[:, 0], jets[:, 1], jets[:, 2], jets[:, 3], counts=nj)
        return EventSample.build({"Muon": mu, "Jet": jet}, np.ones(n), info or {})

    # -- export -------------------------------------------------------------------------------
    def export_spec(self, run, pipe: ZJetsPipeline, sampler: FrozenSampler, draw_pipes: list) -> tuple[GraphSpec, dict]:
        card = run.card
        cfg = card.process
        layout = pipe.noise_layout
        m = pipe.model_noise_dim
        objects = ["mu1", "mu2"] + [f"j{j + 1}" for j in range(pipe.max_jets)]
        spec = GraphSpec(
            inputs=(Port("noise", (len(layout),),
                         f"columns 0..{m - 1}: {sampler.family} noise ({_describe(layout[:m])}); then U[0,1): "
                         + ", ".join(N_EXTRA_NAMES + ((MASS_NAME,) if pipe.mass is not None else ()))),),
            outputs=(Port("momenta", (len(objects), 4),
                          "mu1, mu2 (pT-ordered), then jets (pT-ordered; absent jets all zero)",
                          "pt GeV, eta, phi rad in [-pi, pi), mass GeV"),
                     Port("n_jets", (), "exclusive jet multiplicity (integer value as float32)"),
                     Port("charge", (2,), "charges of mu1, mu2 (+1 / -1 as float32)")),
            noise_layout=tuple(layout), objects=tuple(objects),
            notes=(f"Selection: drop events in which two present jets have Delta R <= {cfg.jet_dr_min} "
                   "(hepgen generate does; the graph cannot drop events).",
                   "Absent jets (index >= n_jets) have all four components zero.",
                   "Noise: 'normal' columns N(0,1), 'uniform' columns U[0,1), float32; the same noise gives the same events."),
        )
        if run.coords.jet_recoil:
            spec = replace(spec, notes=spec.notes + (
                "j1 is the recoil of the dimuon (process.settings.jet_recoil): its pT and phi balance mu1 + mu2; "
                f"events with pT_j1 <= {cfg.jet_pt_min} GeV are dropped by hepgen generate (the graph cannot drop events).",))
        counts = run.coords.mult_counts.numpy().astype(float)
        frac = counts / counts.sum()
        physics = {
            "process": self.name, "sqrt_s_GeV": cfg.sqrt_s, "n_jets": [int(v) for v in run.coords.n_values],
            "jet_selection": {"pt_min_GeV": cfg.jet_pt_min, "eta_max": cfg.jet_eta_max, "r": cfg.jet_r, "dr_min": cfg.jet_dr_min},
            # the uniform multiplicity column is cut against these sampling fractions: the training
            # fractions divided by each multiplicity's pass rate of the cuts, so the events that
            # survive the cuts carry the training fractions
            "fractions": [float(f) for f in pipe.fractions],
            "pass_rates": [float(r) for r in pipe.pass_rates],
            "training_fractions": [float(f) for f in frac],
            "fraction_stat_errors": [float(e) for e in np.sqrt(frac * (1 - frac) / counts.sum())],
            "fraction_training_counts": [int(c) for c in counts],
            "fractions_per_draw": [[float(f) for f in p.fractions] for p in draw_pipes],
            "pass_rates_per_draw": [[float(r) for r in p.pass_rates] for p in draw_pipes],
            # what files generated from the export record (hepgen generate --backend onnx)
            "record": pipe.record(), "record_per_draw": [p.record() for p in draw_pipes],
        }
        if pipe.nu_table is not None:  # model.nuisance: the fractions at nu (the graph applies them)
            physics["fractions_at_nu"] = {
                "formula": "sampling fraction_n(nu) = fractions_n * sum_t factor_t(nu) table[t][n], normalised over n; "
                           "factor_t = prod over the term's nuisances k of relu(+nu_k) (+1) or relu(-nu_k) (-1)",
                "terms": [list(t) for t in expansion_terms(len(run.card.model.nuisance))],
                "table": pipe.nu_table.double().tolist()}
        if draw_pipes:
            physics["fraction_draw_std"] = ([float(s) for s in np.std([p.fractions for p in draw_pipes], axis=0, ddof=1)]
                                           if len(draw_pipes) > 1 else None)
        return spec, physics

    # -- after training -----------------------------------------------------------------------
    def after_training(self, run, tools: AfterTraining, log: Log) -> None:
        """``generate.events`` events into ``generated.root`` (weight means) and, for a Bayesian
        model with ``bayes.draws`` > 1, one file per draw (the validation's bands); then validate."""
        card = run.card
        tools.generate(run, card.generate.events, output=run.path / "generated.root", force=True, log=log)
        if run.bayesian and draws(card.model) > 1:
            tools.generate(run, card.generate.events, bayes_samples=draws(card.model),
                           output=run.path / "generated.root", force=True, log=log)
        if card.train.validate:
            tools.validate(run.path, log)


PROCESS = ZJetsProcess()
