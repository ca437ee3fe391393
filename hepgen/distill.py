"""``hepgen distill RUN``: a new run whose sampler needs very few network evaluations.

A trained CFM (the teacher) integrates its ODE from noise z to x_T(z, c) with its card's solver
(40 evaluations for RK4 x 10). Both methods learn that map from the teacher's pairs
(:mod:`hepgen.teacher`) and make an ordinary run folder (``hepgen generate``, ``export`` and
``validate`` use it like any other), trained by the one loop (:func:`hepgen.train.train`):

- ``reflow`` (rectified flow, Liu et al. 2022, arXiv:2209.03003): a CFM trained on the coupling
  (z, x_T(z)) instead of independent pairs (``model.cfm.coupling: paired``); its paths are
  nearly straight, so Euler x 1-2 (:data:`REFLOW_SAMPLER`, ``--set model.cfm.steps=N``) comes close
  to the teacher's RK4. It is still a CFM: more steps still help, and it can teach again.
- ``student`` (knowledge distillation, Luhman & Luhman 2021): ``model.family student``, a one-step
  map G(z, c) = z + v(z, 0, c) regressed on x_T (:mod:`hepgen.models.student`); one network call.

The new card is the teacher's with the method's model settings (:data:`METHODS`), the name
``<teacher name>_<method>`` and a ``distill`` section that records the teacher (folder, sha256 of its
``best.pt``), the pairs and the teacher's solver; ``--set`` overrides any key afterwards (e.g.
``train.epochs``, or a smaller ``model.network`` with ``distill.init=scratch``). Both start from the
teacher's weights (``distill.init: teacher``) and keep its fitted coordinates. Everything is checked
before the run folder exists: a bad teacher or option is one line and leaves nothing behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from .cards import Card, card_from_dict, card_to_dict
from .errors import CardError, OutputError
from .runs import Run, build_for
from .teacher import check_unweighted, checkpoint_hash, teacher_run
from .train import train

# the model settings each method sets on the teacher's card; a reflow run generates with Euler x 2
# unless told otherwise (--set model.cfm.steps=N here, hepgen generate --steps later)
REFLOW_SAMPLER = {"solver": "euler", "steps": 2}
METHODS = {
    "reflow": {"family": "cfm", "cfm": {"coupling": "paired", **REFLOW_SAMPLER}},
    "student": {"family": "student"},
}


def distill_card(teacher: Run, method: str = "reflow", pairs: int | None = None, overrides=()) -> Card:
    """The card of a run distilled from ``teacher`` (see the module docstring); one-line
    :class:`CardError` for an unknown method or a bad override."""
    if method not in METHODS:
        raise CardError(f"distill method {method!r} is not available; choose from {', '.join(METHODS)}")
    data = card_to_dict(teacher.card)
    data["name"] = f"{teacher.card.name}_{method}"
    model = data["model"]
    for key, value in METHODS[method].items():
        model[key] = {**model[key], **value} if isinstance(value, dict) else value
    data["distill"] = {"teacher": str(teacher.path.resolve()), "checkpoint": checkpoint_hash(teacher.path / "best.pt"),
                       "method": method, "solver": teacher.card.model.cfm.solver, "steps": teacher.card.model.cfm.steps}
    if pairs is not None:
        data["distill"]["pairs"] = pairs
    return card_from_dict(data, f"hepgen distill {teacher.path}", overrides)


def check_distill_card(card: Card, teacher: Run) -> None:
    """The card's model is its method's and can start from the teacher's weights (one-line CardError)."""
    check_unweighted(card)
    _, model = build_for(card)
    wanted = METHODS[card.distill.method]
    if model.distill_method != card.distill.method:
        raise CardError(f"distill.method {card.distill.method} trains model.family {wanted['family']} on the "
                        f"teacher's pairs; the card has model.family {model.family} "
                        f"(model.cfm.coupling {card.model.cfm.coupling})")
    if card.distill.init == "teacher":
        try:
            model.load_state_dict(teacher.model.state_dict())
        except RuntimeError:
            raise CardError("distill.init teacher: the model's network does not match the teacher's; keep "
                            "model.network or --set distill.init=scratch") from None


def distill(teacher_path: str | os.PathLike, method: str = "reflow", pairs: int | None = None, overrides=(),
            run_dir: str | os.PathLike | None = None, progress: bool | None = None,
            after: Callable | None = None) -> Path:
    """Distil the CFM run at ``teacher_path`` into a new run (``run_dir``, default
    ``<runs_dir>/<name>-<time>``); ``after(path, log)`` runs when training has finished
    (``hepgen distill`` passes :func:`hepgen.workflow.finish_run`). Returns the new run folder."""
    teacher = teacher_run(teacher_path)
    card = distill_card(teacher, method, pairs, overrides)
    check_distill_card(card, teacher)
    if run_dir is not None and Path(run_dir).exists():
        raise OutputError(f"output {run_dir} exists; give a new run folder")
    return train(card, run_dir=run_dir, progress=progress, after=after)
