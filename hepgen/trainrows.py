"""Which rows a card trains on: the one place :func:`hepgen.train.train` asks.

- ``refine.base`` (``hepgen refine``): the base run's latent noise with DCTR weights (:mod:`hepgen.latent`);
- ``distill.teacher`` (``hepgen distill``): the teacher's ODE pairs (:mod:`hepgen.teacher`);
- otherwise the card's data, split and encoded (:func:`hepgen.trainingdata.prepare_data`);

and with which per-event weights each epoch: the rows' own, or with ``train.discriminator`` DiscFlow's
(:func:`hepgen.discflow.discflow_for`).
"""

from __future__ import annotations

from typing import Callable

from .cards import Card
from .discflow import check_discriminator, discflow_for  # noqa: F401 (the loop's per-epoch weights, DiscFlow)
from .latent import refine_data
from .teacher import teacher_data
from .trainingdata import Data, prepare_data


def training_rows(card: Card, log: Callable[[str], None], progress: bool | None, model) -> Data:
    """The card's training and validation rows (see the module docstring); ``model``: the card's, unfitted.
    Settings the rows or the model cannot serve (``train.discriminator``: :func:`check_discriminator`)
    are one-line errors here, before the run folder exists."""
    check_discriminator(card, model)
    if card.refine.base:
        return refine_data(card, log, progress, model)
    if card.distill.teacher:
        return teacher_data(card, log, progress)
    return prepare_data(card, log, model)
