"""A composable chain of invertible transforms between raw columns and network coordinates.

Every step is a torch module on ``[N, D]`` tensors: ``forward(y) -> (y', log|det dy'/dy| [N])``
and ``inverse(y') -> y``. Fitted numbers are float64 buffers (fitting and the training-set
forward run in float64); ``forward`` / ``inverse`` compute in the dtype of their input.

A :class:`Chain` applies named steps in order and adds their log-dets. Steps are looked up by
name (:meth:`Chain.step`); they are stored in a ``ModuleList`` ``steps``, so a state dict holds
``steps.<position>.<buffer>`` (e.g. ``chain.steps.2.mean`` inside :class:`ZJetsCoords`).

Steps here are generic: :class:`LogShift` (log(y - shift) on chosen columns) and
:class:`Standardize` ((y - mean) / std). Process-specific steps live with their process
(:mod:`hepgen.coords.zjets`).
"""

from __future__ import annotations

import torch
from torch import nn


class Transform(nn.Module):
    """One invertible step: ``forward(y) -> (y', log|det dy'/dy| [N])``, ``inverse(y')``."""

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Chain(Transform):
    """Named transforms applied in order; log-dets add up.

    ``Chain(("log", LogShift(...)), ("standardize", Standardize(d)))``; ``chain.step("log")``
    returns a step by name. Names are unique; the order of the arguments is the order of
    application (and of the ``steps.<i>`` keys of the state dict).
    """

    def __init__(self, *named: tuple[str, Transform]):
        super().__init__()
        names = tuple(name for name, _ in named)
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate step names in {names}")
        self.names = names
        self.steps = nn.ModuleList(step for _, step in named)

    def step(self, name: str) -> Transform:
        """The step called ``name``."""
        if name not in self.names:
            raise KeyError(f"no step {name!r} in the chain; steps: {', '.join(self.names)}")
        return self.steps[self.names.index(name)]

    def forward(self, y):
        logdet = torch.zeros(y.shape[0], dtype=y.dtype, device=y.device)
        for step in self.steps:
            y, ld = step(y)
            logdet = logdet + ld
        return y, logdet

    def inverse(self, y):
        for step in reversed(self.steps):
            y = step.inverse(y)
        return y


class LogShift(Transform):
    """y[:, cols] -> log(y[:, cols] - shift); other columns unchanged. ``[N, D] -> [N, D]``."""

    def __init__(self, dim: int, cols: list[int], shifts: list[float]):
        super().__init__()
        mask = torch.zeros(dim, dtype=torch.bool)
        shift = torch.zeros(dim, dtype=torch.float64)
        mask[cols] = True
        shift[cols] = torch.tensor(shifts, dtype=torch.float64)
        self.register_buffer("mask", mask)
        self.register_buffer("shift", shift)

    def forward(self, y):
        shift = self.shift.to(y.dtype)
        safe = torch.where(self.mask, y - shift, torch.ones_like(y))
        out = torch.where(self.mask, torch.log(safe), y)
        return out, -(torch.log(safe) * self.mask).sum(-1)

    def inverse(self, y):
        return torch.where(self.mask, torch.exp(y) + self.shift.to(y.dtype), y)


class Standardize(Transform):
    """(y - mean) / std with mean, std ``[D]`` fitted by :meth:`fit` (float64 buffers)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("std", torch.ones(dim, dtype=torch.float64))

    @torch.no_grad()
    def fit(self, y: torch.Tensor, valid: torch.Tensor | None = None) -> None:
        """Column means / stds of ``y`` ``[N, D]`` over the rows where ``valid`` ``[N, D]``."""
        y = y.double()
        valid = torch.ones_like(y, dtype=torch.bool) if valid is None else valid
        n = valid.sum(0).clamp_min(1)
        z = torch.where(valid, y, torch.zeros_like(y))
        mean = z.sum(0) / n
        var = (torch.where(valid, y - mean, torch.zeros_like(y)) ** 2).sum(0) / n
        self.mean.copy_(mean)
        self.std.copy_(var.sqrt().clamp_min(1e-12))

    def forward(self, y):
        std = self.std.to(y.dtype)
        return (y - self.mean.to(y.dtype)) / std, -torch.log(std).sum().expand(y.shape[0])

    def inverse(self, y):
        return y * self.std.to(y.dtype) + self.mean.to(y.dtype)
