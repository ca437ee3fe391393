"""The DCTR weight as a smooth function of the latent noise, so a refined run can train on fresh latents.

LASER's weighted latent sample is finite: ``refine.events`` base events, each generated, selected and
scored by the event-space classifier. With mild weights (effective sample fraction 0.97 on Z+jets)
the refiner then fits the noise of those few hundred thousand weights rather than the correction
they carry. The weight of a latent vector is a deterministic function w(z, c) = w_DCTR(G(z, c)), so
with ``refine.latents: N`` it is learned once by a regression in latent space (:func:`fit`) on the
base latents and their DCTR weights, and the refiner trains on N fresh latents z ~ N(0, 1) (each with
the condition of a base event drawn at random) weighted by that regression (:func:`fresh_rows`):
as many latents as wanted, without generating or scoring more events.

The regression is an MLP on ``[z | c]`` with a softplus output (w >= 0; events the selection drops
have w = 0), least squares on w itself: the weighted flow matching needs E[w | z, c], and its
minimiser is that expectation. The loss is not balanced over the jet multiplicities: on Z+jets
(400 000 base latents) the plain fit explains 0.84 / 0.31 / 0.12 of the weights' variance for
1 / 2 / 3 jets, and one that gave each multiplicity the same share of the loss 0.53 / 0.17 / -0.17
(the few 3-jet latents, weighted up, are overfitted). It trains on the base latents of the refined run's training part,
stops at the best loss on its validation part, and reports the fraction of the weights' variance it
explains there (R^2; the log and ``data.json``, ``latent_weight_r2``). What it does not explain the
refiner never sees, so R^2 bounds how much of the DCTR correction the refined run can carry.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from .optim import adam

FRESH_STREAM = 43  # the fresh latents' seed stream (with the card's seed)
HIDDEN, LAYERS = 128, 3
EPOCHS, BATCH, LR = 100, 1024, 1e-3
PATIENCE = 6  # epochs without a better validation loss before the fit stops


class LatentWeight(nn.Module):
    """w(z, c) >= 0 ``[N]`` from latents ``[N, m]`` and conditions ``[N, C]``."""

    def __init__(self, m: int, cond: int):
        super().__init__()
        layers: list[nn.Module] = []
        width = m + cond
        for _ in range(LAYERS):
            layers += [nn.Linear(width, HIDDEN), nn.SiLU()]
            width = HIDDEN
        self.net = nn.Sequential(*layers, nn.Linear(width, 1), nn.Softplus())
        with torch.no_grad():  # start at w = 1 everywhere: softplus(0.5413) = 1
            self.net[-2].weight.zero_()
            self.net[-2].bias.fill_(float(np.log(np.expm1(1.0))))

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, c], dim=-1)).squeeze(-1)


def r_squared(pred: torch.Tensor, w: torch.Tensor) -> float:
    """1 - sum (w - pred)^2 / sum (w - mean w)^2: the share of w's variance that ``pred`` explains."""
    return float(1 - ((w - pred) ** 2).sum() / ((w - w.mean()) ** 2).sum().clamp_min(1e-30))


def fit(z: torch.Tensor, c: torch.Tensor, w: torch.Tensor, z_val: torch.Tensor, c_val: torch.Tensor,
        w_val: torch.Tensor, seed: int, log: Callable[[str], None] = print) -> tuple[LatentWeight, float]:
    """(the regression, its validation R^2): least squares of w on ``[z | c]`` (float32 tensors), the
    best epoch on the validation rows (see the module docstring)."""
    torch.manual_seed(seed)
    model = LatentWeight(z.shape[1], c.shape[1])
    opt = adam(model.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(seed)
    best, best_state, stale = float("inf"), None, 0
    for epoch in range(EPOCHS):
        model.train()
        for idx in torch.randperm(len(z), generator=gen).split(BATCH):
            loss = ((model(z[idx], c[idx]) - w[idx]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            val = float(((model.eval()(z_val, c_val) - w_val) ** 2).mean())
        if val < best:
            best, best_state, stale = val, {k: v.clone() for k, v in model.state_dict().items()}, 0
        else:
            stale += 1
            if stale >= PATIENCE:
                break
    model.load_state_dict(best_state)
    model.eval()
    with torch.no_grad():
        r2 = r_squared(model(z_val, c_val), w_val)
    log(f"latent weight regression: R^2 {r2:.3f} on its stopping set (the share of the DCTR weights' variance it explains), "
        f"{epoch + 1} epochs")
    return model, r2


@torch.no_grad()
def fresh_rows(model: LatentWeight, c_pool: torch.Tensor, n: int, seed: int, batch: int = 65536
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(z ``[n, m]`` ~ N(0, 1), c ``[n, C]`` drawn from ``c_pool``'s rows, w ``[n]`` = the regression),
    float32, from stream :data:`FRESH_STREAM` of ``seed``."""
    gen = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, FRESH_STREAM]).generate_state(1)[0]))
    m = model.net[0].in_features - c_pool.shape[1]
    z = torch.randn(n, m, generator=gen)
    c = c_pool[torch.randint(len(c_pool), (n,), generator=gen)]
    w = torch.cat([model(z[i:i + batch], c[i:i + batch]) for i in range(0, n, batch)])
    return z, c, w
