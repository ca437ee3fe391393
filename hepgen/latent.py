"""The training rows of a refined run (LASER): the base run's latent noise with DCTR weights.

A card with ``refine.base`` (written by ``hepgen refine``, :mod:`hepgen.refine`) trains the latent
refiner of :mod:`hepgen.models.laser`. :func:`refine_data` (called by the one training loop through
:func:`hepgen.trainrows.training_rows`) makes its rows:

1. the base run (``refine.base``, its ``best.pt``; :func:`base_run` refuses what LASER cannot refine,
   and a ``best.pt`` whose sha256 is not ``refine.checkpoint``);
2. ``refine.events`` events of the base run, made by the base's own generation pipeline (the
   process's, :func:`hepgen.pipeline.frozen_sampler`) from noise of a stream of their own
   (:data:`LATENT_STREAM`); for each event the generator's latent noise z ``[m]`` and condition c
   ``[C]`` are what the pipeline handed the generator (recorded by a forward hook, so the process's
   own noise columns, e.g. the Z+jets multiplicity, keep their meaning);
3. the DCTR weight of each event that passes the process's selection: the cross-fitted classifier
   of ``hepgen reweight`` (:func:`hepgen.validate.reweight.dctr_weights`, or
   :func:`~hepgen.validate.reweight.dctr_weights_array` for events that are arrays) between these
   events and (at most ``refine.events`` of) the base run's TRAINING events (its ``split.npz``,
   the ``validate.classifier_*`` settings). Events the selection drops get weight 0: the refined
   generator learns not to make them;
4. rows z with c and weights (mean 1 over the training part); the last ``n val / (train + val)``
   (``data.split``) for the validation loss.

**Fresh latents** (``refine.latents: N``): the weighted sample of step 3 is finite, and with mild
weights a refiner trained on it fits the noise of those weights. The weight of a latent is a
deterministic function, w(z, c) = w_DCTR(G(z, c)), and the classifiers of step 3 can score events
they did not learn from. So N more base events are made (noise stream :data:`FRESH_STREAM`), each
weighted by the mean logit of every fold model of every classifier training (none saw it; the
classifier test's ``unseen`` events), and the refiner trains on those N latents; the validation
rows stay the base's (out of fold). On Z+jets the fresh events so weighted reach a classifier AUC of
0.511 / 0.512 / 0.511 against an independent reference (unweighted 0.540 / 0.528 / 0.549), where a
regression of the weights on [z | c] (the first version) explained 0.84 / 0.31 / 0.12 of their
variance per multiplicity. Making the fresh events costs what generating them costs.

**The cache.** Steps 2 and 3 (and the fresh latents) cost most of a refinement (Z+jets, 200 000
events and 1 M fresh latents: about 19 minutes on one thread), and they depend only on the base's
``best.pt``, the card's seed, ``refine.events``, ``refine.latents`` and the ``validate`` section (the
classifier's settings). :func:`refine_data` keeps them in the base run's folder,
``refine_cache/<key>.pt`` (key: sha256/16 of those), and a later refinement with the same values
(another refiner, more epochs) reads them back and says so in its log. A folder that cannot be
written only costs the cache; delete ``refine_cache/`` to free the space (1 M Z+jets latents: about
90 MB).

The log and ``data.json`` give the classifier's AUC and the effective sample size of the weights,
(sum w)^2 / sum w^2. The refined run keeps the base's coordinates, ``split.npz`` and cross section,
and starts from the base's weights (:attr:`Data.start`). The rows are a deterministic function of
the card and the base run (at a fixed number of torch threads), so a resumed run makes the same ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from .cards import Card, card_to_dict
from .errors import CardError, InputError
from .events import EventSample
from .models.base import normal_log_prob
from .models.laser import check_base
from .outputs import atomic_output
from .pipeline import frozen_sampler
from .runs import Run, load_run
from .teacher import verified_hash
from .trainingdata import Data, onehot_columns, take_rows
from .validate.histograms import effective_size
from .validate.reweight import dctr_weights, dctr_weights_array

LATENT_STREAM = 41  # the latent noise's seed stream (with the card's seed)
FRESH_STREAM = 43  # the fresh latents' (refine.latents) seed stream
BATCH = 4096  # events per generation batch
CACHE_DIR = "refine_cache"  # in the base run's folder: the weighted latents of earlier refinements
CACHE_FORMAT = 1  # bump when what the cache holds changes


def base_run(path: str | os.PathLike) -> Run:
    """The base run at ``path`` (best.pt); one-line :class:`InputError` when LASER cannot refine it."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"base run {path} does not exist")
    run = load_run(path, "best")
    check_base(run.model, f"base run {path}")
    if run.maps_samples:
        raise InputError(f"base run {path}: its generator maps source events; LASER refines a generator of noise")
    if run.card.data.weights != "none":
        raise CardError(f"base run {path}: data.weights: {run.card.data.weights}: refining a run trained on weighted "
                        "events is not supported (the DCTR classifier compares with unweighted training events)")
    return run


@torch.no_grad()
def base_latents(base: Run, n: int, seed: int, progress: bool | None = None, stream: int = LATENT_STREAM,
                 desc: str = "base events"):
    """(z ``[n, m]``, c ``[n, C]``, outputs): ``n`` events of the base pipeline (draw None) from noise
    of stream ``stream`` of ``seed``; z and c as the pipeline handed them to the generator,
    outputs the pipeline's (a tuple of tensors, concatenated over batches)."""
    gen = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, stream]).generate_state(1)[0]))
    sampler = frozen_sampler(base.model, base.card.seed)
    pipe = base.process.pipeline(base, sampler, None).eval()
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    hook = sampler.module.register_forward_hook(lambda _m, args, _out: seen.append((args[0], args[1])))
    zs, cs, outs = [], [], []
    show = progress if progress is not None else os.isatty(2)
    try:
        with tqdm(total=n, disable=not show, desc=desc, unit="ev", file=sys.stderr) as bar:
            for i in range(0, n, BATCH):
                b = min(BATCH, n - i)
                seen.clear()
                out = pipe(pipe.draw_noise(b, gen))
                if len(seen) != 1 or len(seen[0][0]) != b:
                    raise InputError(f"base run {base.path}: process {base.card.process.name} does not call its "
                                     "generator once per event batch; LASER cannot attach weights to its noise")
                zs.append(seen[0][0].clone())
                cs.append(seen[0][1].clone())
                outs.append(out if isinstance(out, tuple) else (out,))
                bar.update(b)
    finally:
        hook.remove()
    return torch.cat(zs), torch.cat(cs), tuple(torch.cat(parts) for parts in zip(*outs))


def latent_weights(card: Card, base: Run, outputs: tuple, log: Callable[[str], None], fresh: tuple | None = None
                   ) -> tuple[np.ndarray, float, np.ndarray | None]:
    """(w ``[n]`` float64, AUC, w of ``fresh`` or None): the DCTR weight of each base event (0 where
    the process's selection drops it) against the base's training events, out of fold; ``fresh``:
    the outputs of more base events, weighted by the same classifiers, which did not learn from
    them (see the module docstring)."""
    process = base.process

    def kept(outs):
        keep = process.select(tuple(t.double().numpy() for t in outs), base.card).keep
        return keep, tuple(t[torch.from_numpy(keep)] for t in outs)

    keep, kept_out = kept(outputs)
    keep_f, kept_f = (None, None) if fresh is None else kept(fresh)
    split = base.path / "split.npz"
    if not split.is_file():
        raise InputError(f"base run {base.path} has no split.npz (its training events are unknown)")
    data = process.load_data(base.card, log)
    with np.load(split) as parts:
        rows = parts["train"]
    rows = np.sort(np.random.default_rng([card.seed, LATENT_STREAM]).permutation(rows)[:card.refine.events])
    ref = take_rows(data)(rows)
    if isinstance(ref, EventSample):
        unseen = None if fresh is None else process.to_events(kept_f, {})
        w_kept, res, w_f = dctr_weights(process.to_events(kept_out, {}), ref, card, f"base run {base.path}",
                                        unseen=unseen)
        score = res.auc_total
    else:
        w_kept, score, w_f = dctr_weights_array(kept_out[0].double().numpy(), np.asarray(ref, dtype=np.float64), card,
                                                unseen=None if fresh is None else kept_f[0].double().numpy())
    w = np.zeros(len(keep))
    w[keep] = w_kept
    if fresh is None:
        return w, score, None
    w_fresh = np.zeros(len(keep_f))
    w_fresh[keep_f] = w_f
    return w, score, w_fresh


def _ess(w: np.ndarray) -> float:
    """The effective sample fraction of weights ``w``: :func:`effective_size` over their number."""
    return effective_size(w) / len(w) if len(w) else float("nan")


def _onehot_classes(c: torch.Tensor) -> list[int]:
    """The one-hot condition columns of ``c`` that more than one row sets."""
    return [j for j in torch.nonzero(onehot_columns(c)).flatten().tolist() if c[:, j].sum() > 1]


def cache_key(card: Card, checkpoint: str) -> str:
    """sha256/16 of what the weighted latents depend on (see the module docstring)."""
    spec = {"format": CACHE_FORMAT, "checkpoint": checkpoint, "seed": card.seed, "events": card.refine.events,
            "latents": card.refine.latents, "validate": card_to_dict(card)["validate"]}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def weighted_latents(card: Card, base: Run, checkpoint: str, log: Callable[[str], None] = print,
                     progress: bool | None = None) -> dict:
    """Steps 2 and 3 of the module docstring, read from the base's cache when it holds them: a dict
    with ``z`` ``[n, m]``, ``c`` ``[n, C]``, ``w`` ``[n]`` (float64), ``auc``, and with ``refine.latents``
    ``fresh_z``, ``fresh_c``, ``fresh_w``."""
    spec = card.refine
    path = base.path / CACHE_DIR / f"{cache_key(card, checkpoint)}.pt"
    if path.is_file():
        try:
            rows = torch.load(path, weights_only=True)
            log(f"weighted latents from the cache {path} (delete it to make them again)")
            return rows
        except Exception as err:  # a damaged cache is made again, never trusted
            log(f"the cache {path} is unreadable ({type(err).__name__}); making the weighted latents again")
    z, c, outputs = base_latents(base, spec.events, card.seed, progress)
    fresh = None
    if spec.latents:  # refine.latents: fresh base events, weighted by the classifiers trained on the others
        fresh = base_latents(base, spec.latents, card.seed, progress, stream=FRESH_STREAM, desc="fresh base events")
    w, score, w_fresh = latent_weights(card, base, outputs, log, None if fresh is None else fresh[2])
    rows = {"z": z.float(), "c": c.float(), "w": torch.from_numpy(w), "auc": float(score)}
    if fresh is not None:
        rows.update(fresh_z=fresh[0].float(), fresh_c=fresh[1].float(), fresh_w=torch.from_numpy(w_fresh))
    try:
        path.parent.mkdir(exist_ok=True)
        with atomic_output(path, force=True) as tmp:
            torch.save(rows, tmp)
    except OSError as err:  # a read-only base folder costs the cache, not the refinement
        log(f"could not cache the weighted latents in {path.parent} ({err.strerror or err})")
    return rows


def likelihood_scale(z: torch.Tensor, w: torch.Tensor, log: Callable[[str], None] = print) -> dict[str, str]:
    """Where the INN refiner's validation loss, mean(-w log q(z | c)) over the validation latents z
    ``[n, m]`` with weights w ``[n]`` (the training weights' normalisation, mean 1), starts and where
    it could end: the identity map (q = N(0, 1), the base) scores mean(-w log N(z)); the exact
    weighted density q = N(z) w scores mean(w log w) less (the gain available: about Var(w) / 2 for
    mild weights). Logged, and returned for ``data.json``."""
    z, w = z.double(), w.double()
    identity = float(-(w * normal_log_prob(z)).mean())
    gain = float(torch.where(w > 0, w * torch.log(w.clamp_min(1e-300)), torch.zeros_like(w)).mean())
    log(f"validation latents: the identity map (the base) scores a loss of {identity:.5f}; the exact weighted "
        f"density would score {identity - gain:.5f} (gain available {gain:.5f} nats)")
    return {"identity_validation_loss": f"{identity:.6f}", "validation_gain_available": f"{gain:.6f}"}


def refine_data(card: Card, log: Callable[[str], None] = print, progress: bool | None = None, model=None) -> Data:
    """The training rows of a refined card (see the module docstring); ``model``: the card's
    :class:`~hepgen.models.laser.Refined`, whose base gets the base run's weights in :attr:`Data.start`."""
    spec = card.refine
    base = base_run(spec.base)
    found = verified_hash(base, spec.checkpoint, "base run", "refine.checkpoint")
    log(f"base run {base.path} (best.pt {found}, epoch {base.epoch + 1}): {spec.events} latent vectors")
    rows = weighted_latents(card, base, found, log, progress)
    z, c, w, score = rows["z"], rows["c"], rows["w"].numpy(), rows["auc"]
    fresh = (rows["fresh_z"], rows["fresh_c"]) if spec.latents else None
    w_fresh = rows["fresh_w"].numpy() if spec.latents else None
    ess = effective_size(w)
    log(f"DCTR weights of the base events: classifier AUC {score:.4f}, effective sample size {ess:.1f} of {len(w)} "
        f"({ess / len(w):.3f}), {int((w == 0).sum())} dropped by the selection")
    train_frac, val_frac = card.data.split[0], card.data.split[1]
    n = len(z)
    n_val = min(int(round(n * val_frac / (train_frac + val_frac))), n - 2)
    n_train = n - n_val
    wt = torch.from_numpy(w / w[:n_train].mean()).float()
    info = {}
    if fresh is not None:  # train on the fresh latents; validate on the base's validation part (out of fold)
        wf = torch.from_numpy(w_fresh / w_fresh.mean()).float()
        per = ", ".join(f"{_ess(w_fresh[(fresh[1][:, j] == 1).numpy()]):.3f}" for j in _onehot_classes(fresh[1]))
        log(f"{spec.latents} fresh latents weighted by those classifiers: effective sample fraction "
            f"{_ess(w_fresh):.3f}" + (f" (per condition class {per})" if per else ""))
        z, c, wt = torch.cat([fresh[0].float(), z[n_train:]]), torch.cat([fresh[1].float(), c[n_train:]]), \
            torch.cat([wf, wt[n_train:]])
        n_train = spec.latents
        info = {"fresh_latents": str(spec.latents)}
    split = {}
    with np.load(base.path / "split.npz") as parts:
        split = {k: parts[k] for k in parts.files}
    info = {**base.data_info, "refined_from": str(base.path), "base_checkpoint": found, "latent_events": str(n),
            "dctr_auc": f"{score:.5f}", "dctr_effective_sample_size": f"{ess:.1f}", **info}
    if spec.refiner == "inn" and n_train < len(z):  # the INN's validation loss is the weighted likelihood
        info.update(likelihood_scale(z[n_train:], wt[n_train:], log))
    start = None
    if model is not None:
        model.base.load_state_dict(base.model.state_dict())
        start = {k: v.clone() for k, v in model.state_dict().items()}
    return Data(z[:n_train], c[:n_train], z[n_train:], c[n_train:], split,
                base.coords, info, start=start, w_train=wt[:n_train], w_val=wt[n_train:])
