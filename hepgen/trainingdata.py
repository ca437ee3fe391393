"""The training data of a run: load, split, fit the coordinates, encode.

:func:`prepare_data` loads the card's data (its process's ``load_data``), splits
it with :func:`split_indices` (``data.split``: train / validation / held-out test), fits the
coordinates on the training part only and encodes train and validation into float32 tensors
``x`` ``[N, F]`` and ``c`` ``[N, K]`` (:class:`Data`), and records what the run keeps of its data
(:func:`data_info`: file, events, cross section).

A card with ``data.source`` (a generator that maps samples, DiDi) also loads the source sample
(:func:`load_source`), splits it on its own stream (``source_train`` / ``source_val`` /
``source_test`` in the split), encodes it with the coordinates fitted on the TARGET training part
and pairs rows (:func:`pair_rows`): ``x = [target | source]`` ``[N, 2F]``. :func:`balance_weights` gives the per-event
draw weights of ``train.balance``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from . import crosssection as xsec
from .cards import Card, load_card
from .errors import CardError, HepgenError, InputError
from .events import EventSample
from .io import format_of
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
    start: dict[str, torch.Tensor] | None = None  # weights a new run starts from (a distilled run: the teacher's)


def split_indices(n: int, fractions: tuple[float, ...], seed: int, stream: int = 7) -> dict[str, np.ndarray]:
    """Random train / val / test indices (sorted), deterministic in (n, fractions, seed, stream)
    (the source sample of a didi card is split on its own stream, :data:`SOURCE_STREAM`)."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not 0.99 < sum(fractions) < 1.01 or fractions[0] <= 0:
        raise HepgenError(f"data.split = {list(fractions)}: give three non-negative fractions (train, val, test) summing to 1")
    perm = np.random.default_rng([seed, stream]).permutation(n)
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

    take = take_rows(data)

    coords = process.coords(card).fit(take(split["train"]))
    gen = torch.Generator().manual_seed(card.seed)
    x_tr, c_tr = coords.encode(take(split["train"]), gen)
    if len(split["val"]):
        x_va, c_va = coords.encode(take(split["val"]), gen)
    else:
        x_va, c_va = x_tr[:0], c_tr[:0]
    info = data_info(card, data)
    if card.data.source:
        source = load_source(card, log)
        s_split = split_indices(len(source), card.data.split, card.seed, SOURCE_STREAM)
        if len(s_split["train"]) < 2:
            raise InputError(f"data.source {card.data.source}: only {len(source)} events; too few to train")
        s_take = take_rows(source)
        s_tr = coords.encode(s_take(s_split["train"]), gen)[0]
        s_va = coords.encode(s_take(s_split["val"]), gen)[0] if len(s_split["val"]) else s_tr[:0]
        x_tr, c_tr = pair_rows(x_tr, c_tr, s_tr, card.seed)
        x_va, c_va = pair_rows(x_va, c_va, s_va, card.seed + 1) if len(x_va) and len(s_va) else (
            torch.zeros(0, 2 * coords.dim, dtype=x_tr.dtype), c_tr[:0])
        split.update({f"source_{k}": v for k, v in s_split.items()})
        info.update(source=str(card.data.source), source_events=str(len(source)))
    return Data(x_tr.float(), c_tr.float(), x_va.float(), c_va.float(), split, coords, info)


def take_rows(data) -> Callable[[np.ndarray], object]:
    """Row selection for either kind of training data (EventSample or array)."""
    return lambda idx: data[idx] if isinstance(data, np.ndarray) else data.select(idx)


SOURCE_STREAM = 8  # split_indices stream of a didi card's source sample (the data's is 7)


def source_card(card: Card) -> Card | None:
    """The card named by ``data.source_card`` (None without one); a one-line CardError when its
    ``simulate.output`` is not ``data.source`` (the file it is there to make)."""
    if not card.data.source_card:
        return None
    maker = load_card(card.data.source_card)
    if Path(maker.simulate.output) != Path(card.data.source):
        raise CardError(f"card {card.name}: data.source_card {card.data.source_card}: its simulate.output "
                        f"{maker.simulate.output!r} is not data.source {card.data.source!r}")
    return maker


def load_source(card: Card, log: Callable[[str], None] = print):
    """The source sample of a card with ``data.source``: ``process.load_data`` of the card with
    ``data.path = data.source`` (the card's own process, format by the file's suffix), or of
    ``data.source_card`` (whose simulation makes the file when it is absent); the card's
    ``data.max_events`` limits the source too."""
    maker = source_card(card) or card
    data = dataclasses.replace(maker.data, path=card.data.source, max_events=card.data.max_events,
                               format=format_of(card.data.source) or maker.data.format)
    return processes.get(maker.process.name).load_data(dataclasses.replace(maker, data=data), log)


def pair_rows(x: torch.Tensor, c: torch.Tensor, source: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``([x | source[perm]]`` ``[L, 2D]``, c ``[L, K]``) with L = max(len(x), len(source)): every
    target and every source row at least once, both cycled to length L, the source rows in a
    permutation seeded by ``seed``. The pairs are arbitrary (the model re-pairs every batch)."""
    n, m = len(x), len(source)
    length = max(n, m)
    perm = torch.from_numpy(np.random.default_rng([seed, 9]).permutation(m))
    rows = torch.arange(length)
    return torch.cat([x[rows % n], source[perm[rows % m]]], dim=-1), c[rows % n]


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
