"""What a process's Pythia simulation is: :class:`Simulation`, the one object
:func:`hepgen.simulate.produce` runs.

A simulation is the Pythia settings, a batch function that turns one ``Pythia.nextBatch``
result into the kept events, and what the output file and the summary line say about them.
``produce`` owns everything around it (workers, seeds, progress, cross section, the atomic
ROOT file), the same for every process.

The batch function runs in the worker processes, which are *spawned*: it must be a
module-level function (picklable by name), called as ``select(batch, process)`` with the
card's ``process`` section (:class:`hepgen.cards.ProcessConfig`); it returns ``(sample,
flags)``: the kept events (an :class:`~hepgen.events.EventSample`, in the batch's order) and
per-tried-event flags with ``keep`` (bool ``[N]``) and ``stats(stop)``, the counts of the
first ``stop`` tried events (all for None) as an object with ``tried``, ``accepted`` and
``+=`` (:class:`PassStats`, or a process's richer counts such as Z+jets'
:class:`~hepgen.simulate.selection.SelectionStats`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import awkward as ak
import numpy as np

from ..errors import HepgenError
from ..events import EventSample

Provenance = Callable[[EventSample, Any], dict]  # (all kept events, run stats) -> info lines


@dataclass(frozen=True)
class Simulation:
    """One process's Pythia simulation (see the module docstring).

    ``settings``: Pythia ``Key = value`` lines without the seed (the card's ``simulate.pythia``
    last); ``select``: the module-level batch function; ``provenance(sample, stats)``: the
    process's lines of the file's provenance (generator, process text, versions, its counts),
    beside the ones ``produce`` writes for every process; ``summary(sample, stats)``: the end of
    the one-line summary; ``give_up_hint``: what to check when no event passes;
    ``settings_keys``: the ``process.settings`` keys that shape the events (a reference sample
    is compared on these; the others, e.g. tt̄'s network coordinates, are the training's).
    """

    settings: tuple[str, ...]
    select: Callable
    provenance: Provenance
    summary: Callable[[EventSample, Any], str]
    give_up_hint: str
    settings_keys: tuple[str, ...] = ()


@dataclass
class PassStats:
    """Counts over tried events: how many were tried and kept (add with ``+=``)."""

    tried: int = 0
    accepted: int = 0

    def __iadd__(self, other: "PassStats") -> "PassStats":
        self.tried += other.tried
        self.accepted += other.accepted
        return self


@dataclass
class PassFlags:
    """Per tried event of a batch: ``keep`` bool ``[N]``."""

    keep: np.ndarray

    def stats(self, stop: int | None = None) -> PassStats:
        """The counts of the first ``stop`` events (all by default)."""
        keep = self.keep[:stop]
        return PassStats(tried=len(keep), accepted=int(keep.sum()))


def batch_weights(batch) -> np.ndarray:
    """The event weights (Pythia's ``info.weight()``) of one ``nextBatch`` result, float64 ``[N]``."""
    return ak.to_numpy(ak.firsts(batch["info"]["weights"], axis=1)).astype(np.float64)


def select_batch(batch, process, select: Callable, weighted: bool = False):
    """One ``nextBatch`` result -> ``select(batch, process)``: (selected events, per-event flags).

    ``weighted`` False (every simulation without ``simulate.bias_pt``): a batch with an event
    weight other than 1 is a one-line :class:`HepgenError` (a biased phase space slipped in
    through ``simulate.pythia``). True: the kept events carry their Pythia weights."""
    weights = batch_weights(batch)
    if not weighted:
        if not np.all(weights == 1.0):
            raise HepgenError("Pythia produced weighted events (settings in the card's simulate.pythia?); the "
                              "reference sample is unweighted unless the card sets simulate.bias_pt")
        return select(batch, process)
    sample, flags = select(batch, process)
    return replace(sample, weight=weights[flags.keep]), flags
