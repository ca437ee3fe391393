"""The card section ``integrate:`` of ``hepgen integrate``: a frozen :class:`IntegrateConfig`.

The collider energy is the card's ``process.sqrt_s``; the seed the card's ``seed``. Integrand
calls: VEGAS adapts its grid in ``vegas_iterations`` rounds of ``training_calls /
vegas_iterations`` points, MadNIS trains ``madnis_steps`` steps of ``training_calls /
madnis_steps`` points (buffered steps call no integrand), and each then draws ``sample_calls``
weighted events, so both spend the same number of calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..cardfields import ranged
from ..cards import Card, build_section
from ..errors import CardError
from .pdf import PYTHIA_DEFAULT_SET

CHANNELS = ("photon", "z")


@dataclass(frozen=True)
class IntegrateConfig:
    """pp -> gamma*/Z -> mu+ mu- (+ one parton) at LO (``hepgen integrate``)."""

    m_min: float = ranged(60.0, ge=10.0)  # GeV, lower edge of the m_mumu window (alpha_em runs above 9.5 GeV)
    m_max: float = ranged(120.0, gt=10.0)  # GeV
    # LHAPDF6 grid file: a path, or a file name in Pythia's pdfdata folder (default: Pythia's PDF:pSet 13)
    pdf: str = PYTHIA_DEFAULT_SET
    scale_factor: float = ranged(1.0, gt=0.0)  # mu_F = scale_factor * m_mumu
    alpha_em: Literal["running", "mz"] = "running"  # Pythia's SigmaProcess:alphaEMorder 1 | -1
    exchange: Literal["full", "photon", "z"] = "full"  # Pythia's WeakZ0:gmZmode 0 | 1 | 2
    flavours: int = ranged(5, ge=1, le=5)  # incoming quarks d u s c b (the first n)
    # none: q qbar -> mu mu; real: one real emission, q qbar -> mu mu g and q g -> mu mu q (emission.py)
    emission: Literal["none", "real"] = "none"
    pt_min: float = ranged(20.0, gt=0.0)  # GeV, the parton's pT cut with emission: real
    channels: tuple[str, ...] = CHANNELS  # phase-space mappings: photon pole, Z Breit-Wigner
    training_calls: int = ranged(200_000, ge=100)  # integrand calls to adapt VEGAS / train MadNIS
    sample_calls: int = ranged(1_000_000, ge=100)  # weighted events each method draws
    vegas_iterations: int = ranged(10, ge=1)
    madnis_steps: int = ranged(400, ge=1)  # online training steps
    madnis_buffered_steps: int = ranged(3, ge=0)  # steps on buffered samples after each online step
    madnis_lr: float = ranged(1e-3, gt=0.0)
    madnis_layers: int = ranged(3, ge=1)  # coupling blocks of the flow
    weighted_events: int = ranged(100_000, ge=1)  # MadNIS events written to weighted.lhe / .root
    unweighted_events: int = ranged(10_000, ge=0)  # at most this many unweighted events (0: none)
    pythia_events: int = ranged(0, ge=0)  # Pythia 8 cross-check: events for sigmaGen (0: off)
    output: str = "integrate/dy_lo"  # output folder
    threads: int = ranged(1, ge=0)  # torch CPU threads; 0 = all cores


def integrate_config(card: Card) -> IntegrateConfig:
    """The card's ``integrate`` section, checked (one-line :class:`CardError`)."""
    src = f"card {card.name}"
    cfg = build_section(IntegrateConfig, card.integrate, "integrate", src)
    if cfg.m_max <= cfg.m_min:
        raise CardError(f"{src}: integrate.m_max = {cfg.m_max} must be above integrate.m_min = {cfg.m_min}")
    if cfg.m_max >= card.process.sqrt_s:
        raise CardError(f"{src}: integrate.m_max = {cfg.m_max} GeV is not below process.sqrt_s = {card.process.sqrt_s}")
    s = card.process.sqrt_s ** 2
    if cfg.emission == "real" and cfg.pt_min >= (s - cfg.m_min ** 2) / (2 * card.process.sqrt_s):
        raise CardError(f"{src}: integrate.pt_min = {cfg.pt_min} GeV is beyond the kinematic limit of a pair of "
                        f"m_min = {cfg.m_min} GeV at sqrt_s = {card.process.sqrt_s} GeV")
    bad = [c for c in cfg.channels if c not in CHANNELS]
    if bad or not cfg.channels or len(set(cfg.channels)) != len(cfg.channels):
        raise CardError(f"{src}: integrate.channels = {list(cfg.channels)}: give distinct channels of "
                        f"{', '.join(CHANNELS)}")
    return cfg
