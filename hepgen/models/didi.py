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
  between paired events (``scipy.optimize.linear_sum_assignment`` on the batch's cost matrix;
  deterministic, ties aside). The condition ``c`` is not part of the cost.

Sampling integrates dx/dt = v from the source event's coordinates (t = 0) to t = 1 with the
card's fixed-step solver (``model.cfm``): deterministic, no noise. The sampler's input is
therefore the source (``noise_layout`` all ``"source"``) and :meth:`DiDi.draw_noise` refuses.
Network, time embedding and Bayesian layers are CFM's. There is no ``log_prob`` (the source
density is not known).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from ..errors import HepgenError
from .cfm import CFM


def ot_pairing(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """Index ``[N]`` into x0 ``[N, D]`` such that ``x0[idx]`` paired row by row with x1 ``[N, D]``
    minimises the summed squared distance (the minibatch optimal-transport coupling)."""
    cost = torch.cdist(x0.detach().double(), x1.detach().double()).pow(2).cpu().numpy()
    _, target_of = linear_sum_assignment(cost)  # source i -> target target_of[i]
    return torch.from_numpy(np.argsort(target_of)).to(x0.device)


class DiDi(CFM):
    family = "didi"
    maps_samples = True

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training data ``[N, 2D]`` -> (target ``[N, D]``, source ``[N, D]``)."""
        if x.shape[-1] != 2 * self.dim:
            raise HepgenError(f"didi trains on [target | source] rows of {2 * self.dim} columns; got {x.shape[-1]}")
        return x[:, :self.dim], x[:, self.dim:]

    def pair(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """The batch's sources x0 reordered to pair with its targets x1 (``model.didi.coupling``)."""
        if self.cfg.didi.coupling == "ot":
            return x0[ot_pairing(x0, x1)]
        return x0[torch.randperm(len(x0), device=x0.device)]

    def loss(self, x, c):
        x1, x0 = self.split(x)
        return self.path_loss(self.pair(x0, x1), x1, c)

    def noise_layout(self, **opts) -> list[str]:
        return ["source"] * self.dim

    def draw_noise(self, n: int, generator: torch.Generator | None = None, **opts) -> torch.Tensor:
        raise HepgenError("a didi generator maps source events; give --source FILE")

    def log_prob(self, x, c, *args, **kwargs) -> torch.Tensor:
        raise NotImplementedError("didi has no log_prob (the source density is not known)")
