"""The detector's card section ``detector:``: a frozen :class:`DetectorConfig` with CMS-like defaults.

Every default is a value of Delphes's CMS card, ``cards/delphes_card_CMS.tcl`` of
github.com/delphes/delphes (commit 0593ac3a, the card with separate ECal/HCal modules), named
by its module in the comment beside it; docs/detector.md writes out every formula. The
formulas that use these numbers are in :mod:`hepgen.detector.response`.

Shapes of the parametrisations (all in |eta| regions given by their *upper* edges: region i is
``eta_regions[i-1] < |eta| <= eta_regions[i]``, region 0 starts at 0, and |eta| above the last
edge is outside the acceptance):

* :class:`Efficiency`: a table ``efficiency[region][pt bin]`` with pT bins
  ``pt_edges[j] < pT <= pt_edges[j+1]`` (the last bin open above); ``pT <= pt_edges[0]`` and
  outside the regions: 0;
* :class:`TrackResolution`: sigma(pT)/pT = sqrt(a^2 + (b pT)^2), one (a, b) per region;
* :class:`CaloResolution`: sigma(E) = s(eta) sqrt(a^2 E^2 + b^2 E + c^2) with the eta shape
  s = c0 + c2 (|eta| - eta0)^2, one (a, b, c) and one (c0, c2, eta0) per region, and the
  thresholds a measured energy must pass (E >= energy_min and E >= significance_min sigma(E)).

:func:`detector_config` reads a card's ``detector`` section strictly (unknown keys, types,
ranges, and the shapes of the region lists: one-line :class:`~hepgen.errors.CardError`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Mapping

from ..cardfields import ranged
from ..cards import Card, build_section
from ..errors import CardError



@dataclass(frozen=True)
class Efficiency:
    """An efficiency table in |eta| regions x pT bins (see the module docstring)."""

    eta_regions: tuple[float, ...]
    pt_edges: tuple[float, ...]  # GeV
    efficiency: tuple[tuple[float, ...], ...]  # [region][pt bin], in [0, 1]


@dataclass(frozen=True)
class TrackResolution:
    """sigma(pT)/pT = sqrt(a^2 + (b pT)^2) per |eta| region (b in 1/GeV)."""

    eta_regions: tuple[float, ...]
    a: tuple[float, ...]
    b: tuple[float, ...]


@dataclass(frozen=True)
class CaloResolution:
    """sigma(E) = (c0 + c2 (|eta| - eta0)^2) sqrt(a^2 E^2 + b^2 E + c^2) per |eta| region, and
    the thresholds of a measured energy (E in GeV)."""

    eta_regions: tuple[float, ...]
    a: tuple[float, ...]  # constant term
    b: tuple[float, ...]  # stochastic term, sqrt(GeV)
    c: tuple[float, ...]  # noise term, GeV
    shape: tuple[tuple[float, ...], ...]  # [region] = (c0, c2, eta0)
    energy_min: float = ranged(0.0, ge=0)  # GeV
    significance_min: float = ranged(0.0, ge=0)  # E / sigma(E)


@dataclass(frozen=True)
class Isolation:
    """Delphes's Isolation module: the scalar pT sum of the particle-flow candidates with
    pT > pt_min within Delta R <= dr_max of a candidate (itself excluded), divided by the
    candidate's pT, must be <= pt_ratio_max."""

    dr_max: float = ranged(0.5, gt=0)  # MuonIsolation DeltaRMax
    pt_min: float = ranged(0.5, ge=0)  # MuonIsolation PTMin, GeV
    pt_ratio_max: float = ranged(0.25, ge=0)  # MuonIsolation PTRatioMax


@dataclass(frozen=True)
class Muons:
    """Muons: a track (tracking efficiency, momentum smearing), then the muon identification
    efficiency (at the smeared pT), then the isolation."""

    tracking: Efficiency = Efficiency(  # MuonTrackingEfficiency
        eta_regions=(1.5, 2.5), pt_edges=(0.1, 1.0), efficiency=((0.75, 0.99), (0.70, 0.98)))
    resolution: TrackResolution = TrackResolution(  # MuonMomentumSmearing
        eta_regions=(0.5, 1.5, 2.5), a=(0.01, 0.015, 0.025), b=(1.0e-4, 1.5e-4, 3.5e-4))
    identification: Efficiency = Efficiency(  # MuonEfficiency (below 1 TeV)
        eta_regions=(1.5, 2.4), pt_edges=(10.0,), efficiency=((0.95,), (0.95,)))
    isolation: Isolation = Isolation()  # MuonIsolation


@dataclass(frozen=True)
class ChargedHadrons:
    tracking: Efficiency = Efficiency(  # ChargedHadronTrackingEfficiency
        eta_regions=(1.5, 2.5), pt_edges=(0.1, 1.0), efficiency=((0.70, 0.95), (0.60, 0.85)))
    resolution: TrackResolution = TrackResolution(  # ChargedHadronMomentumSmearing
        eta_regions=(0.5, 1.5, 2.5), a=(0.01, 0.015, 0.025), b=(1.5e-4, 2.5e-4, 5.5e-4))


@dataclass(frozen=True)
class Electrons:
    tracking: Efficiency = Efficiency(  # ElectronTrackingEfficiency
        eta_regions=(1.5, 2.5), pt_edges=(0.1, 1.0, 100.0),
        efficiency=((0.73, 0.95, 0.99), (0.50, 0.83, 0.90)))
    resolution: TrackResolution = TrackResolution(  # ElectronMomentumSmearing
        eta_regions=(0.5, 1.5, 2.5), a=(0.03, 0.05, 0.15), b=(1.3e-3, 1.7e-3, 3.1e-3))


# ECal ResolutionFormula: barrel (1 + 0.64 eta^2), endcap (2.16 + 5.6 (|eta| - 2)^2) times
# sqrt(E^2 0.008^2 + E 0.11^2 + 0.40^2); forward sqrt(E^2 0.107^2 + E 2.08^2); EnergyMin 0.5,
# EnergySignificanceMin 2.0
ECAL = CaloResolution(
    eta_regions=(1.5, 2.5, 5.0), a=(0.008, 0.008, 0.107), b=(0.11, 0.11, 2.08), c=(0.40, 0.40, 0.0),
    shape=((1.0, 0.64, 0.0), (2.16, 5.6, 2.0), (1.0, 0.0, 0.0)), energy_min=0.5, significance_min=2.0)
# HCal ResolutionFormula: sqrt(E^2 0.050^2 + E 1.50^2) (|eta| <= 3), sqrt(E^2 0.130^2 + E 2.70^2)
# (3 < |eta| <= 5); EnergyMin 1.0, EnergySignificanceMin 2.0
HCAL = CaloResolution(
    eta_regions=(3.0, 5.0), a=(0.050, 0.130), b=(1.50, 2.70), c=(0.0, 0.0),
    shape=((1.0, 0.0, 0.0), (1.0, 0.0, 0.0)), energy_min=1.0, significance_min=2.0)


@dataclass(frozen=True)
class DetectorConfig:
    """The whole detector (card section ``detector``); see docs/detector.md."""

    muons: Muons = Muons()
    charged_hadrons: ChargedHadrons = ChargedHadrons()
    electrons: Electrons = Electrons()
    ecal: CaloResolution = ECAL  # photons, and electrons without a track
    hcal: CaloResolution = HCAL  # neutral hadrons, and charged hadrons without a track


# --------------------------------------------------------------------------------------------
# reading and checking


def detector_config(card: Card) -> DetectorConfig:
    """The card's ``detector`` section as a checked :class:`DetectorConfig`.

    Keys the section leaves out keep their defaults, down to single numbers
    (``detector: {muons: {isolation: {pt_ratio_max: 0.1}}}`` changes one value); a list given
    replaces the default list, and the region lists must then agree with each other.
    """
    src = f"card {card.name}"
    cfg = build_section(DetectorConfig, _merged(DetectorConfig(), card.detector), "detector", src)
    check(cfg, src)
    return cfg


def _merged(default, data):
    """``data`` over the default section, key by key (sub-sections recursively); a value that
    is not a mapping is left to :func:`build_section` to report, unknown keys too."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        return data
    out = dict(data)
    for f in dataclasses.fields(default):
        value = getattr(default, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = _merged(value, data.get(f.name))
        elif f.name not in data:
            out[f.name] = value
    return out


def check(cfg: DetectorConfig, src: str = "detector") -> None:
    """The region lists of every parametrisation: ordered edges, one value per region,
    non-negative numbers, efficiencies in [0, 1], resolutions covering the tracking
    acceptance. One-line :class:`CardError` naming the key."""
    for name, tracker in (("muons", cfg.muons), ("charged_hadrons", cfg.charged_hadrons),
                          ("electrons", cfg.electrons)):
        key = f"detector.{name}"
        _check_efficiency(tracker.tracking, f"{key}.tracking", src)
        _check_track_resolution(tracker.resolution, f"{key}.resolution", src)
        if tracker.resolution.eta_regions[-1] < tracker.tracking.eta_regions[-1]:
            raise CardError(f"{src}: {key}.resolution.eta_regions end at |eta| = "
                            f"{tracker.resolution.eta_regions[-1]:g}, inside the tracking acceptance "
                            f"|eta| <= {tracker.tracking.eta_regions[-1]:g} ({key}.tracking.eta_regions)")
    _check_efficiency(cfg.muons.identification, "detector.muons.identification", src)
    _check_calo(cfg.ecal, "detector.ecal", src)
    _check_calo(cfg.hcal, "detector.hcal", src)


def _check_edges(edges, key: str, src: str, positive: bool) -> None:
    if len(edges) == 0:
        raise CardError(f"{src}: {key} is empty (give at least one edge)")
    if not all(math.isfinite(e) and (e > 0 if positive else e >= 0) for e in edges):
        raise CardError(f"{src}: {key} = {list(edges)} must be finite and "
                        f"{'positive' if positive else 'non-negative'}")
    if any(b <= a for a, b in zip(edges, edges[1:])):
        raise CardError(f"{src}: {key} = {list(edges)} must be strictly increasing")


def _check_values(values, n: int, key: str, src: str, upper: float = math.inf) -> None:
    if len(values) != n:
        raise CardError(f"{src}: {key} has {len(values)} values for {n} |eta| regions (eta_regions)")
    if not all(math.isfinite(v) and 0 <= v <= upper for v in values):
        allowed = f"in [0, {upper:g}]" if math.isfinite(upper) else "finite and non-negative"
        raise CardError(f"{src}: {key} = {list(values)} must be {allowed}")


def _check_efficiency(eff: Efficiency, key: str, src: str) -> None:
    _check_edges(eff.eta_regions, f"{key}.eta_regions", src, positive=True)
    _check_edges(eff.pt_edges, f"{key}.pt_edges", src, positive=False)
    n = len(eff.eta_regions)
    if len(eff.efficiency) != n:
        raise CardError(f"{src}: {key}.efficiency has {len(eff.efficiency)} rows for {n} |eta| regions "
                        f"(eta_regions)")
    for i, row in enumerate(eff.efficiency):
        if len(row) != len(eff.pt_edges):
            raise CardError(f"{src}: {key}.efficiency[{i}] has {len(row)} values for "
                            f"{len(eff.pt_edges)} pT bins (pt_edges)")
        _check_values(row, len(row), f"{key}.efficiency[{i}]", src, upper=1.0)


def _check_track_resolution(res: TrackResolution, key: str, src: str) -> None:
    _check_edges(res.eta_regions, f"{key}.eta_regions", src, positive=True)
    for name in ("a", "b"):
        _check_values(getattr(res, name), len(res.eta_regions), f"{key}.{name}", src)


def _check_calo(calo: CaloResolution, key: str, src: str) -> None:
    _check_edges(calo.eta_regions, f"{key}.eta_regions", src, positive=True)
    n = len(calo.eta_regions)
    for name in ("a", "b", "c"):
        _check_values(getattr(calo, name), n, f"{key}.{name}", src)
    if len(calo.shape) != n:
        raise CardError(f"{src}: {key}.shape has {len(calo.shape)} rows for {n} |eta| regions (eta_regions)")
    for i, row in enumerate(calo.shape):
        if len(row) != 3:
            raise CardError(f"{src}: {key}.shape[{i}] = {list(row)} must be three numbers (c0, c2, eta0)")
        _check_values(row, 3, f"{key}.shape[{i}]", src)
