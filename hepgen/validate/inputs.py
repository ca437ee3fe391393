"""What to validate: generated samples (ROOT / LHE files or a run folder) and references.

Bayesian samples come in two shapes, both supported:

* one file with an integer per-event draw index (ROOT branch ``bayes_draw``, or, for LHE, the
  same name in the events' info) -> the draw of each event;
* K files, one per posterior draw -> the file index is the draw.

A run folder (``runs/<name>-<time>/`` from ``hepgen train``) provides its generated sample and
its held-out test split (the reference when no other is given, else a second, smaller check).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .. import processes
from ..cards import Card, load_card
from ..errors import InputError
from ..events import EventSample
from ..io.lhe import read_lhe
from ..io.root import read_events
from ..processes.base import validation_sample_of
from .histograms import effective_size

DRAW_BRANCH = "bayes_draw"
ROOT_SUFFIXES = (".root",)
LHE_SUFFIXES = (".lhe", ".lhe.gz", ".lhe.gzip")
# where a run folder keeps its samples (first match wins)
RUN_GENERATED = ("generated.root", "generated*.root", "generated.lhe", "generated.lhe.gz")
RUN_REFERENCE = ("test.root", "heldout.root")


@dataclass(frozen=True)
class Generated:
    """A generated sample; ``draw`` int ``[N]`` (posterior draw per event) or None;
    ``shared_noise``: whether every draw was generated from the same noise (K files of one
    ``hepgen generate --bayes-samples K``: same seed, event range and noise blocks)."""

    sample: EventSample
    draw: np.ndarray | None
    sources: tuple[Path, ...]
    shared_noise: bool = False

    @property
    def n_draws(self) -> int:
        return 0 if self.draw is None else len(np.unique(self.draw))


@dataclass(frozen=True)
class ReadAs:
    """How to read a ROOT file: its tree and branch mapping (None: the layout is detected)."""

    tree: str = "Events"
    branches: Mapping[str, object] | None = None


def _is_lhe(path: Path) -> bool:
    return any(path.name.endswith(s) for s in LHE_SUFFIXES)


def _read_draw_branch(path: Path, tree: str, n: int) -> np.ndarray | None:
    import uproot

    # the file was just read successfully by read_events, so only the optional branch is probed
    with uproot.open(path) as f:
        t = f[tree]
        if DRAW_BRANCH in t.keys():
            draw = t[DRAW_BRANCH].array(library="np")
            if draw.ndim != 1 or draw.dtype.kind not in "iu" or len(draw) != n:
                raise InputError(f"{path}: tree {tree!r}: branch {DRAW_BRANCH} is {draw.dtype}, expected one "
                                 "integer per event (the posterior draw)")
            return np.asarray(draw, dtype=np.int64)
    return None


def check_weights(weight: np.ndarray, path) -> None:
    """A one-line :class:`InputError` for event weights (float64 ``[N]``, finite) that cannot
    normalise a histogram: all zero, or summing to <= 0 (negative weights are fine otherwise)."""
    if not np.any(weight != 0):
        raise InputError(f"{path}: all {len(weight)} event weights are zero; the sample describes no events")
    total = float(weight.sum())
    if not total > 0:
        raise InputError(f"{path}: the event weights sum to {total:.6g}, not > 0; the sample has no normalisable density")


def weight_summary(sample: EventSample) -> dict:
    """The weights of a sample for the report: its effective sample size, the fraction of events
    with w < 0, and whether it is weighted (any weight other than 1)."""
    w = sample.weight
    return {"effective_events": effective_size(w), "negative_fraction": float(np.mean(w < 0)) if len(w) else 0.0,
            "weighted": bool(np.any(w != 1.0))}


def read_sample(path: str | Path, read: ReadAs | None = None, log=lambda msg: None,
                process=None) -> tuple[EventSample, np.ndarray | None]:
    """One file as (sample, per-event draw index or None). ROOT or LHE, by suffix.

    ``read`` gives a ROOT file's tree and branch mapping. The sample is checked by ``process``
    (default: the process of a card with no process section), which may complete it
    (:func:`~hepgen.processes.base.validation_sample_of`; Z+jets: a sample without a Muon
    collection is an error naming the file, one without a Jet collection, a dimuon ntuple, gets
    an empty one, said through ``log``).
    """
    path = Path(path)
    read = read or ReadAs()
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a sample file")
    if any(path.name.endswith(s) for s in ROOT_SUFFIXES):
        sample = read_events(path, tree=read.tree, branches=read.branches or None)
        draw = _read_draw_branch(path, read.tree, len(sample))
    elif _is_lhe(path):
        sample = read_lhe(path)
        draw = None
        extra = getattr(sample, "info", {}) or {}
        if "bayes_draw" in extra and extra["bayes_draw"].isdigit():
            draw = np.full(len(sample), int(extra["bayes_draw"]))
    else:
        raise InputError(f"{path}: unknown sample format (expected .root, .lhe or .lhe.gz)")
    sample.check_finite(str(path))
    if len(sample) == 0:
        raise InputError(f"{path}: the sample has no events")
    check_weights(sample.weight, path)
    process = process or processes.get(Card().process.name)
    return validation_sample_of(process, sample, str(path), log), draw


def read_generated(paths: Sequence[str | Path], read: ReadAs | None = None, process=None) -> Generated:
    """One file, or K files (one per posterior draw), as a :class:`Generated` (checked by ``process``
    as in :func:`read_sample`)."""
    paths = [Path(p) for p in paths]
    samples, draws = [], []
    for i, p in enumerate(paths):
        s, d = read_sample(p, read, process=process)
        samples.append(s)
        if len(paths) > 1:
            d = np.full(len(s), int(s.info.get(DRAW_BRANCH, i)) if str(s.info.get(DRAW_BRANCH, "")).isdigit() else i)
        draws.append(d)
    sample = samples[0] if len(samples) == 1 else EventSample.concatenate(samples)
    draw = None if draws[0] is None else np.concatenate(draws)
    if draw is not None and len(np.unique(draw)) < 2:
        draw = None
    keys = {(s.info.get("seed"), s.info.get("event_range"), s.info.get("noise_block")) for s in samples}
    shared = len(samples) > 1 and len(keys) == 1 and None not in next(iter(keys))
    return Generated(sample, draw, tuple(paths), shared)


def _first(folder: Path, patterns: Sequence[str]) -> list[Path]:
    for pat in patterns:
        hits = sorted(p for p in folder.glob(pat) if p.is_file() and not p.name.startswith("."))
        if hits:
            return hits
    return []


@dataclass(frozen=True)
class RunInputs:
    """A run folder's generated sample, its held-out reference and its training split (or None)."""

    generated: Generated
    reference: EventSample | None
    training: EventSample | None
    card: object | None


def read_run(folder: str | Path, log=lambda msg: None) -> RunInputs:
    """Read a run folder (``generated.root`` or ``generated.draw<k>.root``; ``split.npz`` and
    ``card.yaml`` for the held-out test and training splits of the card's data)."""
    folder = Path(folder)
    gen = _first(folder, RUN_GENERATED)
    if not gen:
        raise InputError(
            f"{folder}: no generated sample in this run folder (looked for {', '.join(RUN_GENERATED)}); "
            "run 'hepgen generate' first or pass a sample file"
        )
    draws = sorted(p for p in folder.glob("generated.draw*.root"))
    run_card = load_card(folder / "card.yaml") if (folder / "card.yaml").is_file() else None
    process = processes.get(run_card.process.name) if run_card is not None else None
    generated = read_generated(draws if len(draws) >= 2 else gen[:1], process=process)
    reference = training = card = None
    ref = _first(folder, RUN_REFERENCE)
    if ref:
        reference, _ = read_sample(ref[0], process=process)
    split_file = folder / "split.npz"
    if run_card is not None and split_file.is_file():
        card = run_card
        if process.writes_events:
            try:
                split = np.load(split_file)
                data = process.load_data(card, log)  # as the training loop selects it
                # as a reference file is read (validation_sample_of): unfolding's paired rows at their particle level
                if reference is None and "test" in split:
                    reference = validation_sample_of(process, data.select(split["test"]), str(split_file), log)
                if "train" in split:
                    training = validation_sample_of(process, data.select(split["train"]), str(split_file), log)
            except (OSError, ValueError, KeyError, IndexError) as err:
                raise InputError(f"{split_file}: cannot select the held-out split ({type(err).__name__}: {err})") from None
    return RunInputs(generated, reference, training, card)
