"""``hepgen refine RUN``: a new run whose generator emits unweighted events closer to the data (LASER).

DCTR (arXiv:2009.03796) reweights a generator's events with a classifier between them and the
training events, w(x) = p_data(x) / p_gen(x); the events are then weighted. LASER (arXiv:2106.00792)
moves those weights into the generator's latent space and learns the weighted latent density with a
second, small generator, so that the refined run samples UNWEIGHTED events from it:

1. the base run generates ``refine.events`` events and keeps, per event, the noise z its generator
   started from and the condition c (:func:`hepgen.latent.base_latents`);
2. ``hepgen reweight``'s classifier gives each event its DCTR weight w(x(z, c)) (0 where the process's
   selection drops it); the log and ``data.json`` report the effective sample size (sum w)^2 / sum w^2;
3. a small CFM in latent space (:class:`hepgen.models.laser.Refined`, ``refine.hidden`` x
   ``refine.layers``) is trained on the weighted z given c by the one training loop
   (:func:`hepgen.train.train`, a weighted run); by default (``refine.residual``, written here) it
   is the residual refiner, the identity map plus a learned correction
   (:class:`hepgen.models.laser.ResidualField`); with ``refine.refiner: inn`` it is a spline coupling
   flow that starts as the identity, trained by weighted likelihood with a control variate
   (:func:`hepgen.models.laser.inn_residual_loss`);
4. the refined generator draws u ~ N(0, 1), maps it to z' with the latent CFM (``refine.solver`` x
   ``refine.steps``) or the INN's inverse pass, and z' through the frozen base generator.

The new card is the base's with the name ``<base name>_refined`` and a ``refine`` section that records
the base (folder, sha256 of its ``best.pt``); ``--set`` overrides any key afterwards (e.g.
``refine.events``, ``train.epochs``, ``validate.classifier_epochs``). The refined run is an ordinary run
folder: ``hepgen generate``, ``validate`` and ``export`` (one ONNX graph: refiner, then generator) use it
like any other. Everything is checked before the run folder exists: a base LASER cannot refine (a
family whose noise is not N(0, 1) alone, e.g. jetgpt or didi; a Bayesian or ensemble run; a refined
run) or a bad option is one line and leaves nothing behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from .cards import Card, card_from_dict, card_to_dict
from .errors import CardError, OutputError
from .latent import base_run
from .runs import Run
from .teacher import checkpoint_hash
from .train import train


def refine_card(base: Run, overrides=()) -> Card:
    """The card of a run refined from ``base`` (see the module docstring); a bad override is one line."""
    data = card_to_dict(base.card)
    data["name"] = f"{base.card.name}_refined"
    data["refine"] = {**data["refine"], "residual": True, "base": str(base.path.resolve()),
                      "checkpoint": checkpoint_hash(base.path / "best.pt")}
    card = card_from_dict(data, f"hepgen refine {base.path}", overrides)
    if Path(card.refine.base) != base.path.resolve() or card.refine.checkpoint != data["refine"]["checkpoint"]:
        raise CardError("refine.base and refine.checkpoint name the run given to hepgen refine; do not --set them")
    return card


def refine(base_path: str | os.PathLike, overrides=(), run_dir: str | os.PathLike | None = None,
           progress: bool | None = None, after: Callable | None = None) -> Path:
    """Refine the run at ``base_path`` into a new run (``run_dir``, default ``<runs_dir>/<name>-<time>``);
    ``after(path, log)`` runs when training has finished (``hepgen refine`` passes
    :func:`hepgen.workflow.finish_run`). Returns the new run folder."""
    base = base_run(base_path)
    card = refine_card(base, overrides)
    if run_dir is not None and Path(run_dir).exists():
        raise OutputError(f"output {run_dir} exists; give a new run folder")
    return train(card, run_dir=run_dir, progress=progress, after=after)
