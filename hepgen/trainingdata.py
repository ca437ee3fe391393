"""The training data of a run: load, split, fit the coordinates, encode.

:func:`prepare_data` loads the card's data (its process's ``load_data``), splits
it with :func:`split_indices` (``data.split``: train / validation / held-out test), fits the
coordinates on the training part only and encodes train and validation into float32 tensors
``x`` ``[N, F]`` and ``c`` ``[N, K]`` (:class:`Data`), and records what the run keeps of its data
(:func:`data_info`: file, events, cross section).

With ``data.weights: file`` the events' weights from the file (:func:`event_weights`: the LHE
event weight, the ROOT ``weight`` / ``genWeight`` branch) go through the split next to x and c
(``w_train`` / ``w_val``, divided by the mean training weight so that they average 1); the
one training loop weights each event's loss with them (:func:`check_weighting`: whether the
family's loss takes them).

A card with ``data.source`` (a generator that maps samples, DiDi) also loads the source sample
(:func:`load_source`), splits it on its own stream (``source_train`` / ``source_val`` /
``source_test`` in the split), encodes it with the coordinates fitted on the TARGET training part
and pairs rows (:func:`pair_rows`): ``x = [target | source]`` ``[N, 2F]``. :func:`balance_weights` gives the per-event
draw weights of ``train.balance``; :func:`importance_draw` moves a power of the event weights from the loss into
how often an event is drawn (``train.weight_power``). With ``model.nuisance`` the training events' slopes of the
nuisance weight w(x; nu) (:func:`hepgen.nuisance.event_slopes`, from the physics events) come along, and coordinates
with categories (Z+jets multiplicities) fit the categories' mean weight terms (``fit_nuisance``) for fractions at nu.
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
from .io.root import weight_branch
from .outputs import atomic_output
from . import processes
from .nuisance import check_weights, event_slopes


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
    # data.weights: file: per-event loss weights [N_train] / [N_val] float32, mean 1 over training (else None)
    w_train: torch.Tensor | None = None
    w_val: torch.Tensor | None = None
    # model.nuisance: the training events' slopes of w(x; nu) [N_train, K, 2] float64 (hepgen.nuisance), else None
    nuisance_slopes: np.ndarray | None = None


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


def prepare_data(card: Card, log: Callable[[str], None] = print, model=None) -> Data:
    """Load, split, fit the coordinates on the training part, encode (float32 tensors); with the
    card's ``model``, :func:`check_weighting` before loading and on the training weights."""
    if model is not None:
        check_weighting(card, model)
    process = processes.get(card.process.name)
    data = process.load_data(card, log)
    n = len(data)
    split = split_indices(n, card.data.split, card.seed)
    if len(split["train"]) < 2:
        raise InputError(f"only {n} events in the training data; too few to train")

    take = take_rows(data)

    info = data_info(card, data)
    weights = event_weights(card, data)
    w_tr = w_va = None
    if weights is not None:
        w_tr, w_va, ess = split_weights(weights, split, str(card.data.path))
        log(f"{card.data.path}: event weights (data.weights: file): effective sample size {ess:.1f} of "
            f"{len(w_tr)} training events, {int((w_tr < 0).sum())} negative")
        info.update(weights="file", effective_train_events=f"{ess:.1f}")
        if model is not None:
            check_weighting(card, model, w_tr)
    train_rows = take(split["train"])
    if isinstance(train_rows, EventSample) and weights is None:
        # the loss counts every event once (data.weights: none): so do the fitted fractions, whatever
        # weights the file holds
        train_rows = dataclasses.replace(train_rows, weight=np.ones(len(train_rows)))
    coords = process.coords(card).fit(train_rows)
    gen = torch.Generator().manual_seed(card.seed)
    x_tr, c_tr = coords.encode(train_rows, gen)
    if len(split["val"]):
        x_va, c_va = coords.encode(take(split["val"]), gen)
    else:
        x_va, c_va = x_tr[:0], c_tr[:0]
    if card.data.source:
        source = load_source(card, log)
        s_split = split_indices(len(source), card.data.split, card.seed, SOURCE_STREAM)
        if len(s_split["train"]) < 2:
            raise InputError(f"data.source {card.data.source}: only {len(source)} events; too few to train")
        s_take = take_rows(source)
        s_tr = coords.encode(s_take(s_split["train"]), gen)[0]
        s_va = coords.encode(s_take(s_split["val"]), gen)[0] if len(s_split["val"]) else s_tr[:0]
        n_tr, n_va = len(x_tr), len(x_va)
        x_tr, c_tr = pair_rows(x_tr, c_tr, s_tr, card.seed)
        x_va, c_va = pair_rows(x_va, c_va, s_va, card.seed + 1) if len(x_va) and len(s_va) else (
            torch.zeros(0, 2 * coords.dim, dtype=x_tr.dtype), c_tr[:0])
        if w_tr is not None:  # pair_rows cycles the target rows: their weights cycle with them
            w_tr, w_va = w_tr[torch.arange(len(x_tr)) % n_tr], w_va[torch.arange(len(x_va)) % max(n_va, 1)]
        split.update({f"source_{k}": v for k, v in s_split.items()})
        info.update(source=str(card.data.source), source_events=str(len(source)))
    slopes = event_slopes(card, data)
    if slopes is not None:
        slopes = slopes[split["train"]]
        check_weights(card.model.nuisance, slopes)  # before the run folder exists
        fit_nuisance = getattr(coords, "fit_nuisance", None)  # categories whose fractions follow nu (Z+jets)
        if fit_nuisance is not None:
            fit_nuisance(train_rows, slopes)
    return Data(x_tr.float(), c_tr.float(), x_va.float(), c_va.float(), split, coords, info,
                w_train=w_tr, w_val=w_va, nuisance_slopes=slopes)


def event_weights(card: Card, data) -> np.ndarray | None:
    """The events' weights float64 ``[N]`` with ``data.weights: file`` (None with ``none``). A
    process that makes its events in code (a toy) is a one-line :class:`CardError`; a ROOT file
    without a weight branch (``weight``, ``genWeight`` or ``data.branches`` ``weight``), NaN or
    infinite weights and weights that are all zero are one-line :class:`InputError`."""
    if card.data.weights == "none":
        return None
    if not isinstance(data, EventSample):
        raise CardError(f"data.weights: file: process {card.process.name} makes its events in code and they carry "
                        "no weights; set data.weights: none")
    path = card.data.path
    if card.data.format == "root" and weight_branch(path, card.data.tree, dict(card.data.branches) or None) is None:
        raise InputError(f"{path}: tree {card.data.tree!r} has no event weight branch (weight or genWeight) for "
                         "data.weights: file; map one in data.branches (weight: BRANCH) or set data.weights: none")
    w = np.asarray(data.weight, dtype=np.float64)
    bad = ~np.isfinite(w)
    if bad.any():
        raise InputError(f"{path}: {int(bad.sum())} of {len(w)} event weights are NaN or infinite")
    if not np.any(w != 0):
        raise InputError(f"{path}: all {len(w)} event weights are zero; there is no density to learn")
    return w


def split_weights(w: np.ndarray, split: dict[str, np.ndarray], where: str
                  ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(train, validation) weights float32, divided by the mean training weight, and the
    effective sample size (sum w)² / sum w² of the training part. Training (or a
    non-empty validation) part whose weights do not sum to > 0 is a one-line :class:`InputError`."""
    w_tr, w_va = w[split["train"]], w[split["val"]]
    total = w_tr.sum()
    if not total > 0 or len(w_va) and not w_va.sum() > 0:
        part, s = ("training", total) if not total > 0 else ("validation", w_va.sum())
        raise InputError(f"{where}: the {part} events' weights sum to {s:.6g}, not > 0; no density to learn")
    mean = total / len(w_tr)
    ess = float(total**2 / np.sum(w_tr**2))
    return torch.from_numpy(w_tr / mean).float(), torch.from_numpy(w_va / mean).float(), ess


def check_weighting(card: Card, model, weights: torch.Tensor | None = None) -> None:
    """A one-line :class:`CardError` when the card's ``data.weights: file`` meets a family whose
    loss takes no weights (``event_weights`` "none"), or training ``weights`` with negative entries
    a family that takes only w >= 0 ("positive")."""
    if card.data.weights == "none":
        return
    takes = model.event_weights  # an ensemble answers for its members' family
    if takes == "none":
        raise CardError(f"data.weights: file: model.family {card.model.family} cannot train on weighted events (its "
                        "loss has no per-event form); unweight the sample or choose another family")
    if takes == "positive" and weights is not None and bool((weights < 0).any()):
        raise CardError(f"data.weights: file: {int((weights < 0).sum())} training events have negative weights, which "
                        f"model.family {card.model.family} cannot take (its loss is a bound that negative weights "
                        "would loosen without limit); choose a family with a likelihood or regression loss")


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


def onehot_columns(c: torch.Tensor) -> torch.Tensor:
    """``[C]`` bool: the columns of conditions ``c`` ``[N, C]`` that hold only 0 and 1 (the one-hot
    classes, e.g. the jet multiplicity); a continuous condition (a drawn mass) is not a class."""
    return ((c == 0) | (c == 1)).all(0)


def balance_weights(c: torch.Tensor, balance: float, w: torch.Tensor | None = None, cap: float = 0.0
                    ) -> torch.Tensor | None:
    """Per-event draw weights f_k ** -balance for one-hot conditions ``c`` ``[N, K]`` (f_k: the
    fraction of condition k), or None for plain shuffling (balance 0 or no one-hot condition).
    The model still learns each conditional density; only how often each multiplicity is
    visited changes (the generated fractions come from the counts, not from the model).
    With event weights ``w`` ``[N]`` f_k is the weighted fraction sum_k |w| / sum |w|: the share of
    the loss a class holds, which for a biased sample differs from its share of the rows (biased
    pT-hat Z+jets: 11 % of the rows but 3.5 % of the weight are 3-jet events).

    Several one-hot groups (the unfolding's reco and particle multiplicities): the event's weight is
    the sum over its set columns. With ``cap`` > 0 (``train.balance_cap``) the classes are instead the
    distinct patterns of set columns (the (reco, particle) multiplicity pairs), each drawn with
    f ** -balance but at most ``cap`` times the most common pattern's weight, so a pair of a few
    hundred events is not drawn a hundred times more often than the bulk."""
    if balance <= 0:
        return None
    members = c[:, onehot_columns(c)].double()  # [N, classes]: an event's classes
    if members.shape[-1] == 0:  # no condition, or only continuous ones: no class to balance
        return None
    capped = cap > 0
    if capped:  # the classes are the distinct patterns, one per event
        members = torch.nn.functional.one_hot(torch.unique(members, dim=0, return_inverse=True)[1]).double()
    size = torch.ones(len(c), dtype=torch.float64) if w is None else w.double().abs()
    frac = (members * size[:, None]).sum(0) / size.sum().clamp_min(1e-300)
    per_class = torch.where(frac > 0, frac.clamp_min(1e-12) ** -balance, torch.zeros_like(frac))
    if capped:
        per_class = per_class.clamp_max(cap * float(frac.max()) ** -balance)
    return (members @ per_class).float()


def importance_draw(draw: torch.Tensor | None, w: torch.Tensor | None, power: float
                    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Split the event weights ``w`` ``[N]`` between how often an event is drawn and how much its loss
    counts (``train.weight_power`` p): events are drawn with ``draw * |w|^p`` (``draw``: the
    :func:`balance_weights`, None = uniform) and weighted by ``sign(w) |w|^(1-p) * k``, with
    k = sum(draw |w|^p) / sum(draw). For every p the expected loss of a drawn event is that of
    p = 0 (drawn with ``draw``, weighted by w), so the trained density is the same; what changes is
    the gradient's variance: at p = 1 a batch holds events in proportion to their weight, each
    counted with unit size, and an event of weight 10^-4 is seldom visited instead of visited and
    ignored. Returns (draw weights or None for plain shuffling, loss weights); p > 0 without weights is a
    one-line :class:`CardError`."""
    if power > 0 and w is None:
        raise CardError(f"train.weight_power: {power} draws events by their weights, but these rows carry none; "
                        "set data.weights: file or train.weight_power: 0")
    if w is None or power <= 0:
        return draw, w
    wd = w.double()
    size = wd.abs() ** power
    base = torch.ones_like(wd) if draw is None else draw.double()
    k = float((base * size).sum() / base.sum())
    loss = torch.sign(wd) * wd.abs() ** (1.0 - power) * k
    return (base * size).float(), loss.float()


BOOTSTRAP_STREAM = 13  # the seed stream of model.ensemble.bootstrap's resample counts


def bootstrap_counts(card: Card, n_train: int) -> torch.Tensor | None:
    """``[N_train, K]`` float32: how often each training event is in member k's bootstrap resample,
    Poisson(1) (the bootstrap of N events for large N), drawn once from the card's seed, so a
    resumed run gets the same; None unless ``model.ensemble.bootstrap``."""
    ens = card.model.ensemble
    if not ens.bootstrap:
        return None
    counts = np.random.default_rng([card.seed, BOOTSTRAP_STREAM]).poisson(1.0, size=(n_train, ens.members))
    return torch.from_numpy(counts).float()


def draw_and_loss_weights(data: Data, train) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The training rows' draw weights and loss weights: ``train.balance`` (:func:`balance_weights`,
    with the rows' event weights) and ``train.weight_power`` (:func:`importance_draw`)."""
    draw = balance_weights(data.c_train, train.balance, data.w_train, train.balance_cap)
    return importance_draw(draw, data.w_train, train.weight_power)
