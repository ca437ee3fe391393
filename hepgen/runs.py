"""Run folders: layout, the checkpoint record, loading a trained run.

``runs/<card name>-<YYYYmmdd-HHMMSS>/``::

    card.yaml        the resolved card (every key)
    train.log        the log of every (resumed) training session
    history.json     per-epoch losses, learning rate, time
    loss.png         the loss curves
    last.pt          end of the last finished epoch: model, optimiser, scheduler, all RNG states
    best.pt          the model with the lowest validation loss (epoch, model, coords only)
    coords.pt        the fitted coordinates (state_dict; also inside every checkpoint)
    split.npz        train / val / test event indices into the card's data (test is held out)
    data.json        the training data: file, events, cross section (hepgen.crosssection keys)
    generated.root   a sample from the trained model (toys: generated.npz + toy.png)

``best.pt`` and ``last.pt`` are :class:`Checkpoint` records, stored as a plain dict of tensors
and values (``torch.load`` reads them without hepgen).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

from . import nuisance, processes
from .cards import Card, load_card
from .errors import CardError, InputError
from .models import build_model
from .models.ensemble import is_ensemble
from .models.laser import Refined
from .nn.bayesian import is_bayesian
from .outputs import atomic_output
from .pipeline import pipeline, sampler_options
from .runlog import read_data_info


@dataclass
class Checkpoint:
    """One checkpoint file: the first three fields are always there (``best.pt`` has only
    those); the rest are what a resumed training needs (``last.pt``). On disk a dict with the
    fields that are not None, in this order; :meth:`save` replaces the file atomically."""

    epoch: int  # the last finished epoch, counted from 0
    model: dict[str, torch.Tensor]  # state_dict of the model that generates (with train.ema: the average)
    coords: dict[str, torch.Tensor]  # state_dict of the fitted coordinates
    raw_model: dict[str, torch.Tensor] | None = None  # train.ema: the trained weights themselves
    ema: dict | None = None  # train.ema: the average's state ({"steps": n})
    optimizer: dict | None = None
    scheduler: dict | None = None
    rng: list[dict] | None = None  # per rank: hepgen.rngstate.rng_state()
    history: list[dict] | None = None  # per epoch, as history.json
    best_val: float | None = None  # lowest validation loss so far (inf without validation)
    bad_epochs: int | None = None  # epochs since it improved (train.patience)
    stopped_early: bool | None = None
    discriminator: dict | None = None  # train.discriminator: the classifier's last logits (hepgen.discflow)

    @property
    def resumable(self) -> bool:
        return self.optimizer is not None and self.rng is not None

    def to_dict(self) -> dict:
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}

    def save(self, path: str | os.PathLike) -> None:
        with atomic_output(path, force=True) as tmp:
            torch.save(self.to_dict(), tmp)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Checkpoint:
        """Read a checkpoint file onto the CPU (:class:`InputError` when it is not one)."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:
            raise InputError(f"{path}: cannot read the checkpoint ({type(err).__name__})") from None
        known = [f.name for f in fields(cls)]
        if not isinstance(state, dict):
            raise InputError(f"{path}: not a hepgen checkpoint (a {type(state).__name__}, not a dict)")
        missing = [k for k in ("epoch", "model", "coords") if k not in state]
        unknown = sorted(str(k) for k in state if k not in known)
        if missing or unknown:
            what = f"no {', '.join(missing)}" if missing else f"unknown entries {', '.join(unknown)}"
            raise InputError(f"{path}: not a checkpoint of this hepgen version ({what})")
        return cls(**state)


def build_for(card: Card):
    """(coords, model) of the card's process and model family, unfitted / untrained."""
    processes.settings(card)  # the process's own keys: a typo is a card error before any work
    coords = processes.get(card.process.name).coords(card)
    model = build_model(card.model, coords.dim, coords.cond_dim + nuisance.cond_width(card.model.nuisance))  # c = [c | nu]
    model.check_coords(coords)
    nuisance.check(card, model)
    if model.maps_samples and not card.data.source:
        raise CardError(f"card {card.name}: model.family {model.family} maps source events onto the data; "
                        "name the source sample in data.source")
    if card.data.source and not model.maps_samples:
        raise CardError(f"card {card.name}: data.source {card.data.source!r}: model.family {model.family} starts "
                        "from noise, not from source events (use a family that maps samples, e.g. didi)")
    if model.learns_from_teacher and not card.distill.teacher:
        raise CardError(f"card {card.name}: model.family {model.family} (model.cfm.coupling {card.model.cfm.coupling}) "
                        "trains on a teacher run's pairs; make the run with hepgen distill RUN")
    if card.distill.teacher and not model.learns_from_teacher:
        raise CardError(f"card {card.name}: distill.teacher is set but model.family {model.family} "
                        f"(model.cfm.coupling {card.model.cfm.coupling}) does not train on a teacher's pairs")
    if card.model.cfm.absent == "frozen":  # a no-op for the families without frozen columns
        model.set_active_columns(nuisance.pad_active(coords.active_columns(), nuisance.cond_width(card.model.nuisance)))
    if card.refine.base:  # hepgen refine: the base run's generator behind its latent refiner (LASER)
        model = Refined(model, card.refine)
    return coords, model


@dataclass
class Run:
    """A trained run: its folder, resolved card, model (eval mode) and fitted coordinates.

    What generation asks of a run, here and in an export folder run by ONNX Runtime
    (:class:`hepgen.export.runtime.OnnxRun`): ``path``, ``card``, ``epoch``, ``process``,
    ``family``, ``bayesian``, ``maps_samples``, ``data_info`` (the training data's ``data.json``: its cross section),
    ``pipeline(draw, solver, steps)`` (the exportable module of
    Bayesian draw ``draw``; None = weight means) and ``record(solver, steps)`` (what generated
    files record about the generator).
    """

    path: Path
    card: Card
    model: nn.Module
    coords: nn.Module
    epoch: int
    data_info: dict[str, str] = field(default_factory=dict)  # data.json ({} for a run without one)

    @property
    def seed(self) -> int:
        return self.card.seed

    @property
    def process(self) -> processes.Process:
        return processes.get(self.card.process.name)

    @property
    def family(self) -> str:
        return self.model.family

    @property
    def bayesian(self) -> bool:
        """Whether the run has draws: a Bayesian model, or a repulsive ensemble (draw k = member k)."""
        return is_bayesian(self.model) or is_ensemble(self.model)

    @property
    def ensemble(self) -> bool:
        """Whether the draws are ensemble members (draw None: member 0, there is no weight mean)."""
        return is_ensemble(self.model)

    @property
    def maps_samples(self) -> bool:
        """Whether the generator maps source events (``--source``) rather than drawn noise: a
        generator that maps samples (DiDi), or a process whose pipeline takes an event
        (``takes_source``: unfolding conditions on the reco event)."""
        return self.model.maps_samples or bool(getattr(self.process, "takes_source", False))

    def pipeline(self, draw: int | None = None, solver: str | None = None, steps: int | None = None) -> nn.Module:
        return pipeline(self, draw, solver, steps)

    def record(self, solver: str | None = None, steps: int | None = None) -> dict[str, str]:
        rec = frozen_sampler_record(self.model, solver, steps)
        return {"generator": f"hepgen {self.family}", "model_family": self.family, "run": str(self.path),
                "epoch": str(self.epoch), **rec}


def frozen_sampler_record(model: nn.Module, solver: str | None, steps: int | None) -> dict[str, str]:
    """The sampler settings of ``model`` as generated files record them (:func:`sampler_fields`)."""
    return sampler_fields(model.sampler_record(**sampler_options(solver, steps)))


def sampler_fields(rec: dict) -> dict[str, str]:
    """A sampler record (``Generator.sampler_record``, or an export manifest's generator) as
    provenance fields: ``solver = rk4/20`` for an ODE solver, ``sampler = ddim/50`` for DDPM;
    nothing for families without settings; a refined run adds ``refiner = laser cfm rk4/10``."""
    fields = {k: f"{rec[k]}/{rec['steps']}" for k in ("solver", "sampler") if k in rec}
    return fields | ({"refiner": rec["refiner"]} if "refiner" in rec else {})  # a refined run (hepgen refine)


def load_run(path: str | os.PathLike, checkpoint: str = "best") -> Run:
    """Load ``path/card.yaml`` and ``path/<checkpoint>.pt`` (best or last) onto the CPU."""
    path = Path(path)
    if not (path / "card.yaml").is_file():
        raise InputError(f"{path} is not a hepgen run folder (no card.yaml)")
    ckpt_path = path / f"{checkpoint}.pt"
    if not ckpt_path.is_file():
        raise InputError(f"{path} has no {checkpoint}.pt (training did not finish an epoch?)")
    card = load_card(path / "card.yaml")
    ckpt = Checkpoint.load(ckpt_path)
    coords, model = build_for(card)
    try:
        coords.load_state_dict(ckpt.coords)
        model.load_state_dict(ckpt.model)
    except (RuntimeError, KeyError) as err:
        first = str(err).strip().splitlines()[0]
        raise InputError(f"{ckpt_path} does not match the model/coordinates of this hepgen version "
                         f"(made by an older version?): {first}") from None
    model.attach_coords(coords)
    return Run(path, card, model.eval(), coords, int(ckpt.epoch), read_data_info(path))

