"""``hepgen unfold RUN reco.root -o unfolded.root --samples K``: K posterior samples of the
particle-level event for every reco event, from a run whose pipeline takes a reco event
(``process.name: zjets_unfold``, docs/unfolding.md).

Sample k of every event uses its own noise and, for a Bayesian run, posterior draw k of the
network weights (k = 0 .. K-1: any K works, each draw is seeded by the card's seed), for an
ensemble run member k mod M of its M members (the pooled posterior of the members, for any K), so
the spread of the K samples holds both the detector's smearing and the training uncertainty; a
plain run uses its weights for all K.
The output holds one entry per (event, sample), event-major, with the int64 scalars ``event``
(the reco event's index in its file) and ``sample`` (k); deterministic for a given reco file,
run and K. Events the run does not unfold (``Process.source_events``: outside the reco
selection) are left out, counted in the provenance. A sample outside the particle-level
selection (two jets closer than jet_dr_min, a jet below the cuts) is drawn again with fresh noise
(:func:`selected_draw`): the truth obeys the selection, so the posterior is the network's
restricted to it; the few still outside after REDRAWS tries are kept (every event has K samples)
and counted (``unfold_outside_selection``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from ..errors import HepgenError, InputError
from ..events import EventSample
from ..io import format_of, read_sample
from ..io.root import RootWriter
from ..rngstate import derived_seed
from ..sources import complete

BLOCK = 4096  # reco events per block (all K samples of a block are written together)
REDRAWS = 20  # fresh-noise draws of a sample outside the particle-level selection (selected_draw)


def selected_draw(pipe, rows: torch.Tensor, gen: torch.Generator, passes) -> tuple[tuple, int]:
    """One posterior sample per row of ``rows`` (the pipeline's source rows) that passes the
    particle-level selection (``passes(outputs as float64 numpy) -> bool [N]``): a sample that
    fails it (a jet pair closer than jet_dr_min, which the coordinates do not forbid for two
    non-leading jets; a jet below the cuts) is drawn again with fresh noise from ``gen``, up to
    REDRAWS times; this samples the network's posterior restricted to the selection the truth
    obeys. Returns (outputs, the number of rows still failing)."""
    with torch.no_grad():
        out = pipe(complete(rows, pipe.noise_layout, gen))
        bad = np.flatnonzero(~passes(tuple(t.double().numpy() for t in out)))
        for _ in range(REDRAWS):
            if not len(bad):
                break
            again = pipe(complete(rows[bad], pipe.noise_layout, gen))
            index = torch.from_numpy(bad)
            out = tuple(t.index_copy(0, index, a) for t, a in zip(out, again))
            bad = bad[~passes(tuple(t.double().numpy() for t in again))]
    return out, len(bad)


def sample_draw(run, k: int) -> int | None:
    """The network draw of posterior sample ``k``: Bayesian draw k, ensemble member k mod M, or the
    weights of a plain run (None)."""
    if run.ensemble:
        return k % len(run.model.members)
    return k if run.bayesian else None


def unfold(run, reco: str | os.PathLike, output: str | os.PathLike, *, samples: int = 1, force: bool = False,
           max_events: int = 0, log: Callable[[str], None] = print, progress: bool = True) -> Path:
    """Write ``samples`` unfolded particle-level events per reco event of ``reco`` to ``output``
    (ROOT); see the module docstring. One-line errors for a run that does not unfold, a file
    that is not a reco sample of the run's kind, or an existing output without ``force``."""
    process, card = run.process, run.card
    if not getattr(process, "takes_source", False) or not hasattr(process, "source_events"):
        raise HepgenError(f"{run.path}: the {card.process.name} run does not unfold reco events "
                          "(train a card with process.name: zjets_unfold)")
    if samples < 1:
        raise HepgenError(f"--samples {samples}: at least 1")
    reco = Path(reco)
    if not reco.is_file():
        raise InputError(f"{reco}: no such file")
    if format_of(reco) != "root":
        raise InputError(f"{reco}: unfold reads ROOT files (.root)")
    sample = read_sample(reco, max_events=max_events)
    if len(sample) == 0:
        raise InputError(f"{reco}: no events")
    keep = np.flatnonzero(process.source_events(sample))
    x = process.source_input(sample, card)  # the rows of `keep`, checked against the run's reco selection
    pipes = {}
    draws = [sample_draw(run, k) for k in range(samples)]
    info = {**run.record(), "unfolded_file": str(reco), "unfolded_events": str(len(keep)),
            "unfold_skipped_events": str(len(sample) - len(keep)), "unfold_samples": str(samples)}
    log(f"unfolding {len(keep)} reco events of {reco} ({len(sample) - len(keep)} outside the selection), "
        f"{samples} sample{'s' if samples > 1 else ''} each")
    bar = tqdm(total=len(keep) * samples, unit="ev", disable=not progress, desc="unfold")
    outside = 0
    with RootWriter(output, force=force, info=info) as writer:
        for b, start in enumerate(range(0, len(keep), BLOCK)):
            rows = x[start:start + BLOCK]
            parts = []
            for k, draw in enumerate(draws):
                if draw not in pipes:
                    pipes[draw] = run.pipeline(draw)
                gen = torch.Generator().manual_seed(derived_seed("unfold", card.seed, k, b, bits=63))
                out, left = selected_draw(pipes[draw], rows, gen, lambda o: process.select(o, card).keep)
                outside += left
                events = process.to_events(out)
                parts.append(EventSample.build(events.collections, events.weight, scalars={
                    "event": keep[start:start + len(rows)], "sample": np.full(len(rows), k)}))
                bar.update(len(rows))
            block = EventSample.concatenate(parts)
            order = np.lexsort((block.scalars["sample"], block.scalars["event"]))
            writer.write(block.select(order))
        writer.update_info({"unfold_outside_selection": str(outside)})
    bar.close()
    log(f"wrote {output}: {len(keep) * samples} unfolded events"
        + (f" ({outside} still outside the particle-level selection after {REDRAWS} redraws)" if outside else ""))
    return Path(output)
