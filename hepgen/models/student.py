"""One-step student of a CFM teacher (knowledge distillation, Luhman & Luhman 2021, arXiv:2101.02388).

``hepgen distill RUN --method student`` (:mod:`hepgen.distill`) integrates the teacher's ODE from
noise z to x_T(z, c) and trains this family on the rows ``[x_T | z]`` ``[N, 2D]``: the map

    G(z, c) = z + v(z, t = 0, c)

(v a CFM :class:`~hepgen.models.cfm.VelocityField`, the same module and state-dict keys as the
teacher's) regresses x_T, so one network call makes an event. Written this way, G is exactly one
Euler step of a CFM field: the teacher's weights are a valid start (G is then the teacher's Euler x 1
sample) and the exported graph is :class:`~hepgen.models.cfm.CFMSampler` with one Euler step.

Loss (``model.student.loss``): ``mse`` (mean squared error over the present columns) or ``huber``
(pseudo-Huber per event, sqrt(|G - x_T|^2 + a^2) - a with a = ``model.student.huber`` x sqrt(D),
less pulled by the few events the teacher maps far). Columns the teacher leaves at their noise
(absent objects, ``model.cfm.absent: frozen``) stay at z here too. Deterministic: the validation
loss has no sampling noise. The sampler has no settings and no ``log_prob``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import ModelSettingError, check_no_options, split_pairs
from .cfm import CFM, CFMSampler


class Student(CFM):
    family = "student"
    teaches = False
    event_weights = "none"  # it learns a teacher's map from its pairs, not weighted events

    def __init__(self, dim: int, cond_dim: int, cfg):
        super().__init__(dim, cond_dim, cfg)
        self.distill_method = "student"

    def predict(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """G(z, c) ``[N, D]``."""
        return z + self.field(z, torch.zeros_like(z[:, :1]), c)

    def loss(self, x, c, weight=None):
        if weight is not None:
            raise ModelSettingError("the student cannot train on weighted events (data.weights: file): it learns its "
                                    "teacher's map from the teacher's pairs; train the teacher on the weighted sample")
        target, z = split_pairs(x, self.dim)
        diff = self.predict(z, c) - target
        m = self.field.mask(c)
        if m is not None:
            diff = diff * m.to(diff.dtype)
        if self.cfg.student.loss == "huber":
            a = self.cfg.student.huber * math.sqrt(self.dim)
            return (torch.sqrt((diff**2).sum(-1) + a * a) - a).mean()
        count = m.sum() if m is not None else diff.numel()
        return (diff**2).sum() / count

    def sampler(self, **opts) -> nn.Module:
        check_no_options(self.family, opts)
        return CFMSampler(self.field, "euler", 1)

    def noise_dim(self, **opts) -> int:
        check_no_options(self.family, opts)
        return self.dim

    def sampler_record(self, **opts) -> dict:
        check_no_options(self.family, opts)
        return {}

    def log_prob(self, x, c, *args, **kwargs) -> torch.Tensor:
        raise NotImplementedError("the student has no log_prob (its one-step map has no tractable Jacobian here)")
