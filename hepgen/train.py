"""One training loop for every generator family (``hepgen train``).

``train(card)`` loads the card's data (running its simulation first when the reference file
is absent), splits it (``data.split``: train / validation / held-out test, indices saved in
``split.npz``), fits the coordinates on the training part, and minimises
``model.loss(x, c) + kl_scale * KL / N_train`` (the KL term only for Bayesian models) with
Adam/AdamW and a one-cycle / cosine / constant schedule, stepping per batch. Each epoch ends
with a validation loss (on a fixed random stream, so it does not disturb training), a summary
line, ``last.pt`` (model, optimiser, scheduler and every RNG state; written atomically) and,
on improvement, ``best.pt``. ``train.patience`` > 0 stops early. With ``train.ema`` > 0 a
moving average of the weights (:class:`WeightAverage`) is what is validated, saved as ``model``
and generates; ``last.pt`` also keeps the raw weights and the average's state, for resuming.

``train(resume=RUN)`` continues from ``RUN/last.pt`` and reaches the same parameters, bit for
bit, as an uninterrupted run: shuffling uses its own ``torch.Generator`` whose state is saved,
the model's noise uses the global torch RNG whose state is saved, and the schedule state is
saved. A non-finite loss stops with :class:`HepgenError`; ``last.pt`` stays the last good one.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the same loop runs with DistributedDataParallel
(gloo on CPU, nccl on GPU): every rank sees a disjoint 1/world of each epoch's permutation, the
gradients are averaged, rank 0 writes the run folder.

After training, the best model generates ``generate.events`` events into ``generated.root``
(toys: ``generated.npz`` and ``toy.png``) and :func:`validate_after_training` runs.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from . import processes
from .cards import Card, dump_card, load_card
from .errors import HepgenError, InputError
from .runs import build_for, save_atomic, write_text_atomic

# ------------------------------------------------------------------------------------------
# distributed helpers


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    owned: bool = False  # this module started the process group (so it also ends it)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def on(self) -> bool:
        return self.world > 1


def _init_dist(device: torch.device) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as td

    owned = not td.is_initialized()
    if owned:
        td.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(td.get_rank(), td.get_world_size(), owned)


def _end_dist(dist: Dist) -> None:
    """End a process group this module started; left to exit, gloo's threads can abort the
    process ("terminate called without an active exception") after a successful run."""
    if dist.owned:
        import torch.distributed as td

        td.barrier()
        td.destroy_process_group()


def _broadcast(obj, dist: Dist):
    if not dist.on:
        return obj
    import torch.distributed as td

    box = [obj]
    td.broadcast_object_list(box, src=0)
    return box[0]


def _gather(obj, dist: Dist) -> list:
    if not dist.on:
        return [obj]
    import torch.distributed as td

    out = [None] * dist.world
    td.all_gather_object(out, obj)
    return out


# ------------------------------------------------------------------------------------------
# pieces


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise HepgenError(f"train.device = {name!r} but no CUDA GPU is available (use auto or cpu)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise HepgenError(f"train.device = {name!r} is not a device (auto, cpu, cuda, cuda:N)") from None


@dataclass
class Data:
    x_train: torch.Tensor
    c_train: torch.Tensor
    x_val: torch.Tensor
    c_val: torch.Tensor
    split: dict[str, np.ndarray]
    coords: nn.Module


def split_indices(n: int, fractions: tuple[float, ...], seed: int) -> dict[str, np.ndarray]:
    """Random train / val / test indices (sorted), deterministic in (n, fractions, seed)."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not 0.99 < sum(fractions) < 1.01 or fractions[0] <= 0:
        raise HepgenError(f"data.split = {list(fractions)}: give three non-negative fractions (train, val, test) summing to 1")
    perm = np.random.default_rng([seed, 7]).permutation(n)
    n_train, n_val = int(round(fractions[0] * n)), int(round(fractions[1] * n))
    parts = {"train": perm[:n_train], "val": perm[n_train:n_train + n_val], "test": perm[n_train + n_val:]}
    return {k: np.sort(v) for k, v in parts.items()}


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
    return Data(x_tr.float(), c_tr.float(), x_va.float(), c_va.float(), split, coords)


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


def make_optimizer(model: nn.Module, card: Card) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if card.train.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=card.train.lr, weight_decay=card.train.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, card: Card, total_steps: int):
    kind = card.train.schedule
    if kind == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=card.train.lr, total_steps=max(total_steps, 1))
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total_steps, 1))
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _step: 1.0)


class WeightAverage:
    """Exponential moving average of a model's weights: ``shadow`` is a copy of the model whose
    floating-point parameters and buffers follow ``decay``-weighted averages of the trained
    ones (the effective decay ramps up as min(decay, (1 + n) / (10 + n)) over the first steps,
    so early weights do not linger). ``update()`` after each optimiser step."""

    def __init__(self, model: nn.Module, decay: float):
        import copy

        self.decay, self.steps = decay, 0
        self.shadow = copy.deepcopy(model)
        self.shadow.requires_grad_(False)
        # state_dict tensors share storage with the modules (loading copies in place)
        pairs = [(a, r) for a, r in zip(self.shadow.state_dict().values(), model.state_dict().values())
                 if a.is_floating_point()]
        self._avg, self._raw = [a for a, _ in pairs], [r for _, r in pairs]

    @torch.no_grad()
    def update(self) -> None:
        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        torch._foreach_lerp_(self._avg, self._raw, 1.0 - d)

    def state_dict(self) -> dict:
        """The step count; the averaged weights are the checkpoint's ``model`` (not stored twice)."""
        return {"steps": self.steps}

    def load_state_dict(self, state: dict, shadow: dict) -> None:
        self.steps = state["steps"]
        self.shadow.load_state_dict(shadow)


class _LossModule(nn.Module):
    """forward(x, c) = model.loss(x, c): the call DistributedDataParallel wraps."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x, c):
        return self.model.loss(x, c)


def _rng_state(shuffle: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state(),
             "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, shuffle: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    shuffle.set_state(state["shuffle"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RunLog:
    """Lines to ``train.log`` (append) and stderr; silent on ranks other than 0."""

    def __init__(self, path: Path | None, echo: bool = True):
        self.path, self.echo = path, echo

    def __call__(self, msg: str) -> None:
        if self.path is not None:
            stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            with open(self.path, "a") as fh:
                fh.write(f"{stamp} {msg}\n")
            if self.echo:
                print(msg, file=sys.stderr, flush=True)


def plot_history(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ep = [h["epoch"] for h in history]
    ax.plot(ep, [h["train_loss"] for h in history], label="train")
    if any(h.get("val_loss") is not None for h in history):
        ax.plot(ep, [h["val_loss"] for h in history], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def _new_run_dir(card: Card) -> Path:
    base = Path(card.train.runs_dir)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    # claim the name with mkdir itself (not exists() then mkdir): two trainings started in the
    # same second each get their own folder
    for i in range(10_000):
        path = base / (f"{card.name}-{stamp}" + (f"-{i}" if i else ""))
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
        except OSError as err:
            raise HepgenError(f"cannot create run folder {path}: {err.strerror}") from None
    raise HepgenError(f"cannot create run folder {base / card.name}-{stamp}: 10000 names taken")


@torch.no_grad()
def validation_loss(model: nn.Module, x: torch.Tensor, c: torch.Tensor, batch: int, seed: int) -> float | None:
    """Mean loss over (x, c) on a fixed random stream (the training RNG is left untouched)."""
    if len(x) == 0:
        return None
    was = model.training
    model.eval()
    total = 0.0
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed + 1_000_003)
        for i in range(0, len(x), batch):
            total += float(model.loss(x[i:i + batch], c[i:i + batch])) * len(x[i:i + batch])
    model.train(was)
    return total / len(x)


# ------------------------------------------------------------------------------------------
# the loop


def train(card: Card | None = None, *, resume: str | os.PathLike | None = None, progress: bool | None = None,
          run_dir: str | os.PathLike | None = None, after: bool = True, max_epochs: int | None = None) -> Path:
    """Train the card's model (or resume run ``resume``); returns the run folder.

    ``max_epochs`` stops after that many epochs in this session (the schedule still spans
    ``train.epochs``); used to test resuming. ``after=False`` skips generation + validation.
    """
    from .nn.bayesian import is_bayesian, kl_divergence

    if resume is not None:
        resume = Path(resume)
        if not (resume / "card.yaml").is_file():
            raise InputError(f"--resume {resume}: not a hepgen run folder (no card.yaml)")
        if not (resume / "last.pt").is_file():
            raise InputError(f"--resume {resume}: no last.pt (no epoch finished); start a new run")
        card = load_card(resume / "card.yaml")
    if card is None:
        raise ValueError("train needs a card or resume")
    device = resolve_device(card.train.device)
    if card.train.threads:
        torch.set_num_threads(card.train.threads)
    dist = _init_dist(device)
    if dist.on and device.type == "cuda":
        device = torch.device("cuda", dist.rank % torch.cuda.device_count())

    # the model before the run folder: settings it rejects leave nothing behind (it is built from
    # the card alone; the data only fit the coordinates)
    torch.manual_seed(card.seed)
    _, model = build_for(card)

    # run folder (rank 0 decides)
    if dist.main:
        path = resume if resume is not None else (Path(run_dir) if run_dir else _new_run_dir(card))
        path.mkdir(parents=True, exist_ok=True)
    else:
        path = None
    path = Path(_broadcast(str(path) if path else None, dist))
    log = RunLog(path / "train.log" if dist.main else None)
    if dist.main and resume is None:
        write_text_atomic(path / "card.yaml", dump_card(card))

    log(f"{'resuming' if resume else 'training'} {card.model.family}{' (Bayesian)' if card.model.bayes.enabled else ''} "
        f"on {card.process.name} -> {path} (device {device}, {torch.get_num_threads()} threads"
        f"{f', {dist.world} ranks' if dist.on else ''})")
    data = prepare_data(card, log if dist.main else (lambda m: None))
    if dist.main:
        np.savez(path / ".split.partial.npz", **data.split)
        os.replace(path / ".split.partial.npz", path / "split.npz")
        save_atomic(data.coords.state_dict(), path / "coords.pt")
    n_train = len(data.x_train)
    log(f"events: {n_train} train, {len(data.x_val)} validation, {len(data.split['test'])} held-out test; "
        f"{data.coords.dim} coordinates, {data.coords.cond_dim} conditions")

    model = model.to(device)
    bayes = is_bayesian(model)
    # the model that is validated, saved as "model" and generates: the weight average when on
    ema = WeightAverage(model, card.train.ema) if card.train.ema > 0 else None
    kept = ema.shadow if ema else model
    lossmod: nn.Module = _LossModule(model)
    if dist.on:
        lossmod = nn.parallel.DistributedDataParallel(lossmod)
    opt = make_optimizer(model, card)
    per_rank = n_train // dist.world
    batch = card.train.batch_size
    steps_per_epoch = max(math.ceil(per_rank / batch), 1)
    sched = make_scheduler(opt, card, card.train.epochs * steps_per_epoch)
    shuffle = torch.Generator().manual_seed(card.seed + 17)
    torch.manual_seed(card.seed + 31 * dist.rank + 1)  # model noise stream (per rank)

    history: list[dict] = []
    best_val, bad_epochs, start_epoch = math.inf, 0, 0
    if resume is not None:
        ckpt = torch.load(path / "last.pt", map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["raw_model"] if ema else ckpt["model"])
        if ema:
            ema.load_state_dict(ckpt["ema"], ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        if len(ckpt["rng"]) != dist.world:
            raise HepgenError(f"--resume {path}: saved with {len(ckpt['rng'])} ranks, now {dist.world}")
        _set_rng_state(ckpt["rng"][dist.rank], shuffle)
        history, best_val, bad_epochs = ckpt["history"], ckpt["best_val"], ckpt["bad_epochs"]
        start_epoch = ckpt["epoch"] + 1
        if ckpt.get("stopped_early"):
            start_epoch = card.train.epochs
    xtr, ctr = data.x_train.to(device), data.c_train.to(device)
    xva, cva = data.x_val.to(device), data.c_val.to(device)
    kl_weight = card.model.bayes.kl_scale / n_train
    show = progress if progress is not None else (os.isatty(2) and dist.main)
    from tqdm import tqdm

    stopped_early = False
    end_epoch = card.train.epochs if max_epochs is None else min(card.train.epochs, start_epoch + max_epochs)
    model.train()
    draw_weights = balance_weights(data.c_train, card.train.balance)
    for epoch in range(start_epoch, end_epoch):
        t0 = time.perf_counter()
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
                loss = lossmod(xtr[idx], ctr[idx])
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
        val = validation_loss(kept, xva, cva, max(batch, 4096), card.seed) if dist.main else None
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
        stop_now = bool(_broadcast(stop_now, dist))
        rng = _gather(_rng_state(shuffle), dist)
        if dist.main:
            state = {"epoch": epoch, "model": kept.state_dict(), "coords": data.coords.state_dict()}
            if improved or val is None:
                save_atomic(state, path / "best.pt")
            if ema:
                state = {**state, "raw_model": model.state_dict(), "ema": ema.state_dict()}
            save_atomic({**state, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": rng,
                         "history": history, "best_val": best_val, "bad_epochs": bad_epochs,
                         "stopped_early": stop_now}, path / "last.pt")
            write_text_atomic(path / "history.json", json.dumps(history, indent=1))
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
        import hashlib

        digest = hashlib.sha256(b"".join(t.detach().cpu().numpy().tobytes() for t in model.state_dict().values()))
        sums = _gather(digest.hexdigest(), dist)
        if len(set(sums)) != 1:
            raise HepgenError(f"DDP ranks ended with different parameters ({', '.join(s[:8] for s in sums)})")
        log(f"all {dist.world} ranks hold identical parameters (sha256 {sums[0][:16]})")
        _end_dist(dist)
    if dist.main and finished and after:
        finish_run(path, log)
    return path


def finish_run(path: Path, log: Callable[[str], None] = print) -> None:
    """After training: the best model's report, as its process makes it (Z+jets: generate
    ``generate.events`` events into ``generated.root``, one file per Bayesian draw, and validate;
    toys: ``generated.npz`` and ``toy.png``)."""
    from .generate import generate
    from .runs import load_run

    run = load_run(path, "best")
    run.process.after_training(run, processes.AfterTraining(generate, validate_after_training), log)


def validate_after_training(path: Path, log: Callable[[str], None] = print) -> None:
    """Validate the freshly generated sample (``hepgen.validate.validate_run``: ``<run>/validation/``)."""
    from .validate import validate_run

    validate_run(path, log=log)
