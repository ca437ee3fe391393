"""Training data per process: the Z+jets reference file, or toy data made in code.

``zjets``: the reference sample of the card (``data.path``); when the file is absent and it is
the card's own simulation output, the simulation is run first (:func:`hepgen.simulate.produce`).
``toy_ramp``: x1 ~ U[0, 1], x2 with p(x2) = 2 x2 on [0, 1]. ``toy_ring``: a Gaussian ring of
radius 1 and width 0.1 in the plane. Toys use ``simulate.events`` events and the card's seed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .cards import Card
from .errors import InputError

TOYS = ("toy_ramp", "toy_ring")
RING_RADIUS, RING_WIDTH = 1.0, 0.1


def toy_data(name: str, n: int, seed: int) -> np.ndarray:
    """``[n, 2]`` float64 toy events, deterministic in (name, n, seed)."""
    rng = np.random.default_rng([seed, TOYS.index(name)])
    if name == "toy_ramp":
        return np.stack([rng.uniform(size=n), np.sqrt(rng.uniform(size=n))], axis=-1)
    r = rng.normal(RING_RADIUS, RING_WIDTH, size=n)
    theta = rng.uniform(0.0, 2 * math.pi, size=n)
    return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=-1)


def toy_density(name: str, x: np.ndarray) -> np.ndarray:
    """True density of the toy at x ``[N, 2]``."""
    if name == "toy_ramp":
        inside = (x[:, 0] >= 0) & (x[:, 0] <= 1) & (x[:, 1] >= 0) & (x[:, 1] <= 1)
        return np.where(inside, 2 * x[:, 1], 0.0)
    r = np.hypot(x[:, 0], x[:, 1])
    gauss = np.exp(-0.5 * ((r - RING_RADIUS) / RING_WIDTH) ** 2) / (RING_WIDTH * math.sqrt(2 * math.pi))
    return np.where(r > 0, gauss / (2 * math.pi * np.where(r > 0, r, 1.0)), 0.0)


def load_training_data(card: Card, log=print):
    """The card's training data: an EventSample (zjets) or an ``[N, 2]`` array (toys)."""
    name = card.process.name
    if name in TOYS:
        return toy_data(name, card.simulate.events, card.seed)
    path = Path(card.data.path)
    if not path.exists():
        if Path(card.simulate.output) != path:
            raise InputError(f"data.path {path} does not exist (and is not the card's simulate.output to produce)")
        try:
            from .simulate import produce
        except ImportError:
            raise InputError(f"{path} does not exist and hepgen.simulate is not available; run 'hepgen simulate' first") from None
        log(f"{path} is absent: running the card's simulation first ({card.simulate.events} events)")
        produce(card)
    if card.data.format == "lhe":
        from .io.lhe import read_lhe

        sample = read_lhe(path)
    else:
        from .io.root import read_events

        sample = read_events(path, tree=card.data.tree, branches=dict(card.data.branches) or None)
    if card.data.max_events and len(sample) > card.data.max_events:
        sample = sample.select(np.arange(card.data.max_events))
    sample.check_finite(str(path))
    keep = np.isin(sample.n_jets, card.process.n_jets) & (sample.multiplicity("Muon") >= 2)
    if not keep.all():
        log(f"{path}: kept {int(keep.sum())} of {len(sample)} events with 2 muons and n_jets in {list(card.process.n_jets)}")
        sample = sample.select(keep)
    return sample


def make_coords(card: Card):
    """Unfitted coordinates for the card's process."""
    from .coords import ToyCoords, ZJetsCoords

    if card.process.name in TOYS:
        return ToyCoords(2)
    return ZJetsCoords(card.process.n_jets, card.process.jet_pt_min, jet_dr_min=card.process.jet_dr_min)
