"""The same Drell-Yan cross section from Pythia 8: ``sigmaGen`` of ``WeakSingleBoson:ffbar2gmZ``,
or with ``integrate.emission: real`` of ``WeakBosonAndParton:qqbar2gmZg`` and ``qg2gmZq`` (the
pair mass window as the resonance's ``23:mMin/mMax``, ``PhaseSpace:pTHatMin = pt_min``, the
2 -> 2 scales of :mod:`hepgen.integrate.emission`).

:func:`pythia_settings` gives Pythia the card's process: the beams' energy, the m_mumu window
(``PhaseSpace:mHatMin/Max``), Z -> mu mu only (``23:onMode = off``, ``23:onIfAny = 13``; the
photon exchange sums over the same open channels), the exchange (``WeakZ0:gmZmode``: 0 full
gamma*/Z, 1 photon, 2 Z), the same grid file (``PDF:pSet = LHAGrid1:<path>``; Pythia
interpolates it its own way, within 1e-3 of :class:`~hepgen.integrate.pdf.GridPDF` for the
quarks in the x range of this process), the factorisation scale ``mu_F^2 = factorMultFac * s``
(``SigmaProcess:factorScale1 = 1``), alpha_em (``SigmaProcess:alphaEMorder``), and nothing
after the hard process (``PartonLevel:all = off``, ``HadronLevel:all = off``: no ISR, FSR, MPI
or hadronisation, which leave sigmaGen unchanged but cost time). Pythia's incoming quarks are
always d u s c b, so the card must keep ``flavours: 5``. The muons are massive in Pythia
(a relative effect of ``m_mu^2 / m^2 < 1e-5``), massless here.
"""

from __future__ import annotations

import time

from ..errors import CardError
from ..simulate.pythia import make_pythia
from .config import IntegrateConfig
from .pdf import pythia_pdf_path

MB_TO_PB = 1e9
_GMZ_MODE = {"full": 0, "photon": 1, "z": 2}
_ALPHA_ORDER = {"running": 1, "mz": -1}


def pythia_settings(cfg: IntegrateConfig, sqrt_s: float) -> list[str]:
    """Pythia's settings for the card's process (see the module docstring)."""
    if cfg.emission == "real":
        # q qbar -> gamma*/Z g and q g -> gamma*/Z q with the pair mass in the window (the resonance's
        # mass range) and pT above pt_min; Pythia's 2 -> 2 scales (renormScale2 = 2, factorScale2 = 1)
        process = ["WeakBosonAndParton:qqbar2gmZg = on", "WeakBosonAndParton:qg2gmZq = on",
                   f"23:mMin = {cfg.m_min!r}", f"23:mMax = {cfg.m_max!r}", f"PhaseSpace:pTHatMin = {cfg.pt_min!r}",
                   "SigmaProcess:renormScale2 = 2", "SigmaProcess:factorScale2 = 1",
                   f"SigmaProcess:renormMultFac = {cfg.scale_factor ** 2!r}"]
    else:
        process = ["WeakSingleBoson:ffbar2gmZ = on", f"PhaseSpace:mHatMin = {cfg.m_min!r}",
                   f"PhaseSpace:mHatMax = {cfg.m_max!r}", "SigmaProcess:factorScale1 = 1"]
    return [
        f"Beams:eCM = {sqrt_s!r}",
        *process,
        "23:onMode = off",
        "23:onIfAny = 13",
        f"WeakZ0:gmZmode = {_GMZ_MODE[cfg.exchange]}",
        f"PDF:pSet = LHAGrid1:{pythia_pdf_path(cfg.pdf).resolve()}",
        f"SigmaProcess:factorMultFac = {cfg.scale_factor ** 2!r}",
        f"SigmaProcess:alphaEMorder = {_ALPHA_ORDER[cfg.alpha_em]}",
        "PartonLevel:all = off",
        "HadronLevel:all = off",
        "Print:quiet = on",
        "Next:numberCount = 0",
    ]


def pythia_cross_section(cfg: IntegrateConfig, sqrt_s: float, events: int, seed: int,
                         progress=None, extra: tuple[str, ...] = ()) -> dict[str, float]:
    """Pythia's ``sigmaGen`` +- ``sigmaErr`` (pb) after ``events`` events, with the tries and the
    time; ``progress(n)`` is called every 10 000 events; ``extra`` settings are applied last."""
    if cfg.flavours != 5:
        raise CardError(f"integrate.flavours = {cfg.flavours}: the Pythia cross-check has d u s c b quarks; use 5")
    pythia = make_pythia([*pythia_settings(cfg, sqrt_s), *extra], seed, "integrate")
    start = time.perf_counter()
    for i in range(events):
        pythia.next()
        if progress is not None and (i + 1) % 10_000 == 0:
            progress(10_000)
    info = pythia.infoPython()
    return {"sigma_pb": info.sigmaGen() * MB_TO_PB, "error_pb": info.sigmaErr() * MB_TO_PB,
            "events": events, "tried": int(info.nTried()), "seconds": time.perf_counter() - start}
