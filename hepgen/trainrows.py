"""Which rows a card trains on: the one place :func:`hepgen.train.train` asks.

- ``refine.base`` (``hepgen refine``): the base run's latent noise with DCTR weights (:mod:`hepgen.latent`);
- ``distill.teacher`` (``hepgen distill``): the teacher's ODE pairs (:mod:`hepgen.teacher`);
- otherwise the card's data, split and encoded (:func:`hepgen.trainingdata.prepare_data`);

and with which per-event weights each epoch: the rows' own, or with ``train.discriminator`` DiscFlow's
(:func:`hepgen.discflow.discflow_for`).
"""

from __future__ import annotations

from typing import Callable

from . import processes
from .cards import Card
from .discflow import check_discriminator, discflow_for  # noqa: F401 (the loop's per-epoch weights, DiscFlow)
from .latent import refine_data
from .teacher import teacher_data
from .trainingdata import Data, prepare_data


def training_rows(card: Card, log: Callable[[str], None], progress: bool | None, model, report: bool = False) -> Data:
    """The card's training and validation rows (see the module docstring); ``model``: the card's, unfitted.
    Settings the rows or the model cannot serve (``train.discriminator``: :func:`check_discriminator`)
    are one-line errors here, before the run folder exists; with ``report`` (a report follows the
    training) and ``train.validate``, so is a validation reference file the report would refuse
    (another seed, event count or simulation than the card asks for): found now, not after the last epoch."""
    check_discriminator(card, model)
    if card.refine.base:
        rows = refine_data(card, log, progress, model)
    elif card.distill.teacher:
        rows = teacher_data(card, log, progress)
    else:
        rows = prepare_data(card, log, model)
    if report and card.train.validate:  # after the rows: a simulated training file's provenance is checked too
        processes.get(card.process.name).validation_reference(card, lambda _: None, simulate=False)
    return rows
