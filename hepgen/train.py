"""One training loop for every generator family.

``train(card)`` prepares the card's data (:func:`hepgen.trainingdata.prepare_data`: load, split into train /
validation / held-out test, fit the coordinates on the training part) and minimises ``model.loss(x, c) +
kl_scale * KL / N_train`` (the KL term only for Bayesian models) with the optimiser and per-batch schedule of
:mod:`hepgen.optim` (``data.weights: file``: ``model.loss(x, c, w)``, each event's loss times its file weight,
mean 1). Each epoch ends with a validation loss (on a fixed random stream, so it does not disturb training), a
line in ``train.log``, ``last.pt`` and, on improvement, ``best.pt`` (:class:`hepgen.runs.Checkpoint`).
``train.patience`` > 0 stops early. With ``train.ema`` > 0 the weight average is what is validated, saved as
``model`` and generates; ``last.pt`` also keeps the raw weights. ``distill.teacher``: trains on its teacher's pairs,
from its weights (:mod:`hepgen.teacher`). ``model.nuisance``: c = [c | nu], loss x w(x; nu) (:mod:`hepgen.nuisance`).

``train(resume=RUN)`` continues from ``RUN/last.pt`` and reaches the same parameters, bit for bit, as an
uninterrupted run: shuffling uses its own ``torch.Generator``, the model's noise the global torch RNG, and
both are saved with the schedule (:mod:`hepgen.rngstate`). A non-finite loss stops with :class:`HepgenError`;
``last.pt`` stays the last good one.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the same loop runs with DistributedDataParallel
(:mod:`hepgen.distributed`): every rank sees a disjoint 1/world of each epoch's permutation, the gradients are
averaged, rank 0 writes the run folder and runs ``after`` (``hepgen train``: :func:`hepgen.workflow.finish_run`).
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm import tqdm

from .cards import Card, dump_card, load_card
from .distributed import broadcast, check_replicas, end_dist, gather, init_dist, loss_module, resolve_device
from .errors import HepgenError, InputError
from .nn.bayesian import is_bayesian, kl_divergence
from .nuisance import TrainingConditions, log_summary
from .optim import WeightAverage, make_optimizer, make_scheduler
from .outputs import atomic_output
from .rngstate import rng_state, set_rng_state
from .runlog import HeldLog, RunLog, new_run_dir, plot_history, write_data_info, write_history, write_text
from .runs import Checkpoint, build_for
from .trainingdata import bootstrap_counts, draw_and_loss_weights, source_card, write_split
from .trainrows import discflow_for, training_rows

Log = Callable[[str], None]


@torch.no_grad()
def validation_loss(model: nn.Module, x: torch.Tensor, c: torch.Tensor, batch: int, seed: int, w=None) -> float | None:
    """Mean loss over (x, c) (with weights w [N]: sum w loss / sum w) on a fixed random stream (training RNG untouched)."""
    if len(x) == 0:
        return None
    was = model.training
    model.eval()
    total = 0.0
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed + 1_000_003)
        for i in range(0, len(x), batch):
            part = (x[i:i + batch], c[i:i + batch]) + (() if w is None else (w[i:i + batch],))
            total += float(model.loss(*part)) * len(part[0])
    model.train(was)
    return total / (len(x) if w is None else float(w.double().sum()))


def _resume_card(resume: Path) -> Card:
    if not (resume / "card.yaml").is_file():
        raise InputError(f"--resume {resume}: not a hepgen run folder (no card.yaml)")
    if not (resume / "last.pt").is_file():
        raise InputError(f"--resume {resume}: no last.pt (no epoch finished); start a new run")
    return load_card(resume / "card.yaml")


def train(card: Card | None = None, *, resume: str | os.PathLike | None = None, progress: bool | None = None,
          run_dir: str | os.PathLike | None = None, after: Callable[[Path, Log], None] | None = None,
          max_epochs: int | None = None) -> Path:
    """Train the card's model (or resume run ``resume``); returns the run folder.

    ``max_epochs`` stops after that many epochs in this session (the schedule still spans
    ``train.epochs``); used to test resuming. ``after(path, log)`` runs once the run has
    finished (None or False: nothing).
    """
    if resume is not None:
        resume = Path(resume)
        card = _resume_card(resume)
    if card is None:
        raise ValueError("train needs a card or resume")
    device = resolve_device(card.train.device)
    if card.train.threads:
        torch.set_num_threads(card.train.threads)
    dist = init_dist(device)
    device = dist.place(device)

    # model and data before the run folder: settings or data it rejects leave nothing behind
    torch.manual_seed(card.seed)
    _, model = build_for(card)
    source_card(card)  # a didi card's data.source_card must make data.source
    early = HeldLog(dist.main)
    data = training_rows(card, early, progress, model, report=bool(after))
    draw_weights, w_loss = draw_and_loss_weights(data, card.train)

    # run folder (rank 0 decides)
    if dist.main:
        path = resume if resume is not None else (Path(run_dir) if run_dir else new_run_dir(card))
        path.mkdir(parents=True, exist_ok=True)
    else:
        path = None
    path = Path(broadcast(str(path) if path else None, dist))
    log = RunLog(path / "train.log" if dist.main else None)
    if dist.main and resume is None:
        write_text(path / "card.yaml", dump_card(card))
    ens, kind = card.model.ensemble, " (Bayesian)" if card.model.bayes.enabled else ""
    kind += f" (repulsive ensemble of {ens.members}{', bootstrap' * ens.bootstrap})" if ens.members > 1 else ""
    log(f"{'resuming' if resume else 'training'} {card.model.family}{kind} "
        f"on {card.process.name} -> {path} (device {device}, {torch.get_num_threads()} threads"
        f"{f', {dist.world} ranks' if dist.on else ''})")
    if dist.main:
        early.write_to(path / "train.log")
        write_split(data.split, path / "split.npz")
        write_data_info(data.info, path / "data.json")
        with atomic_output(path / "coords.pt", force=True) as tmp:
            torch.save(data.coords.state_dict(), tmp)
    n_train = len(data.x_train)
    log(f"events: {n_train} train, {len(data.x_val)} validation, {len(data.split['test'])} held-out test; "
        f"{data.coords.dim} coordinates, {data.coords.cond_dim} conditions{log_summary(card)}")

    model.attach_coords(data.coords)
    if resume is None:
        if data.start is not None:  # a distilled run: the teacher's weights
            model.load_state_dict(data.start)
        model.fit_data(data.x_train)  # e.g. DiDi's fill columns (a resumed run loads them)
    model = model.to(device)
    bayes = is_bayesian(model)
    # the model that is validated, saved as "model" and generates: the weight average when on
    ema = WeightAverage(model, card.train.ema) if card.train.ema > 0 else None
    kept = ema.shadow if ema else model
    lossmod = loss_module(model, dist)
    opt = make_optimizer(model, card)
    per_rank = n_train // dist.world
    batch = card.train.batch_size
    steps_per_epoch = max(math.ceil(per_rank / batch), 1)
    sched = make_scheduler(opt, card, card.train.epochs * steps_per_epoch)
    shuffle = torch.Generator().manual_seed(card.seed + 17)
    torch.manual_seed(card.seed + 31 * dist.rank + 1)  # model noise stream (per rank)

    history, best_val, bad_epochs, start_epoch = [], math.inf, 0, 0
    if resume is not None:
        ckpt = Checkpoint.load(path / "last.pt")
        if not ckpt.resumable or (ema is not None) != (ckpt.ema is not None):
            raise InputError(f"--resume {path}: last.pt does not hold the state to resume this card's training")
        model.load_state_dict(ckpt.raw_model if ema else ckpt.model)
        if ema:
            ema.load_state_dict(ckpt.ema, ckpt.model)
        opt.load_state_dict(ckpt.optimizer)
        sched.load_state_dict(ckpt.scheduler)
        if len(ckpt.rng) != dist.world:
            raise HepgenError(f"--resume {path}: saved with {len(ckpt.rng)} ranks, now {dist.world}")
        set_rng_state(ckpt.rng[dist.rank], shuffle)
        history, best_val, bad_epochs = ckpt.history, ckpt.best_val, ckpt.bad_epochs
        start_epoch = card.train.epochs if ckpt.stopped_early else ckpt.epoch + 1
    xtr, ctr, xva, cva = (t.to(device) for t in (data.x_train, data.c_train, data.x_val, data.c_val))
    wtr, wva = [None if w is None else w.to(device) for w in (w_loss, data.w_val)]
    conditions = TrainingConditions(card, data.nuisance_slopes, device, draw_weights, bootstrap_counts(card, n_train))
    disc = discflow_for(card, xtr, ctr, wtr, ckpt.discriminator if resume is not None else None)  # DiscFlow or None
    kl_weight = card.model.bayes.kl_scale / n_train
    show = progress if progress is not None else (os.isatty(2) and dist.main)
    stopped_early, end_epoch = False, (card.train.epochs if max_epochs is None else min(card.train.epochs, start_epoch + max_epochs))
    model.train()
    for epoch in range(start_epoch, end_epoch):
        t0 = time.perf_counter()
        w_ep = wtr if disc is None else disc.weights(epoch, kept, log)  # per-event loss weights of this epoch
        if draw_weights is None:
            perm = torch.randperm(n_train, generator=shuffle)
        else:
            perm = torch.multinomial(draw_weights, n_train, replacement=True, generator=shuffle)
        if dist.on:
            perm = perm[: per_rank * dist.world][dist.rank::dist.world]
        perm = perm.to(device)
        sum_loss = torch.zeros((), device=device)
        sum_kl = 0.0
        with tqdm(total=steps_per_epoch, disable=not show, desc=f"epoch {epoch + 1}/{card.train.epochs}",
                  leave=False, file=sys.stderr) as bar:
            for step in range(steps_per_epoch):
                idx = perm[step * batch:(step + 1) * batch]
                loss = lossmod(*conditions.batch(xtr, ctr, w_ep, idx))
                total = loss
                if bayes:
                    kl = kl_divergence(model) * kl_weight
                    total = loss + kl
                    sum_kl += float(kl.detach())
                if not torch.isfinite(total):
                    last = path / "last.pt"
                    keep = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written"
                    raise HepgenError(f"training diverged: loss is {float(total.detach())} at epoch {epoch + 1}, step {step + 1}; "
                                      f"{keep} (try a lower train.lr or train.grad_clip)")
                opt.zero_grad(set_to_none=True)
                total.backward()
                if card.train.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), card.train.grad_clip)
                opt.step()
                sched.step()
                if ema:
                    ema.update()
                sum_loss += loss.detach()
                bar.update(1)
        train_loss = float(sum_loss) / steps_per_epoch
        val = validation_loss(kept, xva, conditions.nominal(cva), max(batch, 4096), card.seed, wva) if dist.main else None
        entry = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val,
                 "kl": sum_kl / steps_per_epoch if bayes else None, "lr": opt.param_groups[0]["lr"],
                 "seconds": time.perf_counter() - t0}
        history.append(entry)
        improved = val is not None and val < best_val
        if improved:
            best_val, bad_epochs = val, 0
        else:
            bad_epochs += 1
        stop_now = card.train.patience > 0 and val is not None and bad_epochs >= card.train.patience
        stop_now = bool(broadcast(stop_now, dist))
        rng = gather(rng_state(shuffle), dist)
        if dist.main:
            best = Checkpoint(epoch, kept.state_dict(), data.coords.state_dict())
            if improved or val is None:
                best.save(path / "best.pt")
            Checkpoint(epoch, best.model, best.coords, raw_model=model.state_dict() if ema else None,
                       ema=ema.state_dict() if ema else None, optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                       rng=rng, history=history, best_val=best_val, bad_epochs=bad_epochs,
                       stopped_early=stop_now, discriminator=disc and disc.state()).save(path / "last.pt")
            write_history(history, path / "history.json")
            kl_txt = f"  kl {entry['kl']:.4g}" if bayes else ""
            val_txt = f"  val {val:.5f}{' *' if improved else ''}" if val is not None else ""
            log(f"epoch {epoch + 1:3d}/{card.train.epochs}  train {train_loss:.5f}{val_txt}{kl_txt}  "
                f"lr {entry['lr']:.2e}  {entry['seconds']:.1f}s")
        if stop_now:
            log(f"early stopping: no validation improvement for {card.train.patience} epochs")
            stopped_early = True
            break
    finished = stopped_early or end_epoch >= card.train.epochs
    if dist.main and history:
        plot_history(history, path / "loss.png")
    if dist.on:  # DDP keeps the replicas identical; check it, bit for bit
        digest = check_replicas(model, dist)
        log(f"all {dist.world} ranks hold identical parameters (sha256 {digest[:16]})")
        end_dist(dist)
    if dist.main and finished and after:
        after(path, log)
    return path
