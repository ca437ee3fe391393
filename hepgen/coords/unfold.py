"""Unfolding coordinates: a paired (particle, reco) Z -> mu mu + jets event -> x (particle
level, learned) and c (reco level, the condition).

A paired sample (``hepgen simulate cards/zjets_detector.yaml``, docs/unfolding.md) holds each
event twice: particle level in ``GenMuon`` / ``GenJet``, reco level in ``Muon`` / ``Jet``
(NanoAOD names). :func:`level` views one level as an ordinary Z+jets sample (``Muon`` /
``Jet``), so both levels use :class:`~hepgen.coords.zjets.ZJetsCoords`, each fitted on its own
level:

    x [N, D + 1]  the particle-level event in ZJetsCoords (D = 5 + 4 J; N(0, 1) in the columns
                  of absent jets), its five muon columns (log pT1, eta1, log m0, eta2, Delta phi)
                  as residuals from the reco muons in the same coordinates, scaled by the
                  residuals' standard deviations (the detector's resolution: a posterior a few
                  standard deviations wide instead of a peak 0.1 standard deviations narrow at
                  a place that moves with every event), then its jet multiplicity, dequantised: index k of n_values
                  plus u ~ U[0, 1), scaled to mean 0 and variance 1 (k = floor of the decoded
                  value: :class:`Multiplicity`). The generator learns p(n_gen | reco) with the
                  kinematics, one density, no second network.
    c [N, D + K]  the reco event in its ZJetsCoords (0 in the columns of absent jets, which
                  carry no information), then the one-hot reco jet multiplicity.

Not learned: the particle-level azimuth of the leading muon is the reco one (muon azimuths
are measured to about 1 mrad; where the two levels order their muons differently, the event is
turned about the beam by about pi, which no rotation-invariant observable sees), and the charge
of the leading muon is the reco one.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..events import EventSample
from ..errors import InputError
from .zjets import ZJetsCoords

GEN_NAMES = {"Muon": "GenMuon", "Jet": "GenJet"}  # particle level in a paired sample
RECO_NAMES = {"Muon": "Muon", "Jet": "Jet"}
SQRT12 = math.sqrt(12.0)
MUON_COLUMNS = 5  # ZJetsCoords's dimuon columns: log pT1, eta1, log m0, eta2, Delta phi
RESIDUAL_FLOOR = 1e-6  # the smallest residual scale (a perfect detector has none)


def level(sample: EventSample, names: dict[str, str], source: str = "sample") -> EventSample:
    """One level of a paired sample as a Z+jets sample (collections ``Muon``, ``Jet``), with the
    paired sample's weights, provenance and scalars; a one-line InputError naming what is missing."""
    missing = [v for v in names.values() if v not in sample.collections]
    if missing:
        raise InputError(f"{source}: no {', '.join(missing)} collection (the sample has "
                         f"{', '.join(sample.collections) or 'none'}): not a paired particle/reco sample")
    return EventSample(collections={k: sample[v] for k, v in names.items()}, weight=sample.weight,
                       info=sample.info, variations=sample.variations, scalars=sample.scalars)


class Multiplicity(nn.Module):
    """The dequantised jet-multiplicity column: index k of ``n_values`` and u ~ U[0, 1) ->
    ((k + u) / K - 1/2) sqrt(12) (mean 0, variance 1); decoded (exportably: compares and sums)
    to the multiplicity whose interval the value falls in, the outer intervals open."""

    def __init__(self, n_values: tuple[int, ...]):
        super().__init__()
        self.register_buffer("n_values", torch.tensor(list(n_values), dtype=torch.float64))

    def encode(self, k: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return ((k.double() + u.double()) / len(self.n_values) - 0.5) * SQRT12

    def forward(self, col: torch.Tensor) -> torch.Tensor:
        """The column ``[N]`` -> one-hot multiplicity ``[N, K]`` in its dtype."""
        scaled = (col / SQRT12 + 0.5) * len(self.n_values)
        ge = [torch.ones_like(col)] + [(scaled >= j).to(col.dtype) for j in range(1, len(self.n_values))]
        ge.append(torch.zeros_like(col))
        return torch.stack([ge[j] - ge[j + 1] for j in range(len(self.n_values))], dim=-1)


class UnfoldCoords(nn.Module):
    """Fitted coordinates of paired Z+jets events (see the module docstring)."""

    def __init__(self, n_jets: tuple[int, ...] = (1, 2, 3), jet_pt_min: float = 20.0, jet_dr_min: float = 0.4):
        super().__init__()
        self.gen = ZJetsCoords(n_jets, jet_pt_min, jet_dr_min=jet_dr_min)
        self.reco = ZJetsCoords(n_jets, jet_pt_min, jet_dr_min=jet_dr_min)
        self.multiplicity = Multiplicity(self.gen.n_values)
        self.n_values = self.gen.n_values
        self.max_jets = self.gen.max_jets
        self.register_buffer("residual_std", torch.ones(MUON_COLUMNS, dtype=torch.float64))

    @property
    def dim(self) -> int:
        return self.gen.dim + 1

    @property
    def cond_dim(self) -> int:
        return self.reco.dim + len(self.n_values)

    def active_columns(self) -> torch.Tensor:
        """All columns are learned for every condition (absent particle-level jets are noise)."""
        return torch.ones(self.cond_dim, self.dim, dtype=torch.bool)

    @torch.no_grad()
    def fit(self, sample: EventSample) -> "UnfoldCoords":
        gen, reco = level(sample, GEN_NAMES), level(sample, RECO_NAMES)
        self.gen.fit(gen)
        self.reco.fit(reco)
        x, _ = self.gen(*self.gen.physics(gen))
        residual = x[:, :MUON_COLUMNS] - self.reco_muons(*self.reco.physics(reco))
        self.residual_std.copy_(residual.std(0).clamp_min(RESIDUAL_FLOOR))
        return self

    def reco_muons(self, p: torch.Tensor, n: torch.Tensor, relative: bool | None = None) -> torch.Tensor:
        """The reco muons in the particle level's coordinates ``[N, 5]`` (in p's dtype, exportable):
        what the muon columns of x are residuals from."""
        raw, _ = self.gen._raw(p, n.to(p.dtype), self.relative() if relative is None else relative)
        x, _ = self.gen.chain(raw)
        return x[:, :MUON_COLUMNS]

    def absolute(self, x: torch.Tensor, p: torch.Tensor, n: torch.Tensor, relative: bool | None = None) -> torch.Tensor:
        """x ``[N, D + 1]`` with its muon residuals turned back into the particle level's
        coordinates, given the reco event (p ``[N, 2 + J, 4]``, n ``[N]``)."""
        muons = x[:, :MUON_COLUMNS] * self.residual_std.to(x.dtype) + self.reco_muons(p, n, relative)
        return torch.cat([muons, x[:, MUON_COLUMNS:]], dim=-1)

    def condition(self, p: torch.Tensor, n: torch.Tensor, relative: bool | None = None) -> torch.Tensor:
        """Reco momenta ``[N, 2 + J, 4]`` and multiplicity ``[N]`` -> c ``[N, C]``, computed in p's
        dtype with exportable ops (it runs inside the exported graph, float32); ``relative``:
        the reco coordinates' jet convention as a bool (:meth:`relative`), read once outside a
        graph being exported."""
        n = n.to(p.dtype)
        raw, valid = self.reco._raw(p, n, self.relative() if relative is None else relative)
        x, _ = self.reco.chain(raw)
        x = torch.where(valid, x, torch.zeros_like(x))
        onehot = torch.stack([((n - v).abs() < 0.5).to(p.dtype) for v in self.n_values], dim=-1)
        return torch.cat([x, onehot], dim=-1)

    def relative(self) -> bool:
        """The reco coordinates' ``jets_relative`` convention (fitted runs: True)."""
        return bool(self.reco.azimuth.jets_relative)

    def encode(self, sample: EventSample, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Paired sample -> (x ``[N, D + 1]``, c ``[N, C]``) float64; every event must have both
        levels' multiplicities in ``n_values`` (the events that pass both selections)."""
        xg, onehot = self.gen.encode(level(sample, GEN_NAMES), generator)
        u = torch.rand(len(xg), generator=generator, dtype=torch.float64)
        reco = level(sample, RECO_NAMES)
        p, n = self.reco.physics(reco)
        if not torch.isin(n, torch.tensor(self.n_values)).all():
            raise InputError(f"reco events with a jet multiplicity outside process.n_jets {list(self.n_values)}")
        muons = (xg[:, :MUON_COLUMNS] - self.reco_muons(p, n)) / self.residual_std
        x = torch.cat([muons, xg[:, MUON_COLUMNS:], self.multiplicity.encode(onehot.argmax(-1), u).unsqueeze(-1)], dim=-1)
        return x, self.condition(p, n)
