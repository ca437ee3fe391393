"""What follows a finished training: generate from the best model, then validate.

``hepgen train`` passes :func:`finish_run` to :func:`hepgen.train.train` as its ``after`` step
(run on rank 0 once the last epoch, or early stopping, is reached); library users call it on a
run folder themselves. It writes into the run folder: ``generated.root`` (Z+jets) or
``generated.npz`` + ``toy.png`` (toys), and ``validation/`` when ``train.validate`` is on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .generate import generate
from .nn.bayesian import is_bayesian
from .runs import load_run
from .toys import toy_report
from .validate import validate_run


def finish_run(path: Path, log: Callable[[str], None] = print) -> None:
    """After training: generate from the best model into the run folder, then validate.

    Z+jets: ``generate.events`` events into ``generated.root`` (weight means) and, for a
    Bayesian model, ``bayes.draws`` files ``generated.draw<k>.root`` (the validation's bands).
    Toys: ``generated.npz`` and ``toy.png``.
    """
    run = load_run(path, "best")
    if run.card.process.name == "zjets":
        generate(run, run.card.generate.events, output=path / "generated.root", force=True, log=log)
        if is_bayesian(run.model) and run.card.model.bayes.draws > 1:
            generate(run, run.card.generate.events, bayes_samples=run.card.model.bayes.draws,
                     output=path / "generated.root", force=True, log=log)
    else:
        toy_report(run, log=log)
    if run.card.train.validate:
        validate_after_training(path, log)


def validate_after_training(path: Path, log: Callable[[str], None] = print) -> None:
    """Validate the freshly generated sample against the held-out test split
    (``hepgen.validate.validate_run``: ``<run>/validation/``; skipped for toys)."""
    validate_run(path, log=log)
