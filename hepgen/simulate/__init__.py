"""Reference samples with Pythia 8: Z -> mu mu + jets (with FastJet) and dileptonic tt̄.

``produce(card, events=..., seed=..., output=..., jobs=..., force=..., simulation=...)`` is what
``hepgen simulate`` runs, and :func:`training_file` when a card's training sample is absent; the process's :class:`Simulation` says what is simulated (None: the
one :func:`simulation_for` the card's ``process.name``). Modules: :mod:`.simulation` (the
Simulation object), :mod:`.pythia` (seeds, the configured generator, the Z+jets settings),
:mod:`.selection` (the flat record, Z muons from the history, anti-kT jets, cuts),
:mod:`.zjets` and :mod:`.ttbar` (the two simulations), :mod:`.run` (workers, progress,
provenance, the atomic ROOT file), :mod:`.reference` (the independent validation reference).
"""

from .run import SIMULATIONS, produce, simulation_for, training_file
from .simulation import Simulation
from .ttbar import ttbar_simulation
from .zjets import zjets_simulation

__all__ = ["SIMULATIONS", "Simulation", "produce", "simulation_for", "training_file", "ttbar_simulation", "zjets_simulation"]
