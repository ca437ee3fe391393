"""Direct Diffusion (DiDi, arXiv:2311.17175): conditional flow matching from one event sample to another.

The source distribution is another event sample (e.g. on-shell tt̄) instead of Gaussian
noise. Training is on UNPAIRED samples: the training data are ``x = [target | source]``
``[N, 2D]`` (both in the network coordinates of the same fitted transform), each batch pairs
its sources with its targets anew (``model.didi.coupling``), and the velocity field regresses
``x1 - x0`` on the straight path ``x_t = (1 - t) x0 + t x1`` (x0 a source event, x1 a target
event), exactly as :class:`~hepgen.models.cfm.CFM` does from noise:

- ``independent``: a random permutation of the batch's sources (the global torch RNG, so a
  resumed run draws the same pairs);
- ``ot``: minibatch optimal transport, the pairing that minimises the summed squared distance
  between paired events (``scipy.optimize.linear_sum_assignment`` on the cost matrix of each
  block of ``model.didi.ot_block`` pairs of the batch; deterministic, ties aside). The
  condition ``c`` is not part of the cost.

Sampling integrates dx/dt = v from the source event's coordinates (t = 0) to t = 1 with the
card's fixed-step solver (``model.cfm``). Network, time embedding and Bayesian layers are
CFM's. There is no ``log_prob`` (the source density is not known).

**Fill noise.** A source can have fewer degrees of freedom than the target: on-shell tt̄ has
m_t and m_W fixed, the off-shell target spreads them out. A deterministic flow maps a point to a
point, so it cannot grow a Breit-Wigner out of a fixed mass (measured: the mapped m_t kept
a 0.7 GeV core and no tails). :meth:`DiDi.fit_data` marks the source columns that are constant
over the training sources (standard deviation below :data:`FILL_STD` in the standardised
coordinates) as ``fill``, and those columns of every source start as N(0, 1) noise instead,
in training and in sampling. The sampler's input is therefore ``[source (D) | noise (D)]``
(``noise_layout``: D "source" then D "normal" columns; only the fill columns read their noise),
the map is deterministic for given source events and noise, and a source without constant
columns maps exactly as without fill. :meth:`DiDi.draw_noise` refuses: the source events come
from a file.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from torch import nn

from ..errors import HepgenError
from .cfm import CFM, CFMSampler

FILL_STD = 1e-2  # a source column with a smaller standard deviation (standardised units) is filled with noise


def ot_pairing(x0: torch.Tensor, x1: torch.Tensor, block: int = 0) -> torch.Tensor:
    """Index ``[N]`` into x0 ``[N, D]`` such that ``x0[idx]`` paired row by row with x1 ``[N, D]``
    minimises the summed squared distance (the minibatch optimal-transport coupling), solved
    in consecutive blocks of ``block`` rows (0: all at once). An assignment costs about
    block^3: blocks of 128 in a batch of 512 are 16 times cheaper than the whole batch and gave
    nearly the same line shapes (docs/ttbar.md "Couplings")."""
    block = block or len(x0)
    idx = []
    for start in range(0, len(x0), block):
        a, b = x0[start:start + block].detach().double(), x1[start:start + block].detach().double()
        _, target_of = linear_sum_assignment(torch.cdist(a, b).pow(2).cpu().numpy())  # source i -> target target_of[i]
        idx.append(np.argsort(target_of) + start)
    return torch.from_numpy(np.concatenate(idx)).to(x0.device)


class DiDiSampler(CFMSampler):
    """Exportable: ``[source x0 (D) | noise z (D)]``, c -> x ``[N, D]``; the fill columns start at
    z, then CFM's unrolled solver."""

    def __init__(self, field, fill: torch.Tensor, solver: str, steps: int):
        super().__init__(field, solver, steps)
        self.register_buffer("fill", fill.clone())
        self.dim = fill.shape[0]

    def forward(self, inputs, c):
        x0, z = inputs[:, :self.dim], inputs[:, self.dim:]
        return super().forward(x0 + self.fill.to(x0.dtype) * (z - x0), c)


class DiDi(CFM):
    family = "didi"
    maps_samples = True
    teaches = False

    def __init__(self, dim: int, cond_dim: int, cfg):
        super().__init__(dim, cond_dim, cfg)
        self.distill_method = None  # its pairs are [target | source] (model.didi.coupling), not a teacher's
        self.register_buffer("fill", torch.zeros(dim))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.setdefault(prefix + "fill", torch.zeros_like(self.fill))  # runs from before fill noise
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def fit_data(self, x: torch.Tensor) -> None:
        """Mark the source columns of the training rows ``x`` ``[N, 2D]`` that are constant (fill noise)."""
        _, x0 = self.split(x)
        self.fill.copy_((x0.double().std(0) < FILL_STD).to(self.fill.dtype))

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training data ``[N, 2D]`` -> (target ``[N, D]``, source ``[N, D]``)."""
        if x.shape[-1] != 2 * self.dim:
            raise HepgenError(f"didi trains on [target | source] rows of {2 * self.dim} columns; got {x.shape[-1]}")
        return x[:, :self.dim], x[:, self.dim:]

    def pair(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """The batch's sources x0 reordered to pair with its targets x1 (``model.didi.coupling``)."""
        if self.cfg.didi.coupling == "ot":
            return x0[ot_pairing(x0, x1, self.cfg.didi.ot_block)]
        return x0[torch.randperm(len(x0), device=x0.device)]

    def loss(self, x, c, weight=None):
        """Flow matching from source to target rows; ``weight`` ``[N]`` weights the target events
        (the source sample stays unweighted)."""
        x1, x0 = self.split(x)
        x0 = self.pair(x0, x1)
        if bool(self.fill.any()):
            fill = self.fill.to(x0.dtype)
            x0 = x0 + fill * (torch.randn_like(x0) - x0)
        return self.path_loss(x0, x1, c, weight)

    def sampler(self, solver: str | None = None, steps: int | None = None) -> nn.Module:
        return DiDiSampler(self.field, self.fill, solver or self.cfg.cfm.solver, steps or self.cfg.cfm.steps)

    def noise_dim(self, **opts) -> int:
        return 2 * self.dim

    def noise_layout(self, **opts) -> list[str]:
        return ["source"] * self.dim + ["normal"] * self.dim

    def draw_noise(self, n: int, generator: torch.Generator | None = None, **opts) -> torch.Tensor:
        raise HepgenError("a didi generator maps source events; give --source FILE")

    def log_prob(self, x, c, *args, **kwargs) -> torch.Tensor:
        raise NotImplementedError("didi has no log_prob (the source density is not known)")
