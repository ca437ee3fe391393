"""What follows a finished training: the run's report, as its process makes it.

``hepgen train`` passes :func:`finish_run` to :func:`hepgen.train.train` as its ``after`` step
(run on rank 0 once the last epoch, or early stopping, is reached); library users call it on a
run folder themselves. The best model's process decides what the report is
(:meth:`hepgen.processes.base.Process.after_training`): for Z+jets ``generated.root`` (and one
file per Bayesian draw) and ``validation/`` when ``train.validate`` is on; for the toys
``generated.npz`` and ``toy.png``; for unfolding also the posterior calibration. The process
gets generation, validation and the calibration report handed in
(:class:`hepgen.processes.AfterTraining`), so it does not import the layers above it.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable

from .generate import generate
from .processes import AfterTraining
from .runs import load_run
from .unfold.report import calibration_report
from .validate import validate_run


def finish_run(path: Path, log: Callable[[str], None] = print) -> None:
    """After training: the best model's report into the run folder (see the module docstring)."""
    run = load_run(path, "best")
    on_device = partial(generate, device=run.card.train.device)  # the report's events where the run trained
    run.process.after_training(run, AfterTraining(on_device, validate_after_training, calibration_report), log)


def validate_after_training(path: Path, log: Callable[[str], None] = print, source: Path | None = None) -> None:
    """Validate the run's generated sample (``hepgen.validate.validate_run``: ``<run>/validation/``);
    ``source``: the sample a mapping run's generated events are the images of."""
    validate_run(path, log=log, source=source)
