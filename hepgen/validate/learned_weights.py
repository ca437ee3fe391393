"""``hepgen variations``: learned weight variations (PSWeight) for events that have none.

A Pythia sample simulated with ``simulate.psweight`` carries, per event, the ratio r = w_var / w of
each of Pythia's shower variations (NanoAOD's PSWeight, :data:`hepgen.io.variations.PSWEIGHT`). A
generated event has none: the generator learned p(x), not the shower history behind x. What stands in
for it is E[r | x], the mean ratio of the simulated events that look like x. The varied density is
p_var(x) = E[r | x] p(x), so generated events weighted by E[r | x] follow the varied distribution in
every observable, as the simulation's own events weighted by their r do, and a nuisance nu of kind
``psweight`` acts on them through the usual w(x; nu) = 1 + |nu| (r - 1) (:mod:`hepgen.nuisance`).

E[r | x] is regressed from the simulated ("source") events, for all ids at once, by one network:

* inputs: the features of the objects in the classifier test's recipe for the event's category
  (:data:`hepgen.validate.classifier.FEATURES`; Z+jets: log pT, eta, phi of the muons and jets, per
  jet multiplicity), each in the column of its name (a 1-jet event's second-jet columns are 0), then
  the category one-hot; standardised on the source events. Not the observable set's extra
  classifier observables: those are where generators are least precise (Z+jets: pt_all, the recoil
  of everything unclustered), and a regression that leans on them carries the generator's error
  into the weights (measured: ISR H_T chi2/ndf 3.1-4.9 with them, 1.0-1.5 without);
* targets: r - 1, clipped above ``clip`` - 1 (Pythia's FSR up ratios reach 129 on Z+jets, a few
  events that would set the fit; the category's mean restores their share, below); each target's
  squared error divided by its variance, so the ids weigh alike;
* an MLP (``hidden`` x ``layers``, SiLU), Adam with a cosine schedule; a fifth of the events is held
  out, and for each id the epoch of least held-out error is kept (the ratios are mostly noise around
  their mean, R^2 ~ 0.1 for ISR, below 0.01 for FSR, so the ids stop at different epochs);
* the prediction 1 + f is then scaled per category and id so that its weighted mean over the source
  events equals the weighted mean of r: each category's rate change is the simulation's, exactly.

Measured on Z+jets (docs/systematics.md, "Learned PSWeight"): on generated events the learned ISR
ratios reproduce the reweighted independent reference within its statistics; the FSR ones do with
the heavy-tailed FSR weights' error pooled over two Pythia samples
(:func:`hepgen.validate.systematics.pooled_variance`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .. import processes
from ..cards import Card
from ..errors import InputError
from ..events import EventSample
from ..io import write_sample
from ..io.variations import GROUPS
from ..optim import adam
from ..outputs import check_output
from ..processes.base import categories_of
from .classifier import FEATURES
from .inputs import ReadAs, read_generated, read_sample
from .obsset import for_card

MIN_EVENTS = 200  # source events: fewer is an error
RATIO_MIN = 1e-3  # the smallest learned ratio


@dataclass(frozen=True)
class LearnedSettings:
    """The regression's settings (module docstring)."""

    epochs: int = 40
    hidden: int = 256
    layers: int = 3
    clip: float = 20.0
    batch: int = 1024
    lr: float = 1e-3
    seed: int = 0


def _features(sample: EventSample, card: Card,
              names: list[str] | None = None) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(float64 ``[N, F + C]``, the F feature names, each event's category label ``[N]``): each
    event's classifier features (those of its category's recipe), each in the column of its name
    (``names``, default: every name of the sample's categories in order; a name the event's category
    lacks is 0, e.g. a 1-jet event's second jet), then the category one-hot (C: the process's
    categories, in their order)."""
    process = processes.get(card.process.name)
    obsset = for_card(card)
    cats = categories_of(process, sample, card)
    make = FEATURES[obsset.classifier_objects]
    parts = []
    for k in cats.members:
        idx = np.flatnonzero(cats.labels == k)
        if len(idx):
            sub = sample.select(idx)
            x, got = make(sub, (), False, card.process.jet_pt_min)  # the objects alone (module docstring)
            if not got:  # a recipe without objects: the observable set's classifier observables
                x, got = make(sub, obsset.classifier_extra, False, card.process.jet_pt_min)
            parts.append((idx, np.nan_to_num(np.asarray(x, dtype=np.float64)), list(got)))
    names = list(names) if names is not None else list(dict.fromkeys(n for *_, got in parts for n in got))
    column = {n: j for j, n in enumerate(names)}
    out = np.zeros((len(sample), len(names) + len(cats.members)))
    for idx, x, got in parts:
        keep = [j for j, n in enumerate(got) if n in column]
        out[np.ix_(idx, [column[got[j]] for j in keep])] = x[:, keep]
    for j, k in enumerate(cats.members):
        out[cats.labels == k, len(names) + j] = 1.0
    return out, names, cats.labels


def _fit(x: np.ndarray, r: np.ndarray, w: np.ndarray, s: LearnedSettings, progress=None):
    """The regression of ratios ``r`` ``[N, V]`` on features ``x`` ``[N, F]`` (event weights ``w``): a
    callable ``x [M, F] -> [M, V]``, 1 + f of each id at its best held-out epoch, at least
    :data:`RATIO_MIN` (a ratio of two positive weights; a negative one would make w(x; nu) < 0)."""
    rng = np.random.default_rng(s.seed)
    held = rng.random(len(x)) < 0.2
    mean, std = x.mean(0), x.std(0) + 1e-9
    y = np.minimum(r, s.clip) - 1.0
    scale = y[~held].var(0) + 1e-12
    tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    xt, yt, wt = tensor((x - mean) / std), tensor(y / np.sqrt(scale)), tensor(w / w.mean())
    train, val = torch.from_numpy(np.flatnonzero(~held)), torch.from_numpy(np.flatnonzero(held))
    torch.manual_seed(s.seed)
    gen = torch.Generator().manual_seed(s.seed)
    mods, d = [], x.shape[1]
    for _ in range(s.layers):
        mods += [torch.nn.Linear(d, s.hidden), torch.nn.SiLU()]
        d = s.hidden
    net = torch.nn.Sequential(*mods, torch.nn.Linear(d, r.shape[1]))
    opt = adam(net.parameters(), lr=s.lr)
    per_epoch = max(1, int(np.ceil(len(train) / s.batch)))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, s.epochs * per_epoch)
    best = [(np.inf, None)] * r.shape[1]
    for epoch in range(s.epochs):
        perm = train[torch.randperm(len(train), generator=gen)]
        for i in range(0, len(perm), s.batch):
            idx = perm[i:i + s.batch]
            loss = (((net(xt[idx]) - yt[idx]) ** 2).sum(1) * wt[idx]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        with torch.no_grad():
            err = ((((net(xt[val]) - yt[val]) ** 2) * wt[val, None]).mean(0)).numpy()
        state = None
        for j, e in enumerate(err):
            if e < best[j][0]:
                state = state or {k: v.clone() for k, v in net.state_dict().items()}
                best[j] = (float(e), state)
        if progress:
            progress(epoch + 1, s.epochs)

    def raw(a: np.ndarray) -> np.ndarray:
        xa = tensor((a - mean) / std)
        cols = []
        with torch.no_grad():
            for j, (_, state) in enumerate(best):
                net.load_state_dict(state)
                cols.append(net(xa)[:, j].double().numpy() * np.sqrt(scale[j]))
        return np.maximum(1.0 + np.stack(cols, 1), RATIO_MIN)

    return raw


def learn(source: EventSample, card: Card, ids: list[str] | None = None,
          settings: LearnedSettings = LearnedSettings(), progress=None):
    """A predictor ``sample -> {id: E[r | x] [N]}`` fitted on ``source``'s variations ``ids``
    (default: all of them). A source without variations, or without ``ids``, is a one-line
    :class:`InputError`."""
    have = list(source.variations)
    ids = list(ids or have)
    if not have or not set(ids) <= set(have):
        missing = sorted(set(ids) - set(have))
        raise InputError("the source sample has no weight variations" + (f" {missing}" if have else "")
                         + "; simulate it with simulate.psweight: true")
    r = np.stack([np.asarray(source.variations[i], dtype=np.float64) for i in ids], 1)
    if not np.all(np.isfinite(r)):
        raise InputError(f"the source sample's variations {ids} are not all finite")
    if len(source) < MIN_EVENTS:
        raise InputError(f"the source sample has {len(source)} events; learning its variations needs {MIN_EVENTS}")
    x, names, labels = _features(source, card)
    raw = _fit(x, r, source.weight, settings, progress)
    factors = {}
    fit = raw(x)
    for k in np.unique(labels):
        m = labels == k
        w = source.weight[m]
        factors[k] = (w @ r[m]) / np.maximum(w @ fit[m], 1e-300)  # the category's weighted mean ratio, exactly

    def predict(sample: EventSample) -> dict[str, np.ndarray]:
        xs, _, lab = _features(sample, card, names)
        out = raw(xs)
        for k, f in factors.items():
            out[lab == k] *= f
        return {i: out[:, j] for j, i in enumerate(ids)}

    return predict


def cross_fit(source: EventSample, card: Card, ids: list[str] | None = None,
              settings: LearnedSettings = LearnedSettings(), folds: int = 5, progress=None) -> dict[str, np.ndarray]:
    """E[r | x] for ``source``'s own events, cross-fitted: the events are split at random (the
    settings' seed) into ``folds`` parts, and each part's ratios come from a regression (:func:`learn`)
    on the other parts. An event's learned ratio therefore never depends on its own r: what a network
    memorised of its training events' noise does not come back as their weights. This is the form in
    which a simulated sample's learned variations can stand in for its own per-event ones (a
    generator trained on them sees E[r | x] instead of r, the same varied density without the
    weights' spread)."""
    if folds < 2:
        raise InputError(f"cross-fitting needs at least 2 folds, got {folds}")
    if len(source) < folds * MIN_EVENTS:
        raise InputError(f"the source sample has {len(source)} events; {folds} folds need {folds * MIN_EVENTS}")
    part = np.random.default_rng(settings.seed).permutation(len(source)) % folds
    out: dict[str, np.ndarray] = {}
    for k in range(folds):
        inside = np.flatnonzero(part == k)
        predict = learn(source.select(np.flatnonzero(part != k)), card, ids, settings, progress)
        for i, v in predict(source.select(inside)).items():
            out.setdefault(i, np.empty(len(source)))[inside] = v
    return out


def attach(sample_path: str | os.PathLike, source: str | os.PathLike, output: str | os.PathLike, *,
           card: Card | None = None, ids: list[str] | None = None, settings: LearnedSettings = LearnedSettings(),
           force: bool = False, read: ReadAs | None = None, source_read: ReadAs | None = None,
           progress: bool | None = None, folds: int = 1) -> tuple[Path, dict]:
    """Write ``output`` (ROOT or LHE, by its suffix): the events of ``sample_path`` with the variations learned from
    ``source`` (:func:`learn`), in the source's weight groups (PSWeight stays PSWeight); returns
    (path, summary: per id the mean and the 1 / 99 % quantiles of the learned ratios). ``folds`` > 1:
    ``sample_path`` is the source itself and its ratios are cross-fitted (:func:`cross_fit`).
    ``progress``: a bar over the regression's epochs on stderr (None: when stderr is a terminal)."""
    output = Path(output)
    if not output.name.endswith((".root", ".lhe", ".lhe.gz")):
        raise InputError(f"{output}: hepgen variations writes ROOT (.root) or LHE (.lhe, .lhe.gz)")
    if folds > 1 and Path(sample_path).resolve() != Path(source).resolve():
        raise InputError(f"--folds {folds} cross-fits the source's own events: give the source as the sample")
    check_output(output, force)  # fail before the training
    card = card or Card()
    process = processes.get(card.process.name)
    gen = None if folds > 1 else read_generated([sample_path], read, process).sample
    src, _ = read_sample(source, source_read, process=process)
    gen = src if gen is None else gen  # with folds the sample is the source: one read
    show = progress if progress is not None else os.isatty(2)
    with tqdm(disable=not show, desc="learning the variations", unit="epoch", file=sys.stderr) as bar:
        def step(epoch, epochs):
            bar.total = epochs * max(folds, 1)
            bar.update(1)

        learned = (cross_fit(src, card, ids, settings, folds, step) if folds > 1
                   else learn(src, card, ids, settings, step)(gen))
    info = {**gen.info, "variations_learned_from": str(source)}
    if GROUPS in src.info:
        info[GROUPS] = src.info[GROUPS]
    lhe = {} if output.suffix == ".root" else {"sqrt_s": card.process.sqrt_s}  # LHE: <rwgt>, the groups in <initrwgt>
    write_sample(output, replace(gen, variations=learned, info=info), force=force, **lhe)
    summary = {i: {"mean": float(np.mean(v)), "q01": float(np.quantile(v, 0.01)), "q99": float(np.quantile(v, 0.99))}
               for i, v in learned.items()}
    return output, summary
