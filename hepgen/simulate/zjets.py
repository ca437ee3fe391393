"""The Z -> mu mu + jets simulation (DESIGN.md "Reference physics") as a :class:`Simulation`.

Settings: :func:`hepgen.simulate.pythia.settings`; batch function:
:func:`hepgen.simulate.selection.select` (Z muons from the record history, anti-kT jets, the
card's cuts); provenance: the generator and process, the jet-multiplicity fractions of the kept
events and of all tried events, the events dropped by Delta R_jj and without a Z muon pair.
"""

from __future__ import annotations

import json
from functools import partial

import numpy as np

from ..cards import Card
from ..events import EventSample
from . import pythia as _pythia
from .selection import SelectionStats, select
from .simulation import Simulation

GIVE_UP_HINT = "check the card's process cuts (n_jets, jet_pt_min, jet_eta_max)"


def _provenance(card: Card, sample: EventSample, stats: SelectionStats) -> dict[str, str]:
    kept = sample.n_jets
    return {
        "generator": "Pythia 8 (pythia8mc) + FastJet anti-kT",
        "process": f"pp -> Z/gamma* -> mu+ mu- + jets ({card.simulate.hard_process}), "
                   f"sqrt(s) = {card.process.sqrt_s:g} GeV",
        **_pythia.versions(),
        "n_jets_fractions": json.dumps({str(k): float(np.mean(kept == k)) for k in card.process.n_jets}),
        "n_jets_tried": json.dumps({str(k): v for k, v in sorted(stats.by_njets.items())}),
        "dropped_dr_jj": str(stats.dropped_dr),
        "no_z_pair": str(stats.no_z_pair),
    }


def _summary(card: Card, sample: EventSample, stats: SelectionStats) -> str:
    kept = sample.n_jets
    fractions = " / ".join(f"{np.mean(kept == k):.1%}" for k in card.process.n_jets)
    return f"{'/'.join(map(str, card.process.n_jets))} jets: {fractions}"


def zjets_simulation(card: Card) -> Simulation:
    """The card's Z+jets simulation: Pythia 8 at hadron level, FastJet, the card's selection."""
    return Simulation(
        settings=tuple(_pythia.settings(card)),
        select=select,
        provenance=partial(_provenance, card),
        summary=partial(_summary, card),
        give_up_hint=GIVE_UP_HINT,
    )
