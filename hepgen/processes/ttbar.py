"""Dileptonic tt̄: pp -> t tbar -> b l+ nu bbar l- nubar at 13 TeV (docs/ttbar.md).

Data: the card's sample (``data.path``, ROOT or LHE from any generator); the six decay products
are assigned by PDG id (:func:`hepgen.dilepton.assign`), so a file with other particles or a
different number of them is one InputError line. When the file is absent and it is the card's
``simulate.output``, Pythia 8 makes it first (:func:`hepgen.simulate.training_file`, with
:func:`hepgen.simulate.ttbar.ttbar_simulation`: hard process plus decays;
``process.settings.widths`` narrow = on-shell, breit_wigner = Pythia's off-shell line shapes).

Two pipelines, one exportable module per Bayesian draw, both ending in the same outputs::

    (p [N, 6, 4] float32 (pt GeV, eta, phi rad, mass GeV), pdg [N, 6] float32)

in the :mod:`hepgen.dilepton` order:

* a generator of noise (cfm, ddpm, jetgpt, inn): :class:`TTbarPipeline`, input noise
  ``[N, m + 3]``: the family's ``m`` columns, then three U[0, 1): the global azimuth (the b's
  or the top's, :mod:`hepgen.coords.ttbar`), the W+ and the W- lepton flavour (muon below the
  training sample's muon fraction);
* a generator that maps events (didi): :class:`TTbarMapPipeline`, input ``[N, 30 + m]``: the
  source event flattened (per particle, in the same order: pt, eta, phi, mass, pdgId; float32),
  then the generator's own ``m`` N(0, 1) columns (DiDi's fill noise for what the source
  lacks, e.g. the top and W line shapes of an on-shell source); each event is encoded, moved
  by the generator and decoded; its particles keep their species (pdgId, mass) and the event
  its global azimuth.

Selection at generation: events with more energy than the beams are dropped (``acceptance``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import crosssection as xsec
from .. import dilepton, selection
from ..cards import Card, load_card
from ..modelcards import draws
from ..coords.ttbar import TTbarCoords, pdg_ids, uniform_azimuth
from ..errors import CardError
from ..events import EventSample
from ..export.manifest import GraphSpec, Port
from ..io import format_of
from ..io.lhe import read_lhe
from ..io.root import read_events
from ..kinematics import ptetaphim_to_epxpypz
from ..simulate import training_file
from ..simulate.reference import independent_reference, reference_seed
from .base import AfterTraining, FrozenSampler, Log, Selection, settings_of

N_EXTRA = 3  # uniform columns after the family's noise: b azimuth, W+ flavour, W- flavour
N_EXTRA_NAMES = ("global azimuth", "W+ lepton flavour (muon below the training fraction)",
                 "W- lepton flavour (muon below the training fraction)")
SOURCE_COLUMNS = ("pt", "eta", "phi", "mass", "pdgId")
SOURCE_WIDTH = 6 * len(SOURCE_COLUMNS)  # a source event, flattened


def _masses(table: torch.Tensor, flavour: torch.Tensor) -> torch.Tensor:
    """``[N, 6]`` masses from the fitted table ``[6, 2]`` and the W flavours ``[N, 2]``."""
    per_role = torch.stack([flavour[:, 0]] * 3 + [flavour[:, 1]] * 3, dim=-1)  # [N, 6]
    return table[:, 0] + (table[:, 1] - table[:, 0]) * per_role


class TTbarPipeline(nn.Module):
    """noise ``[N, m + 3]`` -> (p ``[N, 6, 4]``, pdg ``[N, 6]``), float32."""

    def __init__(self, sampler: FrozenSampler, coords: TTbarCoords):
        super().__init__()
        self.sampler, self.inverse = sampler.module, coords.inverse(torch.float32)
        self.register_buffer("masses", coords.masses.float().clone())
        self.register_buffer("muon_frac", coords.muon_frac.float().clone())
        self.model_noise_dim = sampler.noise_dim
        self.noise_dim = sampler.noise_dim + N_EXTRA
        self.noise_layout = list(sampler.noise_layout) + ["uniform"] * N_EXTRA
        self._draw_model_noise = sampler.draw_noise

    def record(self) -> dict[str, str]:
        return {"muon_fractions": ",".join(f"{f:.6f}" for f in self.muon_frac.tolist())}

    def draw_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        z = self._draw_model_noise(n, generator).float()
        return torch.cat([z, torch.rand(n, N_EXTRA, generator=generator)], dim=-1)

    def forward(self, noise: torch.Tensor):
        m = self.model_noise_dim
        z, u = noise[:, :m], noise[:, m:]
        x = self.sampler(z, z[:, :0])
        flavour = (u[:, 1:3] < self.muon_frac).to(noise.dtype)
        masses = _masses(self.masses, flavour)
        kin = self.inverse(x, uniform_azimuth(u[:, 0]), masses)
        return torch.cat([kin, masses.unsqueeze(-1)], dim=-1), pdg_ids(flavour)


class TTbarMapPipeline(nn.Module):
    """``[N, 30 + m]`` (the source event's 6 x (pt, eta, phi, mass, pdgId), then the generator's
    m noise columns) -> (p ``[N, 6, 4]``, pdg ``[N, 6]``), float32."""

    def __init__(self, sampler: FrozenSampler, coords: TTbarCoords):
        super().__init__()
        self.sampler = sampler.module
        self.encoder, self.inverse = coords.encoder(torch.float32), coords.inverse(torch.float32)
        extra = [k for k in sampler.noise_layout if k != "source"]
        self.noise_dim = SOURCE_WIDTH + len(extra)
        self.noise_layout = ["source"] * SOURCE_WIDTH + extra
        self._draw_model_noise = sampler.draw_noise  # raises: a map needs source events

    def record(self) -> dict[str, str]:
        return {}

    def draw_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self._draw_model_noise(n, generator)

    def forward(self, inputs: torch.Tensor):
        source = inputs[:, :SOURCE_WIDTH].reshape(-1, dilepton.N_PARTICLES, len(SOURCE_COLUMNS))
        p0 = source[..., :4]
        x0, phi0 = self.encoder(p0)
        x1 = self.sampler(torch.cat([x0, inputs[:, SOURCE_WIDTH:]], dim=-1), x0[:, :0])
        kin = self.inverse(x1, phi0, p0[..., 3])
        return torch.cat([kin, p0[..., 3:4]], dim=-1), source[..., 4]


def acceptance(p: np.ndarray, card: Card) -> np.ndarray:
    """``[N]`` bool: the six particles' summed energy fits into the beams (:mod:`hepgen.selection`)."""
    with np.errstate(over="ignore", invalid="ignore"):
        e, _, _, pz = ptetaphim_to_epxpypz(p[..., 0], p[..., 1], p[..., 2], p[..., 3])
        ok = selection.within_beams(e.sum(1), pz.sum(1), card.process.sqrt_s / 2, card.process.sqrt_s / 2)
    return ok & np.isfinite(p).all(axis=(1, 2))


class TTbarProcess:
    """pp -> t tbar -> b l+ nu bbar l- nubar (see the module docstring)."""

    name = "ttbar"
    settings_class = dilepton.TTbarSettings
    writes_events = True
    observables = "ttbar"

    # -- data ---------------------------------------------------------------------------------
    def read(self, path: Path, card: Card, what: str = "data.path") -> EventSample:
        """A tt̄ file as an EventSample with GenPart in the fixed order: ``data.path`` in
        ``data.format`` (which its suffix must not contradict, :func:`training_file`), any other
        file (a source, a reference) ROOT or LHE by its suffix."""
        if format_of(path, card.data.format if what == "data.path" else None) == "lhe":
            sample = read_lhe(path)
        else:
            sample = read_events(path, tree=card.data.tree, branches=dict(card.data.branches) or None)
        sample.check_finite(str(path))
        return self.validation_sample(sample, f"{what} {path}")

    def validation_sample(self, sample: EventSample, source: str, log: Log | None = None) -> EventSample:
        """``sample`` as the one GenPart collection in the :mod:`hepgen.dilepton` order, whatever
        collections it came in (an LHE file's Jet / Electron / Muon / Neutrino); one InputError
        line naming ``source`` for other particle content."""
        p, pdg = dilepton.assign(sample, source)
        return dilepton.to_sample(p, pdg, sample.weight, sample.info, sample.variations)

    def load_data(self, card: Card, log: Log) -> EventSample:
        path = training_file(card, log)
        sample = self.read(path, card)
        if card.data.max_events and len(sample) > card.data.max_events:
            w = sample.weight
            keep = np.arange(card.data.max_events)
            sample = sample.select(keep).with_info(**xsec.scaled_record(sample.info, w[keep].sum(), w.sum()))
        return sample

    def validation_reference(self, card: Card, log: Log, simulate: bool = True) -> Path | None:
        return independent_reference(card, log, simulate=simulate)

    def coords(self, card: Card) -> TTbarCoords:
        settings = settings_of(self, card)
        return TTbarCoords(settings.coordinates, settings.line_shape)

    # -- generation ---------------------------------------------------------------------------
    def pipeline(self, run, sampler: FrozenSampler, draw: int | None) -> nn.Module:
        maps = "source" in sampler.noise_layout
        return (TTbarMapPipeline if maps else TTbarPipeline)(sampler, run.coords).eval()

    def source_input(self, sample: EventSample, card: Card) -> torch.Tensor:
        """Source events -> the map pipeline's source columns ``[N, 30]`` float32 (per particle pt,
        eta, phi, mass, pdgId; InputError for other content)."""
        p, pdg = dilepton.assign(sample, sample.info.get("source", "the source sample"))
        return torch.from_numpy(np.concatenate([p, pdg[..., None].astype(np.float64)], axis=-1)).float().reshape(len(p), -1)

    def select(self, out: tuple[np.ndarray, ...], card: Card) -> Selection:
        ok = acceptance(out[0], card)
        return Selection(ok, {"acceptance": ~ok})

    def to_events(self, out, info: dict[str, str] | None = None) -> EventSample:
        p, pdg = (t.detach().double().numpy() for t in out[:2])
        return dilepton.to_sample(p, np.rint(pdg).astype(np.int64), None, info or {})

    # -- export -------------------------------------------------------------------------------
    def export_spec(self, run, pipe: nn.Module, sampler: FrozenSampler, draw_pipes: list) -> tuple[GraphSpec, dict]:
        roles = dilepton.ROLES
        layout = pipe.noise_layout
        if isinstance(pipe, TTbarMapPipeline):
            port = Port("source", (len(layout),),
                        f"columns 0..{SOURCE_WIDTH - 1}: the source event ({', '.join(roles)}; per particle "
                        f"{', '.join(SOURCE_COLUMNS)}); then {len(layout) - SOURCE_WIDTH} N(0,1) columns "
                        "(the generator's fill noise)", "pt GeV, eta, phi rad, mass GeV, PDG id as float32")
        else:
            m = pipe.model_noise_dim
            port = Port("noise", (len(layout),),
                        f"columns 0..{m - 1}: {sampler.family} noise; then U[0,1): " + ", ".join(N_EXTRA_NAMES))
        spec = GraphSpec(
            inputs=(port,),
            outputs=(Port("momenta", (dilepton.N_PARTICLES, 4), ", ".join(roles), "pt GeV, eta, phi rad in [-pi, pi], mass GeV"),
                     Port("pdgId", (dilepton.N_PARTICLES,), "PDG ids of the six particles (integer values as float32)")),
            noise_layout=tuple(layout), objects=roles,
            notes=("Selection: drop events whose six particles carry more energy than the beams (hepgen generate does).",
                   "Particle order: b, l+, nu, bbar, l-, nubar (particles 0-2 from the top, 3-5 from the antitop)."),
        )
        physics = {"process": self.name, "sqrt_s_GeV": run.card.process.sqrt_s, "roles": list(roles),
                   "masses_GeV_electron_muon": run.coords.masses.tolist(),
                   "muon_fractions_Wplus_Wminus": run.coords.muon_frac.tolist(), "record": pipe.record()}
        return spec, physics

    # -- after training -----------------------------------------------------------------------
    def after_training(self, run, tools: AfterTraining, log: Log) -> None:
        """``generate.events`` events into ``generated.root`` (and one file per Bayesian draw),
        then the validation. A run that maps samples (didi) maps an independent source sample:
        the source card's own validation reference (``data.source_card``: simulated like the
        training source with another seed), and the validation sets the mapped and the source
        events side by side against the same reference."""
        card = run.card
        kw = {"source": self.mapping_source(card, log)} if run.maps_samples else {}
        tools.generate(run, card.generate.events, output=run.path / "generated.root", force=True, log=log, **kw)
        if run.bayesian and draws(card.model) > 1:
            tools.generate(run, card.generate.events, bayes_samples=draws(card.model),
                           output=run.path / "generated.root", force=True, log=log, **kw)
        if card.train.validate:
            tools.validate(run.path, log, **kw)

    def mapping_source(self, card: Card, log: Log) -> Path:
        """The source events a mapping run is validated on: the independent reference of
        ``data.source_card`` (made when absent), else the training source itself (said in the log)."""
        if card.data.source_card:
            source_card = load_card(card.data.source_card)
            if card.validate.reference_events and reference_seed(source_card) == reference_seed(card):
                raise CardError(f"card {card.name}: its validation reference and that of data.source_card "
                                f"{card.data.source_card} have the same seed {reference_seed(card)}: Pythia would "
                                "give both nearly the same events; give the two cards different seeds")
            path = self.validation_reference(source_card, log)
            if path is not None:
                return path
        log(f"validation maps the training source {card.data.source} (give data.source_card with a validation "
            "reference for an independent source sample)")
        return Path(card.data.source)


PROCESS = TTbarProcess()

