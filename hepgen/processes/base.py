"""The Process protocol: what training, generation, export and validation ask of a process.

A process (Z+jets, the toys, later tt̄ and the others) lives in one module under
``hepgen/processes/`` and exposes one object that follows :class:`Process`. Everything else
asks that object and never tests a process name; :func:`hepgen.processes.get` finds it by the
card's ``process.name``. The pieces, in the order a run meets them:

- **card section**: the ``process`` section's shared keys (``sqrt_s``, the jet selection) and,
  for a process with keys of its own, ``process.settings``, checked against the process's
  ``settings_class`` (a frozen dataclass, strict like every card section; :func:`settings_of`).
- **data**: :meth:`Process.load_data` returns the card's training data (an
  :class:`~hepgen.events.EventSample` or an ``[N, F]`` array), simulating or making it first
  where the process knows how; :meth:`Process.validation_reference` the file of an independent
  reference sample for validation (made first when absent and ``simulate``), or None: then
  validation compares with the run's held-out split.
- **coordinates**: :meth:`Process.coords` returns unfitted physics <-> network coordinates with
  ``fit(data)``, ``encode(data, generator) -> (x [N, D], c [N, C])``, ``dim``, ``cond_dim``,
  ``active_columns()`` (see :mod:`hepgen.coords`).
- **pipeline**: :meth:`Process.pipeline` wraps the frozen generator
  (:class:`hepgen.pipeline.FrozenSampler`)
  into the exportable noise -> physics-objects module with ``noise_dim``,
  ``draw_noise(n, generator)`` and ``forward(noise) -> tensor or tuple of tensors``.
- **source events** (optional, for runs whose generator maps samples, DiDi:
  ``Generator.maps_samples``): :meth:`Process.source_input` turns a source sample into the
  pipeline's input (the pipeline then takes source events instead of noise; its
  ``noise_layout`` is all ``"source"``, one word per input value). :mod:`hepgen.sources` reads
  the file; a process without the method maps no samples.
- **selection**: :meth:`Process.select` is the process's one implementation of its cuts on
  pipeline outputs (numpy): which events to keep, and why the others were dropped.
  Simulation and validation use the same rule (for Z+jets: :mod:`hepgen.selection`).
- **events**: :meth:`Process.to_events` turns kept pipeline outputs into the EventSample that
  the ROOT and LHE writers take. A process with ``writes_events = False`` (the toys) has no
  event files; ``hepgen generate`` says so.
- **export**: :meth:`Process.export_spec` describes the pipeline's ports for the ONNX export.
- **validation**: ``observables`` names ``validation/<name>.yaml`` (None: no event
  validation) and :meth:`Process.after_training` is the run's report after training. Three
  optional answers shape the report; a process without them gets the defaults of
  :func:`categories_of`, :func:`cut_violations_of` and :func:`validation_sample_of`:
  ``categories(sample, card) -> Categories`` (how the classifier test and the fraction table
  split the events; Z+jets: by jet multiplicity; default: one category, all events),
  ``cut_violations(sample, card) -> {cut: fraction}`` (events the selection would drop;
  default: none reported) and ``validation_sample(sample, source, log) -> EventSample`` (check
  a sample read for validation, one :class:`~hepgen.errors.InputError` line naming ``source``
  when it cannot be validated; default: as read).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch import nn

from ..cards import build_section
from ..errors import CardError
from ..pipeline import FrozenSampler

Log = Callable[[str], None]


@dataclass
class Selection:
    """Which pipeline events pass a process's cuts: ``keep`` ``[N]`` bool, and per reason the
    events dropped for it (each event counted once, under the first cut it fails)."""

    keep: np.ndarray
    dropped: dict[str, np.ndarray]


@dataclass
class AfterTraining:
    """What a process's after-training report may use (passed in, so processes do not import
    the generation and validation layers above them).

    ``generate(run, n, bayes_samples=0, output=..., force=True, log=..., source=None) -> [Path]``
    (``source``: the source event file, required for a run whose generator maps samples),
    ``validate(run_path, log, source=None) -> Path | None`` (``source``: the file a mapping run's
    generated events are the images of, compared with the same reference side by side),
    ``calibrate(run, reference, samples=K, events=N, log=...)`` (an unfolding run's posterior
    calibration on a paired reference, :func:`hepgen.unfold.report.calibration_report`).
    """

    generate: Callable[..., list]
    validate: Callable[..., Any]
    calibrate: Callable[..., Any] | None = None


def settings_of(process, card) -> Any | None:
    """The process's own card keys (``process.settings``) as its ``settings_class``; None for a
    process without one, which then refuses any ``process.settings`` key."""
    cls = getattr(process, "settings_class", None)
    data = card.process.settings
    if cls is None:
        if data:
            raise CardError(f"card {card.name}: process.settings {sorted(data)}: the {process.name} process has no "
                            "settings of its own")
        return None
    return build_section(cls, data, "process.settings", f"card {card.name}")


@dataclass(frozen=True)
class Category:
    """One category of the validation split: ``key`` (metrics.json key and table row, e.g. "1"),
    ``title`` (plot titles, "1 jet"), ``stem`` (file names, "1j")."""

    key: str
    title: str
    stem: str


@dataclass(frozen=True)
class Categories:
    """How validation splits a sample: ``labels`` int ``[N]`` (the category of each event),
    ``members`` {label: Category} (the categories tested, in order; other labels count as
    "other"), ``heading`` (the tables' name for the categories, e.g. "jets")."""

    labels: np.ndarray
    members: dict[int, Category]
    heading: str


def categories_of(process, sample, card) -> Categories:
    """The process's validation split of ``sample`` (its ``categories``), else one category "all"."""
    answer = getattr(process, "categories", None)
    if answer is not None:
        return answer(sample, card)
    return Categories(np.zeros(len(sample), dtype=np.int64), {0: Category("all", "all events", "all")}, "events")


def cut_violations_of(process, sample, card) -> dict[str, float]:
    """Weighted fractions of ``sample``'s events that the process's selection would drop, per cut
    (its ``cut_violations``); {} for a process that does not say."""
    answer = getattr(process, "cut_violations", None)
    return {} if answer is None else answer(sample, card)


def validation_sample_of(process, sample, source: str, log: Log):
    """``sample`` checked (and completed) for validation by the process (its ``validation_sample``),
    else as it is."""
    answer = getattr(process, "validation_sample", None)
    return sample if answer is None else answer(sample, source, log)


class Process(Protocol):
    """One physics process (see the module docstring)."""

    name: str
    settings_class: type | None
    writes_events: bool
    observables: str | None

    def load_data(self, card, log: Log) -> Any: ...

    def validation_reference(self, card, log: Log, simulate: bool = True) -> Path | None: ...

    def coords(self, card) -> nn.Module: ...

    def pipeline(self, run, sampler: FrozenSampler, draw: int | None) -> nn.Module: ...

    def select(self, out: tuple[np.ndarray, ...], card) -> Selection: ...

    def source_input(self, sample, card) -> torch.Tensor:
        """Optional: the pipeline's float32 input ``[N, ...]`` from the source EventSample
        ``sample`` (event i -> row i) for a run whose generator maps samples; a one-line
        :class:`~hepgen.errors.InputError` for the wrong particle content or a different number
        of particles than the run was trained on."""
        ...

    def to_events(self, out: tuple[torch.Tensor, ...], info: dict[str, str]): ...

    def export_spec(self, run, pipe: nn.Module, sampler: FrozenSampler, draw_pipes: list[nn.Module]) -> tuple[Any, dict]: ...

    def after_training(self, run, tools: AfterTraining, log: Log) -> None: ...
