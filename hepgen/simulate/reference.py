"""The independent validation reference: a sample simulated exactly like the training sample
(the same :class:`~hepgen.simulate.simulation.Simulation`: Z+jets, tt̄, ...) but with its own
seed, made once and then reused (cached like the training sample).

:func:`independent_reference` returns the card's ``validate.reference`` file holding
``validate.reference_events`` selected events simulated with :func:`reference_seed`:

* ``reference_events: 0``, or events read from a file (``simulate.input``) -> None: validation
  uses the held-out split only;
* the file is absent -> :func:`hepgen.simulate.produce` writes it (Z+jets: Pythia at about 550
  selected events/s on 2 cores, 100 000 events take about 3 minutes), or, with
  ``simulate=False``, None;
* the file is present -> it is reused when its provenance (written by ``produce``) says it holds
  that many events simulated with that seed, the simulation's Pythia settings and the card's
  process section (object selection, process settings). Anything else is refused with one :class:`~hepgen.errors.InputError` line.

It is never the training sample: a path that is ``data.path`` or ``simulate.output``, a seed that
is the card's or the training file's, and a training file that the card's simulation does not
describe (external data, other Pythia settings or selection) are refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import yaml

from ..cards import Card, card_to_dict
from ..errors import CardError, InputError
from ..io.root import read_events
from .run import produce, simulation_for
from .simulation import Simulation

REFERENCE_SEED_OFFSET = 1_000_000  # validate.reference_seed 0 -> the card's seed + this


def reference_seed(card: Card) -> int:
    """The seed the independent reference is simulated with (``validate.reference_seed``, or the
    card's seed + :data:`REFERENCE_SEED_OFFSET` when that is 0)."""
    return card.validate.reference_seed or card.seed + REFERENCE_SEED_OFFSET


def _same_path(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def _provenance(path: Path) -> dict[str, str]:
    """The provenance of a ROOT sample (one event is read); {} for other formats."""
    if path.suffix != ".root":
        return {}
    return dict(read_events(path, entry_stop=1).info)


def _setting_mismatches(info: dict[str, str], card: Card, simulation: Simulation) -> list[str]:
    """How the simulation behind ``info`` differs from ``simulation`` of the card (Pythia
    settings, selection)."""
    if "pythia_settings" not in info or "card" not in info:
        return ["no hepgen simulation provenance (Pythia settings, resolved card)"]
    out = []
    theirs, ours = json.loads(info["pythia_settings"]), list(simulation.settings)
    if theirs != ours:
        diff = [f"+{s}" for s in ours if s not in theirs] + [f"-{s}" for s in theirs if s not in ours]
        out.append("other Pythia settings (card vs file: " + ", ".join(diff or ["order"]) + ")")
    theirs = dict((yaml.safe_load(info["card"]) or {}).get("process", {}))
    ours = card_to_dict(card)["process"]
    # process.settings: only the keys the simulation uses (the others configure the training)
    theirs["settings"] = {k: v for k, v in (theirs.get("settings") or {}).items() if k in simulation.settings_keys}
    ours["settings"] = {k: v for k, v in ours["settings"].items() if k in simulation.settings_keys}
    keys = [k for k in ours if theirs.get(k) != ours[k]]
    if keys:
        out.append("another selection (" + ", ".join(f"process.{k}: file {theirs.get(k)}, card {ours[k]}" for k in keys) + ")")
    return out


def _check_training(card: Card, path: Path, seed: int, simulation: Simulation) -> None:
    """Refuse a reference that could repeat or mismatch the training sample."""
    if seed == card.seed:
        raise CardError(f"validate.reference_seed = {seed} is the card's seed: the reference would repeat the "
                        "training sample's events (0 derives another seed)")
    for key in ("data.path", "simulate.output"):
        section, name = key.split(".")
        other = Path(getattr(getattr(card, section), name))
        if _same_path(path, other):
            raise InputError(f"validate.reference {path} is the card's {key}: the independent reference "
                             "must be a file of its own")
    training = Path(card.data.path)
    if not training.exists():
        return  # nothing to compare with yet (the training sample is simulated later)
    info = _provenance(training) if card.data.format == "root" and not card.data.branches else {}
    problems = _setting_mismatches(info, card, simulation)
    if problems:
        raise InputError(f"data.path {training}: {problems[0]}: the card's simulation does not describe the "
                         "training sample, so it cannot make an independent reference for it; set "
                         "validate.reference_events: 0 or validate with --reference FILE")
    if info.get("seed") == str(seed):
        raise InputError(f"data.path {training} was simulated with seed {seed}, the reference's seed: "
                         "set another validate.reference_seed")


def independent_reference(card: Card, log: Callable[[str], None] = print, *, simulate: bool = True,
                          simulation: Simulation | None = None) -> Path | None:
    """The card's independent validation reference (see the module docstring): its path, made
    with :func:`hepgen.simulate.produce` and ``simulation`` (None: the card's,
    :func:`~hepgen.simulate.run.simulation_for`) when absent (with ``simulate``), or None when
    the card asks for none (or it is absent and ``simulate`` is False). Raises
    :class:`InputError` / :class:`CardError` for a file that is not the reference the card asks
    for."""
    vc = card.validate
    if vc.reference_events == 0:
        return None
    if card.simulate.input:  # the events come from a file: there is no second stream to draw from
        log(f"simulate.input {card.simulate.input}: no independent reference can be simulated; the held-out split only")
        return None
    simulation = simulation or simulation_for(card)
    path, seed, events = Path(vc.reference), reference_seed(card), vc.reference_events
    _check_training(card, path, seed, simulation)
    if path.exists():
        info = _provenance(path)
        problems = _setting_mismatches(info, card, simulation)
        other_seed = "seed" in info and info["seed"] != str(seed)
        if other_seed:
            problems.insert(0, f"simulated with seed {info['seed']}, the card asks for seed {seed}")
        if "events" in info and info["events"] != str(events):
            problems.insert(0, f"{info['events']} events, the card asks for validate.reference_events = {events}")
        if problems:
            # refused for its seed alone (e.g. --set seed=2): that seed can be asked for, unless it is the card's
            reusable = other_seed and len(problems) == 1 and info["seed"] != str(card.seed)
            reuse = f", or validate.reference_seed: {info['seed']} to use it as it is" if reusable else ""
            raise InputError(f"validate.reference {path}: {'; '.join(problems)}; delete it to simulate it "
                             f"again, or set validate.reference to another file{reuse}")
        log(f"validation reference: {path} ({events} events, seed {seed})")
        return path
    command = f"hepgen simulate CARD -n {events} --seed {seed} -o {path}"
    if not simulate:
        log(f"validation reference {path} is absent (make it with '{command}'): the held-out split only")
        return None
    log(f"validation reference {path} is absent: simulating {events} events with seed {seed}")
    return produce(card, events=events, seed=seed, output=path, simulation=simulation)
