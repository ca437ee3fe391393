"""Dileptonic tt̄ with Pythia 8 at the hard-process-plus-decay level, as a :class:`Simulation`.

pp -> t tbar (``Top:gg2ttbar``, ``Top:qqbar2ttbar``, LO), t -> b W+ (``6:onIfMatch = 5 24``:
not the CKM-suppressed t -> s W, d W, about 0.2 % of decays, whose events have no b), W+ -> l+
nu (and the charge conjugates), l = e and/or mu per the card's ``process.settings.leptons``
(:class:`hepgen.dilepton.TTbarSettings`). The kept objects are the six decay products in the
fixed order of :data:`hepgen.dilepton.ROLES` (collection ``GenPart``), found from the record
history: a b quark whose mother (through copies of itself) is a top, a lepton or neutrino whose
mother is a W whose mother is a top of the same charge sign; never "the first leptons". Every
event has them (W -> tau is switched off); an event that does not is a one-line
:class:`~hepgen.errors.HepgenError` (settings in ``simulate.pythia`` that change the record).

Settings (:func:`ttbar_settings`) and why (docs/ttbar.md):

* ``widths: narrow`` forces the top and W widths to :data:`hepgen.dilepton.NARROW_WIDTH`
  (``6:doForceWidth``, ``6:mWidth``, the same for 24): every event has m(b l+ nu) = 173.0 and
  m(l+ nu) = 80.385 GeV. ``breit_wigner`` keeps Pythia's widths (Breit-Wigner top and W masses).
* ``PartonLevel:ISR``, ``FSR``, ``MPI`` and ``HadronLevel:all`` off: the hard process and the
  decays, nothing else (the ``simulate.hadronization`` and ``simulate.mpi`` keys are not used).
* ``PartonLevel:Remnants = off``: no beam remnants, so no primordial kT either. With ISR off the
  remnants only add a transverse kick of about 2 GeV to the whole tt̄ system (a model of soft
  initial-state physics, out of place without ISR) and eight particles to every record; without
  them the six decay products balance in pT exactly, as in a LO parton-level (LHE) sample, and
  Pythia runs about 30 % faster.
* ``Check:event = off``: Pythia's event check compares the record with the beams, which a
  record without remnants cannot match (every event would fail); the record is checked here.
* the card's ``simulate.pythia`` lines last, so they can change anything.
"""

from __future__ import annotations

import json
from functools import partial

import numpy as np

from ..cards import Card, ProcessConfig, build_section
from ..dilepton import NARROW_WIDTH, ROLES, TTbarSettings, assign, role_of, to_sample
from ..errors import HepgenError
from ..events import EventSample
from ..kinematics import epxpypz_to_ptetaphim, invariant_mass
from . import pythia as _pythia
from .selection import FlatRecord, origin
from .simulation import PassFlags, PassStats, Simulation

TOP_ID, W_ID = 6, 24
LEPTON_IDS = {"e": 11, "mu": 13}
# per role (ROLES order): the PDG id of the mother (through copies of the particle itself) and of
# the mother's mother (0: not checked; a b quark comes from the top directly)
_MOTHER = np.array([TOP_ID, W_ID, W_ID, -TOP_ID, -W_ID, -W_ID])
_GRANDMOTHER = np.array([0, TOP_ID, TOP_ID, 0, -TOP_ID, -TOP_ID])


def ttbar_settings(card: Card) -> TTbarSettings:
    """The card's ``process.settings`` as :class:`TTbarSettings` (one-line CardError if bad)."""
    return build_section(TTbarSettings, card.process.settings, "process.settings", f"card {card.name}")


def settings(card: Card) -> list[str]:
    """The Pythia settings (``Key = value`` strings) of a tt̄ card, without the seed."""
    tt = ttbar_settings(card)
    lines = [
        f"Beams:eCM = {card.process.sqrt_s:g}",
        "Top:gg2ttbar = on",
        "Top:qqbar2ttbar = on",
        "6:onMode = off",
        "6:onIfMatch = 5 24",
        "24:onMode = off",
        "24:onIfAny = " + " ".join(str(LEPTON_IDS[lep]) for lep in tt.leptons),
    ]
    if tt.widths == "narrow":
        for pid in (TOP_ID, W_ID):
            lines += [f"{pid}:doForceWidth = on", f"{pid}:mWidth = {NARROW_WIDTH:g}"]
    lines += [
        "PartonLevel:ISR = off",
        "PartonLevel:FSR = off",
        "PartonLevel:MPI = off",
        "PartonLevel:Remnants = off",
        "Check:event = off",
        "HadronLevel:all = off",
        "Print:quiet = on",
        "Next:numberCount = 0",
    ]
    return lines + list(card.simulate.pythia)


def decay_products(rec: FlatRecord) -> np.ndarray:
    """Global particle indices ``[N, 6]``: each event's six decay products in :data:`ROLES`
    order, from the record history (see the module docstring). A missing or doubled role is a
    one-line :class:`HepgenError` naming the first such event of the batch."""
    final = np.flatnonzero(rec.status > 0)
    role = role_of(rec.pid[final])
    cand, role = final[role >= 0], role[role >= 0]
    mother = origin(rec, cand)
    grandmother = origin(rec, mother)
    ok = (rec.pid[mother] == _MOTHER[role]) & ((_GRANDMOTHER[role] == 0) | (rec.pid[grandmother] == _GRANDMOTHER[role]))
    cand, role = cand[ok], role[ok]
    event = rec.event[cand]
    seen = np.zeros((rec.n_events, len(ROLES)), dtype=np.int64)
    np.add.at(seen, (event, role), 1)
    if (seen != 1).any():
        i, k = (int(v) for v in np.argwhere(seen != 1)[0])
        raise HepgenError(
            f"Pythia event {i} of a batch has {int(seen[i, k])} {ROLES[k]} from t -> b W, W -> l nu, a dileptonic tt̄ "
            "event has one (settings in the card's simulate.pythia that change the decays or the record?)"
        )
    idx = np.empty((rec.n_events, len(ROLES)), dtype=np.int64)
    idx[event, role] = cand
    return idx


def select(batch, process: ProcessConfig) -> tuple[EventSample, PassFlags]:
    """One ``nextBatch`` result -> (the ``GenPart`` sample of :func:`hepgen.dilepton.to_sample`,
    every event kept). Momenta in GeV: (pt, eta, phi) from Pythia's (E, px, py, pz), the mass
    Pythia's generated mass, float64."""
    rec = FlatRecord.from_batch(batch)
    idx = decay_products(rec)
    pt, eta, phi, _m = epxpypz_to_ptetaphim(rec.e[idx], rec.px[idx], rec.py[idx], rec.pz[idx])
    p = np.stack([pt, eta, phi, rec.m[idx]], axis=-1)
    return to_sample(p, rec.pid[idx]), PassFlags(keep=np.ones(rec.n_events, dtype=bool))


def _masses(sample: EventSample) -> tuple[np.ndarray, np.ndarray]:
    """(m(b l+ nu), m(l+ nu)) [N], GeV."""
    p, _ = assign(sample)
    obj = [tuple(p[:, k, j] for j in range(4)) for k in range(3)]
    return invariant_mass(*obj), invariant_mass(*obj[1:])


def _provenance(card: Card, sample: EventSample, stats: PassStats) -> dict[str, str]:
    tt = ttbar_settings(card)
    _, pdg = assign(sample)
    flavours = np.abs(pdg[:, 1]) * 100 + np.abs(pdg[:, 4])  # l+ and l- flavour, e.g. 1113
    names = {1111: "ee", 1113: "e+mu-", 1311: "mu+e-", 1313: "mumu"}
    return {
        "generator": "Pythia 8 (pythia8mc), hard process and decays (no ISR, FSR, MPI, remnants, hadronisation)",
        "process": f"pp -> t tbar -> b l+ nu bbar l- nubar (l = {', '.join(tt.leptons)}), widths {tt.widths} "
                   f"(top and W{f': {NARROW_WIDTH:g} GeV' if tt.widths == 'narrow' else ': Pythia Breit-Wigner'}), "
                   f"sqrt(s) = {card.process.sqrt_s:g} GeV",
        **_pythia.versions(with_fastjet=False),
        "particles": "GenPart: " + ", ".join(ROLES),
        "lepton_channels": json.dumps({v: float(np.mean(flavours == k)) for k, v in names.items()}),
    }


def _summary(card: Card, sample: EventSample, stats: PassStats) -> str:
    m_t, m_w = _masses(sample)
    q = lambda m: "{:.2f}-{:.2f}".format(*np.percentile(m, [5, 95]))  # noqa: E731
    return f"widths {ttbar_settings(card).widths}: m(b l+ nu) 5-95 % {q(m_t)} GeV, m(l+ nu) {q(m_w)} GeV"


def ttbar_simulation(card: Card) -> Simulation:
    """The card's tt̄ simulation (see the module docstring)."""
    return Simulation(
        settings=tuple(settings(card)),
        select=select,
        provenance=partial(_provenance, card),
        summary=partial(_summary, card),
        give_up_hint="the record has no dileptonic tt̄ decays (settings in the card's simulate.pythia?)",
        settings_keys=("widths", "leptons"),
    )
