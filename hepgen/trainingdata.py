"""The training data of a run: load, split, fit the coordinates, encode.

:func:`prepare_data` loads the card's data (its process's ``load_data``), splits
it with :func:`split_indices` (``data.split``: train / validation / held-out test), fits the
coordinates on the training part only and encodes train and validation into float32 tensors
``x`` ``[N, F]`` and ``c`` ``[N, K]`` (:class:`Data`), and records what the run keeps of its data
(:func:`data_info`: file, events, cross section). :func:`balance_weights` gives the per-event
draw weights of ``train.balance``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from . import crosssection as xsec
from .cards import Card
from .errors import HepgenError, InputError
from .events import EventSample
from .outputs import atomic_output
from . import processes


@dataclass
class Data:
    """Encoded training and validation events, the split indices and the fitted coordinates."""

    x_train: torch.Tensor  # [N_train, F] float32
    c_train: torch.Tensor  # [N_train, K] float32
    x_val: torch.Tensor
    c_val: torch.Tensor
    split: dict[str, np.ndarray]  # train / val / test: sorted indices into the card's data
    coords: nn.Module
    info: dict[str, str]  # the training data's file, events and cross section (data.json of the run)


def split_indices(n: int, fractions: tuple[float, ...], seed: int) -> dict[str, np.ndarray]:
    """Random train / val / test indices (sorted), deterministic in (n, fractions, seed)."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not 0.99 < sum(fractions) < 1.01 or fractions[0] <= 0:
        raise HepgenError(f"data.split = {list(fractions)}: give three non-negative fractions (train, val, test) summing to 1")
    perm = np.random.default_rng([seed, 7]).permutation(n)
    n_train, n_val = int(round(fractions[0] * n)), int(round(fractions[1] * n))
    parts = {"train": perm[:n_train], "val": perm[n_train:n_train + n_val], "test": perm[n_train + n_val:]}
    return {k: np.sort(v) for k, v in parts.items()}


def write_split(split: dict[str, np.ndarray], path: Path) -> None:
    """The split indices as ``split.npz`` (replacing an existing file)."""
    with atomic_output(path, force=True) as tmp:
        np.savez(tmp, **split)


def prepare_data(card: Card, log: Callable[[str], None] = print) -> Data:
    """Load, split, fit the coordinates on the training part, encode (float32 tensors)."""
    process = processes.get(card.process.name)
    data = process.load_data(card, log)
    n = len(data)
    split = split_indices(n, card.data.split, card.seed)
    if len(split["train"]) < 2:
        raise InputError(f"only {n} events in the training data; too few to train")

    def take(idx):
        return data[idx] if isinstance(data, np.ndarray) else data.select(idx)

    coords = process.coords(card).fit(take(split["train"]))
    gen = torch.Generator().manual_seed(card.seed)
    x_tr, c_tr = coords.encode(take(split["train"]), gen)
    if len(split["val"]):
        x_va, c_va = coords.encode(take(split["val"]), gen)
    else:
        x_va, c_va = x_tr[:0], c_tr[:0]
    return Data(x_tr.float(), c_tr.float(), x_va.float(), c_va.float(), split, coords, data_info(card, data))


def data_info(card: Card, data) -> dict[str, str]:
    """What a run keeps of its training data (``data.json``): the file, the events used and
    the cross section they stand for (:mod:`hepgen.crosssection`; absent when unknown)."""
    info = {"path": str(card.data.path), "events": str(len(data))}
    if isinstance(data, EventSample) and (xs := xsec.cross_section(data.info)):
        info.update(xsec.record(*xs))
    return info


def balance_weights(c: torch.Tensor, balance: float) -> torch.Tensor | None:
    """Per-event draw weights f_k ** -balance for one-hot conditions ``c`` ``[N, K]`` (f_k: the
    fraction of condition k), or None for plain shuffling (balance 0 or no one-hot condition).
    The model still learns each conditional density; only how often each multiplicity is
    visited changes (the generated fractions come from the counts, not from the model)."""
    if balance <= 0 or c.shape[-1] == 0:
        return None
    frac = c.double().mean(0)
    per_class = torch.where(frac > 0, frac.clamp_min(1e-12) ** -balance, torch.zeros_like(frac))
    return (c.double() @ per_class).float()
