"""``hepgen export RUN``: the export folder of a trained run.

The graph is the run's full generation pipeline (:mod:`hepgen.pipeline`): the generator's
sampler with a fixed, unrolled solver and whatever the run's process wraps around it (for
Z+jets: the inverse coordinate transform, the jet multiplicity from a uniform noise column,
the global azimuth and the muon charges, the pT ordering). Its input is noise only (a generator that maps samples, DiDi: the
source events, and the parity checks feed source events from ``--source`` or the card's
``data.source``); its outputs,
their meaning and the selection a consumer must apply are the process's
(:meth:`hepgen.processes.base.Process.export_spec`) and are written into the manifest. For
Z+jets they are ``momenta`` ``[N, 5, 4]`` (mu1, mu2, j1, j2, j3 x pT, eta, phi, m; absent jets
zero), ``n_jets`` ``[N]`` and ``charge`` ``[N, 2]``, all float32.

One graph for all multiplicities (rather than one per multiplicity): a framework draws events
with one call, the multiplicity fractions (and, for a Bayesian model, their posterior draw)
travel with the weights. The graph does not drop events (its batch is fixed), so the selection
that ``hepgen generate`` applies is left to the consumer, as the manifest says.
"""

from __future__ import annotations

import torch

import dataclasses
import json
import os
from pathlib import Path
from typing import Callable

from ..cards import card_hash, dump_card
from ..modelcards import draws
from ..models.ensemble import is_ensemble
from ..nn.bayesian import is_bayesian
from ..errors import ExportError
from ..nuisance import category_table, conditioned, describe
from ..pipeline import frozen_sampler
from ..runs import load_run
from ..sources import complete, read_source
from .bundle import CHECK_EVENTS, write_export


def export(run_dir: str | os.PathLike, *, output: str | os.PathLike | None = None, bayes_samples: int | None = None,
           steps: int | None = None, solver: str | None = None, force: bool = False, sofie: bool = True,
           checkpoint: str = "best", progress: Callable[[str], None] | None = None,
           source: str | os.PathLike | None = None) -> Path:
    """Export the trained run ``run_dir`` to the folder ``output`` (default ``exports/<run name>``).

    ``bayes_samples``: posterior draws K written as weight files (Bayesian runs; default the
    card's ``model.bayes.draws``; a repulsive ensemble: member k is draw k, default all members). ``steps`` / ``solver``: the fixed sampler of the graph
    (default the card's; a family without such settings rejects them). ``sofie=False`` skips the
    SOFIE C++ header. Returns the folder.

    ``source``: for a run whose generator maps samples (DiDi), the source events the parity
    checks feed the graph (its first :data:`~hepgen.export.bundle.CHECK_EVENTS`; default the
    card's ``data.source``); noise runs check with drawn noise and refuse a source.
    """
    run = load_run(run_dir, checkpoint)
    card, process, bayes = run.card, run.process, run.bayesian
    if bayes_samples is not None and not bayes:
        raise ExportError(f"--bayes-samples {bayes_samples}: the model of {run.path} is not Bayesian")
    k = (bayes_samples if bayes_samples is not None else draws(card.model)) if bayes else 0
    if bayes and k < 1:
        raise ExportError("--bayes-samples must be at least 1 for a Bayesian run")
    output = Path(output) if output is not None else Path("exports") / run.path.name

    sampler = conditioned(frozen_sampler(run.model, card.seed, None, solver, steps), card.model.nuisance,
                          category_table(run.coords))
    default = process.pipeline(run, sampler, None).eval()
    # each draw's pipeline is built once (Z+jets: it measures its own cut pass rates)
    draw_pipes = [run.pipeline(d, solver, steps) for d in range(k)]
    spec, physics = process.export_spec(run, default, sampler, draw_pipes)
    if card.model.nuisance:  # nu is part of the generator's condition; the graph takes it in the noise input
        cols = [j for j, word in enumerate(spec.noise_layout) if word == "nuisance"]
        physics = {**physics, "nuisances": [{**d, "noise_column": j} for d, j in zip(describe(card.model.nuisance), cols)]}
        spec = dataclasses.replace(spec, notes=spec.notes + (
            "Nuisance columns (noise_layout 'nuisance', physics.nuisances): not noise but the nuisance parameter nu "
            "of the generator's condition [c | nu]; 0 = the nominal sample, a value in its range = that variation, "
            "a draw from its prior per event = marginalised.",))
    inputs, source_record = None, {}
    if source is not None and not run.maps_samples:
        raise ExportError(f"--source {source}: the {run.family} generator of {run.path} starts from noise")
    if run.maps_samples:
        # a process whose pipeline takes an event (unfolding) checks on its own training file
        path = source or card.data.source or (card.data.path if getattr(process, "takes_source", False) else "")
        if not path:
            raise ExportError(f"the {run.family} generator of {run.path} maps source events; give --source FILE")
        src = read_source(path, process, card, max_events=CHECK_EVENTS)
        x = complete(src.x, list(spec.noise_layout), torch.Generator().manual_seed(card.seed))
        inputs, source_record = {spec.inputs[0].name: x.numpy()}, {"check_" + k: v for k, v in src.record.items()}
    # the draws are posterior samples of a Bayesian network, or the members of a repulsive ensemble
    generator = {"family": run.family, "bayesian": is_bayesian(run.model), "ensemble": is_ensemble(run.model), "draws": k,
                 "network": {"hidden": card.model.network.hidden, "layers": card.model.network.layers,
                             "backbone": card.model.network.backbone},
                 "noise_dim": len(spec.noise_layout), **sampler.record}
    provenance = {"run": str(run.path), "run_name": card.name, "card_hash": card_hash(card), "seed": card.seed,
                  "epoch": run.epoch, "checkpoint": checkpoint, **source_record}
    return write_export(output, default, draw_pipes if bayes else None, k, spec, generator=generator, physics=physics,
                        provenance=provenance, force=force, with_sofie=sofie,
                        extra_files={"card.yaml": dump_card(card), "data.json": json.dumps(run.data_info, indent=1, sort_keys=True) + "\n"},
                        inputs=inputs, progress=progress)
