"""Source events for generators that map samples (DiDi): a file in, the pipeline's input out.

A run whose generator maps samples (``Generator.maps_samples``; its pipeline's input is a
source event, ``noise_layout`` all ``"source"``) generates from the events of a source file
instead of drawn noise: ``hepgen generate RUN --source FILE`` and the parity checks of
``hepgen export`` read it here. The file is read with :mod:`hepgen.io` by its suffix (ROOT
``.root``; LHE ``.lhe``, ``.lhe.gz``), and the run's process turns the events into the
pipeline's input (``Process.source_input(sample, card) -> torch.Tensor`` float32; a one-line
InputError for events of the wrong particle content). Event i of the input is event i of the
file; a mapped ROOT file names, per event, the source event it is the image of (``source_event``:
the generator's selection may drop an image).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import InputError
from .io import format_of, read_sample

# provenance keys of a source file that travel into the files generated from it (source_<key>)
SOURCE_PROVENANCE = ("card", "card_hash", "seed", "generator", "hepgen_version")
# the int64 scalar branch of a mapped ROOT file: the source event each event is the image of
SOURCE_EVENT = "source_event"


@dataclass
class SourceInput:
    """The pipeline's input from a source file: ``x`` ``[N, ...]`` float32 in the file's event
    order, and what generated files record about it (``source_file``, ``source_events`` and the
    file's own ``card_hash`` / ``seed`` ... as ``source_<key>`` where it has them)."""

    x: torch.Tensor
    record: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.x)


def complete(x: torch.Tensor, layout: list[str], generator: torch.Generator | None = None) -> torch.Tensor:
    """The pipeline's whole input for source rows ``x`` ``[N, S]``: a pipeline whose input has
    more columns than the source (``layout``: S "source" columns, then "normal" / "uniform"
    ones, e.g. DiDi's fill noise) gets them drawn from ``generator`` (N(0, 1) / U[0, 1))."""
    extra = layout[x.shape[1]:]
    if "source" in extra or len(layout) < x.shape[1]:
        raise InputError(f"source rows of {x.shape[1]} columns do not fit the input layout "
                         f"({layout.count('source')} source columns of {len(layout)})")
    if not extra:
        return x
    cols = [torch.zeros(len(x), 1) if kind == "nuisance" else torch.randn(len(x), 1, generator=generator)
            if kind == "normal" else torch.rand(len(x), 1, generator=generator) for kind in extra]
    return torch.cat([x, *cols], dim=-1)


def read_source(path: str | os.PathLike, process, card, max_events: int = 0) -> SourceInput:
    """The source events of ``path`` (all, or the first ``max_events``) as ``process``'s pipeline
    input for a run with ``card``; one-line InputError for a missing or unreadable file, a
    process that takes no source events, or events it cannot map."""
    path = Path(path)
    if not format_of(path):
        raise InputError(f"--source {path}: not an event file (name it .root, .lhe or .lhe.gz)")
    if not path.is_file():
        raise InputError(f"--source {path}: no such file")
    make_input = getattr(process, "source_input", None)
    if make_input is None:
        raise InputError(f"the {card.process.name} process cannot turn source events into generator input "
                         "(it has no source_input)")
    sample = read_sample(path, max_events=max_events)
    if len(sample) == 0:
        raise InputError(f"--source {path}: no events")
    x = make_input(sample, card)
    record = {"source_file": str(path), "source_events": str(len(x))}
    record.update({f"source_{k}": str(sample.info[k]) for k in SOURCE_PROVENANCE if k in sample.info})
    return SourceInput(x.float(), record)
