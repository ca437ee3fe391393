"""Coordinates of the toy processes: standardisation only, no condition.

Toy data ``y`` ``[N, D]`` (float, no units) <-> network coordinates ``x`` ``[N, D]`` =
(y - mean) / std, mean and std ``[D]`` fitted on the training set (float64 buffers of the
chain's ``"standardize"`` step, state-dict keys ``chain.steps.0.mean`` / ``chain.steps.0.std``).

:class:`ToyInverse` is the exportable x -> y for generation: it copies mean and std in the
export dtype (float32 by default) and computes x * std + mean (Mul, Add).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..nuisance_mixture import CategoryMeans
from .chain import Chain, Standardize


class ToyCoords(nn.Module):
    """Toy models: x ``[N, D]`` standardised; no condition (``cond_dim`` 0)."""

    cond_dim = 0

    def __init__(self, dim: int = 2, nuisances: int = 0):
        super().__init__()
        self.dim = dim
        self.chain = Chain(("standardize", Standardize(dim)))
        # model.nuisance: the mean of w(x; nu)'s expansion terms over the training events (one category;
        # hepgen.nuisance.CategoryMeans), for the mixture of prior ends
        self.mult_nuisance = CategoryMeans(nuisances, 1) if nuisances else None

    @torch.no_grad()
    def fit_nuisance(self, data, slopes: np.ndarray) -> None:
        self.mult_nuisance.fit(slopes, np.zeros(len(slopes), dtype=np.int64), np.ones(len(slopes)))

    @torch.no_grad()
    def fit(self, data: np.ndarray) -> "ToyCoords":
        """Fit mean / std on the training data ``[N, D]``."""
        self.chain.step("standardize").fit(torch.as_tensor(data, dtype=torch.float64))
        return self

    def active_columns(self) -> None:
        """Every column is present (no condition)."""
        return None

    def encode(self, data: np.ndarray, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        """data ``[N, D]`` -> (x ``[N, D]`` float64, c ``[N, 0]``)."""
        x, _ = self.chain(torch.as_tensor(data, dtype=torch.float64))
        return x, torch.zeros(len(x), 0, dtype=torch.float64)

    def forward(self, y):
        return self.chain(y)

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        """x ``[N, D]`` -> data ``[N, D]`` in the dtype of x."""
        return ToyInverse(self, x.dtype)(x)


class ToyInverse(nn.Module):
    """Exportable x ``[N, D]`` -> y = x * std + mean ``[N, D]``, with mean, std ``[D]`` buffers
    in ``dtype`` copied from a fitted :class:`ToyCoords`."""

    def __init__(self, coords: ToyCoords, dtype: torch.dtype = torch.float32):
        super().__init__()
        std_step = coords.chain.step("standardize")
        self.register_buffer("mean", std_step.mean.to(dtype).clone())
        self.register_buffer("std", std_step.std.to(dtype).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean
