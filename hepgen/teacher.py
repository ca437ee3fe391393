"""The training data of a distilled run: a teacher CFM's ODE end points and the noise they came from.

A card with ``distill.teacher`` (written by ``hepgen distill``, :mod:`hepgen.distill`) does not
train on events. :func:`teacher_data` (called by :func:`hepgen.train.train` in place of
:func:`hepgen.trainingdata.prepare_data`) makes its rows:

1. the teacher run (``distill.teacher``, its ``best.pt``; :func:`teacher_run` refuses a run whose
   family does not teach, a Bayesian one or one that maps samples, and
   :func:`teacher_data` a ``best.pt`` whose sha256 is not ``distill.checkpoint``);
2. ``distill.pairs`` noise vectors z ``[P, D]`` (the teacher's noise layout, N(0, 1)) from a stream
   of their own (:data:`PAIR_STREAM`, so they are not the noise the new run generates its report
   with), and conditions c ``[P, C]`` drawn with replacement from the teacher's TRAINING events
   (its ``split.npz``, encoded with its fitted coordinates), so the multiplicity fractions are the
   data's, or (``distill.conditions: uniform``) each one-hot condition class equally often (within
   a class its events' own rows, so a drawn dimuon mass keeps its distribution), so a
   rare multiplicity gets as many pairs as a common one (the generated fractions stay the data's:
   they come from the fitted coordinates, not from the pairs);
3. x_T(z, c) ``[P, D]``: the teacher's ODE integrated with ``distill.solver`` x ``distill.steps``
   (float32, batches of :data:`BATCH`, a progress bar);
4. rows ``[x_T | z]`` ``[P, 2D]``, the last ``P * val / (train + val)`` of them (``data.split``)
   for the validation loss.

The new run keeps the teacher's fitted coordinates (no refit), its ``split.npz`` (so validation
uses the teacher's held-out events) and its ``data.json`` (the cross section), and, with
``distill.init: teacher``, starts from the teacher's weights (:attr:`Data.start`). The rows are
a deterministic function of the card and the teacher (at a fixed number of torch threads), so a
resumed run makes the same ones.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from .cards import Card
from .errors import CardError, InputError
from .runs import Run, load_run
from .trainingdata import Data, balance_weights, onehot_columns, take_rows

PAIR_STREAM = 29  # the teacher noise's seed stream (with the card's seed)
BATCH = 4096  # events per teacher integration batch


def checkpoint_hash(path: str | os.PathLike) -> str:
    """sha256 (first 16 hex digits) of a checkpoint file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def verified_hash(run: Run, expected: str, what: str, key: str) -> str:
    """The :func:`checkpoint_hash` of ``run``'s best.pt; a one-line :class:`InputError` when the
    card's ``key`` (e.g. distill.checkpoint) names another one (``expected`` "" = not recorded).
    ``what``: how the run is named in the message ("teacher run", "base run")."""
    found = checkpoint_hash(run.path / "best.pt")
    if expected and found != expected:
        raise InputError(f"{what} {run.path}: best.pt has sha256 {found}, not the {key} {expected} this run was "
                         "made from")
    return found


def teacher_run(path: str | os.PathLike) -> Run:
    """The teacher run at ``path`` (best.pt); one-line :class:`InputError` when it cannot teach."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"teacher run {path} does not exist")
    run = load_run(path, "best")
    if not run.model.teaches or run.maps_samples:
        raise InputError(f"teacher run {path}: model.family {run.family} cannot be distilled (a CFM run that "
                         "samples from noise can)")
    if run.bayesian:
        raise InputError(f"teacher run {path} is Bayesian; distill a run without model.bayes")
    if run.card.model.nuisance:
        raise InputError(f"teacher run {path} is conditioned on nuisances (model.nuisance); distill a run without")
    return run


def teacher_conditions(teacher: Run, n: int, generator: torch.Generator, log: Callable[[str], None],
                       conditions: str = "data") -> torch.Tensor:
    """``[n, C]`` conditions drawn with replacement from the teacher's training events (``conditions``
    "data"), or each one-hot class (multiplicity) equally often ("uniform"); ``[n, 0]`` for
    a process without conditions: nothing is read."""
    if teacher.coords.cond_dim == 0:
        return torch.zeros(n, 0)
    split = teacher.path / "split.npz"
    if not split.is_file():
        raise InputError(f"teacher run {teacher.path} has no split.npz (its training events are unknown)")
    data = teacher.process.load_data(teacher.card, log)
    with np.load(split) as parts:
        rows = take_rows(data)(parts["train"])
    _, c = teacher.coords.encode(rows, torch.Generator().manual_seed(teacher.card.seed))
    classes = int(onehot_columns(c).sum())
    if conditions == "uniform" and classes == 0:
        log("pair conditions: distill.conditions uniform, but the teacher's conditions have no one-hot class; "
            "drawn from its training events")
    if conditions != "uniform" or classes == 0:
        return c.float()[torch.randint(len(c), (n,), generator=generator)]
    # each one-hot class (multiplicity) equally often; within a class the events' own rows, so a
    # continuous condition (the drawn dimuon mass) keeps its distribution in each class
    log(f"pair conditions: uniform over the {classes} one-hot condition classes of the teacher's training events")
    return c.float()[torch.multinomial(balance_weights(c, 1.0).double(), n, replacement=True, generator=generator)]


@torch.no_grad()
def teacher_pairs(teacher: Run, n: int, seed: int, solver: str, steps: int, log: Callable[[str], None] = print,
                  progress: bool | None = None, conditions: str = "data") -> tuple[torch.Tensor, torch.Tensor]:
    """(``[x_T | z]`` ``[n, 2D]``, c ``[n, C]``), float32: z ~ the teacher's noise (stream
    :data:`PAIR_STREAM` of ``seed``), c by :func:`teacher_conditions` (``conditions``), x_T the
    ODE solution with ``solver`` x ``steps``."""
    gen = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, PAIR_STREAM]).generate_state(1)[0]))
    model = teacher.model.float().eval()
    z = model.draw_noise(n, gen).float()
    c = teacher_conditions(teacher, n, gen, log, conditions)
    sampler = model.sampler(solver=solver, steps=steps)
    x = torch.empty_like(z)
    show = progress if progress is not None else os.isatty(2)
    with tqdm(total=n, disable=not show, desc=f"teacher {solver} x {steps}", unit="ev", file=sys.stderr) as bar:
        for i in range(0, n, BATCH):
            x[i:i + BATCH] = sampler(z[i:i + BATCH], c[i:i + BATCH])
            bar.update(len(z[i:i + BATCH]))
    if not torch.isfinite(x).all():
        raise InputError(f"teacher run {teacher.path}: its ODE gave non-finite events with {solver} x {steps}")
    return torch.cat([x, z], dim=-1), c


def check_unweighted(card: Card) -> None:
    """A distilled run learns its teacher's map from the teacher's pairs, which carry no event
    weights: ``data.weights: file`` is a one-line :class:`CardError`, never silently ignored."""
    if card.data.weights != "none":
        raise CardError(f"data.weights: {card.data.weights}: a distilled run trains on its teacher's pairs, which carry "
                        "no event weights (train the teacher on the weighted sample instead); set it to none")


def teacher_data(card: Card, log: Callable[[str], None] = print, progress: bool | None = None) -> Data:
    """The training rows of a distilled card (see the module docstring)."""
    check_unweighted(card)
    spec = card.distill
    teacher = teacher_run(spec.teacher)
    found = verified_hash(teacher, spec.checkpoint, "teacher run", "distill.checkpoint")
    solver = spec.solver or teacher.card.model.cfm.solver
    steps = spec.steps or teacher.card.model.cfm.steps
    log(f"teacher {teacher.path} (best.pt {found}, epoch {teacher.epoch + 1}): "
        f"{spec.pairs} pairs with {solver} x {steps}")
    x, c = teacher_pairs(teacher, spec.pairs, card.seed, solver, steps, log, progress, spec.conditions)
    train_frac, val_frac = card.data.split[0], card.data.split[1]
    n_val = min(int(round(spec.pairs * val_frac / (train_frac + val_frac))), spec.pairs - 2)
    n_train = spec.pairs - n_val
    split = {}
    if (teacher.path / "split.npz").is_file():
        with np.load(teacher.path / "split.npz") as parts:
            split = {k: parts[k] for k in parts.files}
    split.setdefault("test", np.zeros(0, dtype=np.int64))
    info = {**teacher.data_info, "teacher": str(teacher.path), "teacher_checkpoint": found, "pairs": str(spec.pairs)}
    start = teacher.model.state_dict() if spec.init == "teacher" else None
    return Data(x[:n_train], c[:n_train], x[n_train:], c[n_train:], split, teacher.coords, info, start=start)
