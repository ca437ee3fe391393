"""The exportable generation pipeline: noise -> physics objects, one torch module per draw.

A trained run generates through ONE module per Bayesian draw, a pure function of explicit
noise, that the ONNX export wraps as it is::

    pipe = pipeline(run, draw=None | k, solver=None, steps=None)   # float32, eval mode
    noise = pipe.draw_noise(n, generator)                          # [n, pipe.noise_dim]
    out = pipe(noise)                                              # the process's outputs

:func:`frozen_sampler` freezes the run's generator for one draw (:class:`FrozenSampler`:
``draw=k`` materialises posterior draw k of a Bayesian model's weights, seeded by the card's
seed; ``draw=None`` uses the weight means; a plain model ignores the draw), and the run's
process (:meth:`hepgen.processes.base.Process.pipeline`) wraps it with its inverse coordinates
and whatever else its events need (Z+jets: the multiplicity, the azimuth, the charges).
``solver`` / ``steps`` override the card's sampler settings; a family without them rejects
any value but None. A run with ``model.nuisance`` (:mod:`hepgen.nuisance`) has one more sampler
noise column per nuisance (layout ``"nuisance"``, holding nu; 0 = nominal) after the family's own.

A generator that maps samples (DiDi, ``Generator.maps_samples``) has no noise: its
``noise_layout`` is all ``"source"``, ``draw_noise`` refuses, and the process's pipeline takes
source events (``Process.source_input``) where the others take noise.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from .models.ensemble import member_of
from .nuisance import category_table, conditioned
from .nn.bayesian import is_bayesian, materialize


@dataclass
class FrozenSampler:
    """A trained generator frozen for one Bayesian draw (float32, eval, no gradients).

    ``module(z [N, noise_dim], c [N, C]) -> x [N, D]`` is exportable; ``draw_noise(n,
    generator)`` draws its noise ``[n, noise_dim]``; ``noise_layout`` says per column whether it
    is ``"normal"`` (N(0, 1)) or ``"uniform"`` (U[0, 1)); ``record`` holds the sampler settings
    the outputs record (e.g. ``{"solver": "rk4", "steps": 20}``).
    """

    module: nn.Module
    noise_dim: int
    draw_noise: Callable[..., torch.Tensor]
    noise_layout: list[str]
    family: str
    record: dict[str, Any] = field(default_factory=dict)


def sampler_options(solver: str | None, steps: int | None) -> dict:
    """The sampler overrides a user gave (None = the card's)."""
    return {k: v for k, v in (("solver", solver), ("steps", steps)) if v is not None}


def frozen_sampler(model: nn.Module, seed: int, draw: int | None = None, solver: str | None = None,
                   steps: int | None = None) -> FrozenSampler:
    """``model`` frozen for Bayesian draw ``draw`` (weights seeded by ``seed``; an ensemble: member
    ``draw``, None = member 0), with its sampler."""
    model = member_of(model, draw)
    frozen = materialize(model, draw, seed=seed) if is_bayesian(model) else copy.deepcopy(model).eval()
    frozen = frozen.float().eval()
    for prm in frozen.parameters():
        prm.requires_grad_(False)
    opts = sampler_options(solver, steps)
    module = frozen.sampler(**opts)

    def draw_noise(n, generator=None, _f=frozen, _o=opts):
        return _f.draw_noise(n, generator, **_o)

    return FrozenSampler(module, frozen.noise_dim(**opts), draw_noise, frozen.noise_layout(**opts),
                         frozen.family, frozen.sampler_record(**opts))


def pipeline(run, draw: int | None = None, solver: str | None = None, steps: int | None = None) -> nn.Module:
    """The exportable float32 generation module of ``run`` (a :class:`hepgen.runs.Run`) for
    Bayesian draw ``draw``; see the module docstring."""
    sampler = conditioned(frozen_sampler(run.model, run.card.seed, draw, solver, steps), run.card.model.nuisance,
                          category_table(run.coords))
    return run.process.pipeline(run, sampler, draw).eval()
