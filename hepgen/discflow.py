"""DiscFlow: a classifier's weight feeds back into the generator's training (arXiv:2110.13632).

With ``train.discriminator.enabled`` the one training loop (:mod:`hepgen.train`) alternates two steps:

1. at the start of every ``every``-th epoch (from epoch ``warmup`` on) a classifier (the cross-fitted,
   Platt-calibrated MLP of the classifier test, :func:`hepgen.validate.classifier.cross_fit`, 2 folds)
   learns to tell ``events`` training rows (label 1, with their file weights) from as many events the
   generator makes in its current state for the same conditions (label 0), on network coordinates
   and condition ``[x | c]``. The generated events come from the card's sampler, or a cheaper one
   (``solver`` x ``steps``, e.g. euler x 4 for a CFM, whose RK4 ODE is the expensive part); they use
   a random stream of their own, so the training's random numbers are untouched;
2. until the next update, each training event's loss counts

       w_D(x)^a = (D(x) / (1 - D(x)))^a = exp(a * logit(x))     (:func:`disc_weights`)

   times (times its file weight), clipped to [1 / ``clip``, ``clip``] and normalised to mean 1
   over the training events: where the generator under-populates the data (D > 1/2) events weigh
   more. ``a`` (:func:`exponent`) is 0 for the first ``warmup`` epochs, then rises linearly to
   ``alpha`` over ``ramp`` epochs. The logits of every training event are the mean over the fold
   models (the ``events`` rows a fold model trained on included).

It works for every family whose loss takes per-event weights (``Generator.event_weights`` not "none")
and that samples from noise; the others are refused in one line before anything is written
(:func:`check_discriminator`). The last logits are saved in ``last.pt`` (``Checkpoint.discriminator``),
so a resumed run continues bit for bit. Off (the default), nothing here runs.
"""

from __future__ import annotations

import numpy as np
import torch

from .cards import Card, DiscriminatorConfig
from .errors import CardError
from .pipeline import sampler_options
from .validate.classifier import cross_fit

STREAM = 61  # seed stream of the generated events and the classifier (with the card's seed and the epoch)
HIDDEN, LAYERS, FOLDS = 64, 3, 2  # the classifier's width, hidden layers and cross-fitting folds


def check_discriminator(card: Card, model) -> None:
    """A one-line :class:`CardError` when ``train.discriminator`` is on for a model it cannot serve."""
    cfg = card.train.discriminator
    if not cfg.enabled:
        return
    if model.event_weights == "none":
        raise CardError(f"train.discriminator: model.family {card.model.family} has no per-event loss to reweight "
                        "(event_weights none); DiscFlow needs one (e.g. cfm, ddpm, inn, jetgpt, vae)")
    if model.maps_samples or model.learns_from_teacher or card.refine.base:
        raise CardError(f"train.discriminator: model.family {card.model.family} here does not learn the data density "
                        "from noise (it maps samples, learns a teacher's map or refines a run); switch it off")
    if card.model.nuisance:
        raise CardError("train.discriminator with model.nuisance: the classifier would compare events at one nuisance "
                        "value with the training rows at all of them; not supported, switch one off")
    if card.train.weight_power > 0:
        raise CardError("train.discriminator with train.weight_power: DiscFlow reweights the file weights per epoch, "
                        "which the draw would no longer see; set train.weight_power: 0")
    model.sampler(**_opts(cfg))  # a sampler setting the family does not have: one line now, not mid-training


def _opts(cfg: DiscriminatorConfig) -> dict:
    return sampler_options(cfg.solver or None, cfg.steps or None)


def exponent(cfg: DiscriminatorConfig, epoch: int) -> float:
    """The exponent a of epoch ``epoch`` (from 0): 0 before ``warmup``, then alpha x min(1, (epoch -
    warmup + 1) / ramp)."""
    if not cfg.enabled or epoch < cfg.warmup:
        return 0.0
    return cfg.alpha * min(1.0, (epoch - cfg.warmup + 1) / cfg.ramp)


def disc_weights(logit: torch.Tensor, a: float, clip: float) -> torch.Tensor:
    """``[N]`` weights (D / (1 - D))^a for the calibrated logits log(D / (1 - D)) ``[N]``, clipped to
    [1 / clip, clip] and normalised to mean 1."""
    w = torch.exp(a * logit.double()).clamp(1.0 / clip, clip)
    return (w / w.mean()).float()


class DiscFlow:
    """The classifier weights of the training rows ``x`` ``[N, D]``, ``c`` ``[N, C]`` (file weights
    ``w_file`` ``[N]`` or None); ``state``: :meth:`state` of a checkpoint (a resumed run)."""

    def __init__(self, cfg: DiscriminatorConfig, seed: int, x, c, w_file, state: dict | None = None):
        self.cfg, self.seed, self.x, self.c, self.w_file = cfg, seed, x, c, w_file
        self.logit = None if not state else state["logit"].to(x.device)

    def state(self) -> dict | None:
        return None if self.logit is None else {"logit": self.logit.cpu()}

    def weights(self, epoch: int, model, log=None):
        """The per-event loss weights of epoch ``epoch`` ``[N]`` (the file weights while a = 0); updates
        the classifier first when the cadence says so."""
        a = exponent(self.cfg, epoch)
        if a == 0.0:
            return self.w_file
        if self.logit is None or (epoch - self.cfg.warmup) % self.cfg.every == 0:
            self.logit = self._fit(model, epoch)
            if log:
                d = torch.sigmoid(self.logit)
                log(f"discriminator at epoch {epoch + 1}: mean D on training events {float(d.mean()):.4f}, exponent {a:.3g}")
        w = disc_weights(self.logit, a, self.cfg.clip).to(self.x.device)
        return w if self.w_file is None else w * self.w_file

    def _fit(self, model, epoch: int) -> torch.Tensor:
        """Calibrated logits log(D / (1 - D)) of every training row ``[N]`` (see the module docstring)."""
        cfg, n_all = self.cfg, len(self.x)
        rng = np.random.default_rng([self.seed, STREAM, epoch])
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        with torch.random.fork_rng(devices=[self.x.device] if self.x.device.type == "cuda" else []):
            rows = torch.randperm(n_all, generator=gen)[:cfg.events].to(self.x.device)
            was = model.training
            model.eval()
            with torch.no_grad():
                noise = model.draw_noise(len(rows), gen, **_opts(cfg)).to(self.x.device, self.x.dtype)
                fake = model.sample(noise, self.c[rows], **_opts(cfg))
            model.train(was)
            real = torch.cat([self.x[rows], self.c[rows]], -1).double().cpu().numpy()
            fake = torch.cat([fake, self.c[rows]], -1).double().cpu().numpy()
            fake = fake[np.isfinite(fake).all(1)]
            x = np.concatenate([real, fake])
            y = np.concatenate([np.ones(len(real)), np.zeros(len(fake))])
            w_real = np.ones(len(real)) if self.w_file is None else self.w_file[rows].double().cpu().numpy()
            w = np.concatenate([w_real, np.ones(len(fake))])
            fold = rng.permutation(np.arange(len(x)) % FOLDS)
            every = torch.cat([self.x, self.c], -1).double().cpu().numpy()
            res = cross_fit(x, y, w, fold, rng, epochs=cfg.epochs, hidden=HIDDEN, layers=LAYERS, extra=every)
        return torch.from_numpy(res.extra).to(self.x.device, torch.float32)


def discflow_for(card: Card, x, c, w_file, state: dict | None = None) -> DiscFlow | None:
    """The card's :class:`DiscFlow` on the training rows (None when ``train.discriminator`` is off)."""
    cfg = card.train.discriminator
    return DiscFlow(cfg, card.seed, x, c, w_file, state) if cfg.enabled else None
