"""The one protocol every generator family follows.

A generator learns a density over network coordinates ``x`` ``[N, D]`` (see
:mod:`hepgen.coords`) given a condition ``c`` ``[N, C]`` (``C`` may be 0; for Z+jets the
one-hot jet multiplicity). It is a *pure function of explicit noise*: everything random at
generation time is drawn outside and passed in, so torch, ONNX Runtime and C++ give the same
events for the same noise, and a framework keeps control of its random numbers.

    loss(x, c, weight) -> scalar training loss (mean over events, or with ``weight`` ``[N]`` the
                          mean of weight x per-event loss; the KL term of Bayesian layers is
                          added by the training loop, not here). ``event_weights`` says which
                          weights the family's loss takes ("signed", "positive" or "none")
    noise_dim()        -> noise columns ``sample`` consumes per event
    noise_layout()     -> per noise column "normal" (N(0, 1)), "uniform" (U[0, 1)) or "source"
                          (a source event's network coordinates, for families that map samples)
    sampler_record()   -> the sampler settings generated files and exports record
    sampler(**opts)    -> an exportable ``nn.Module``: forward(noise [N, noise_dim], c [N, C])
                          -> x [N, D]; tensor ops only, fixed unrolled loops
    sample(noise, c)   -> x [N, D] (= sampler()(noise, c) with the card's settings)
    log_prob(x, c)     -> [N] log-density, where the family has one
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from ..cards import ModelConfig
from ..errors import CardError


class ModelSettingError(CardError, ValueError):
    """A model or sampler setting the family does not have or does not allow (one line; the CLI
    prints it as ``hepgen: error: ...``)."""


class Generator(nn.Module):
    """Base class of the generator families (see module docstring)."""

    family: ClassVar[str] = ""
    # False: ``sample`` starts from drawn noise. True (DiDi): it starts from source events in
    # network coordinates; training data are ``[target | source]``, ``[N, 2D]``, and the card names
    # the source sample (``data.source``)
    maps_samples: ClassVar[bool] = False
    # the values of ``model.network.backbone`` the family's network is built from (checked once,
    # in :func:`hepgen.models.build_model`, before anything is built)
    backbones: ClassVar[tuple[str, ...]] = ("mlp",)
    # whether ``model.network.fourier`` (random Fourier features of the mlp's input) serves the family
    fourier_features: ClassVar[bool] = True
    # whether a run of the family can teach ``hepgen distill`` (:mod:`hepgen.distill`): a deterministic
    # map from Gaussian noise whose network the distilled models start from (CFM)
    teaches: ClassVar[bool] = False
    # the ``hepgen distill`` method (:data:`hepgen.distill.METHODS`) whose rows the model learns:
    # ``[x_T | z]`` ``[N, 2D]``, a teacher's sample and the noise it came from (:func:`split_pairs`);
    # None for a model trained on events. Set per instance where a card key decides (CFM: "reflow"
    # with ``model.cfm.coupling: paired``)
    distill_method: str | None = None
    # the per-event weights ``loss(x, c, weight)`` takes (``data.weights: file``): "signed" (a weighted
    # likelihood or regression: negative weights allowed), "positive" (only w >= 0) or "none"
    event_weights: ClassVar[str] = "signed"
    # whether the family has :meth:`paired_loss` (``train.nuisance_paired``, :mod:`hepgen.nuisance`)
    pairs_nuisances: ClassVar[bool] = False

    def __init__(self, dim: int, cond_dim: int, cfg: ModelConfig):
        super().__init__()
        self.dim, self.cond_dim, self.cfg = dim, cond_dim, cfg

    @property
    def learns_from_teacher(self) -> bool:
        """Whether the training rows are a teacher's pairs (:attr:`distill_method` is set)."""
        return self.distill_method is not None

    def loss(self, x: torch.Tensor, c: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def paired_loss(self, x: torch.Tensor, c: torch.Tensor, c_varied: torch.Tensor, w_varied: torch.Tensor,
                    weight: torch.Tensor | None = None) -> torch.Tensor:
        """The loss of x ``[N, D]`` at the nominal condition c ``[N, C]`` plus, with the same random
        numbers, at ``c_varied`` with the nuisance weights ``w_varied`` ``[N]``, its nominal part
        taken by a control variate (families with :attr:`pairs_nuisances`)."""
        raise NotImplementedError

    def set_active_columns(self, active: torch.Tensor | None) -> None:
        """Optional hook: ``active`` ``[C, D]`` bool says which columns hold present objects under
        each one-hot condition (None: all). Families that can use it (CFM) override this; the
        others learn every column (absent ones carry N(0, 1) fill, :meth:`ZJetsCoords.encode`)."""

    def fit_data(self, x: torch.Tensor) -> None:
        """Optional hook: called once with the encoded training rows ``x`` before a new training
        starts (DiDi marks the source columns it fills with noise); a no-op by default."""

    def attach_coords(self, coords: nn.Module) -> None:
        """Optional hook: the run's fitted coordinates (physics <-> network, :mod:`hepgen.coords`),
        given once they are fitted (training) or loaded (:func:`hepgen.runs.load_run`), before the
        first ``loss`` or ``sample``. Families that compute physics inside the network or the loss
        (an MMD on m_mumu, a Lorentz-equivariant backbone on four-momenta) keep a reference, never
        a submodule (the coordinates are saved apart); a no-op by default."""

    def check_coords(self, coords: nn.Module) -> None:
        """Optional hook: the process's coordinates (not yet fitted) when the model is built from a
        card (:func:`hepgen.runs.build_for`), so that card settings they cannot serve (an MMD on an
        observable the process does not offer) fail with a one-line ``CardError`` before any work
        or output; a no-op by default."""

    def noise_dim(self, **opts) -> int:
        """Noise columns per event that ``sampler(**opts)`` consumes (default: D)."""
        return self.dim

    def noise_layout(self, **opts) -> list[str]:
        """Per noise column of ``sampler(**opts)``: "normal" (N(0, 1), the default) or "uniform"."""
        return ["normal"] * self.noise_dim(**opts)

    def sampler_record(self, **opts) -> dict:
        """The sampler settings ``sampler(**opts)`` runs with, as outputs record them (none by default)."""
        return {}

    def sampler(self, **opts) -> nn.Module:
        raise NotImplementedError

    def sample(self, noise: torch.Tensor, c: torch.Tensor, **opts) -> torch.Tensor:
        """x ``[N, D]`` from noise ``[N, noise_dim]`` and condition ``[N, C]``; deterministic."""
        with torch.no_grad():
            return self.sampler(**opts)(noise, c)

    def draw_noise(self, n: int, generator: torch.Generator | None = None, **opts) -> torch.Tensor:
        """Standard-normal noise ``[n, noise_dim]`` (families needing uniforms override)."""
        return torch.randn(n, self.noise_dim(**opts), generator=generator)

    def log_prob(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{self.family} has no log_prob")


def check_no_options(family: str, opts: dict) -> None:
    """Families without sampler settings accept ``solver=None, steps=None`` (what a caller passes
    when the user gave none) and reject anything else with a one-line error."""
    given = {k: v for k, v in opts.items() if v is not None}
    if given:
        raise ModelSettingError(f"the {family} sampler has no settings; got {', '.join(f'{k}={v!r}' for k, v in given.items())}")


def split_pairs(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher pairs ``[x_T | z]`` ``[N, 2D]`` -> (x_T ``[N, D]``, z ``[N, D]``); one-line error otherwise."""
    if x.shape[-1] != 2 * dim:
        raise ModelSettingError(f"a model that learns from a teacher trains on [x_T | z] rows of {2 * dim} columns; "
                                f"got {x.shape[-1]} (make the run with hepgen distill)")
    return x[:, :dim], x[:, dim:]


def empty_condition(n: int, like: torch.Tensor | None = None) -> torch.Tensor:
    """A ``[n, 0]`` condition for unconditional models."""
    kw = {} if like is None else {"dtype": like.dtype, "device": like.device}
    return torch.zeros(n, 0, **kw)


def normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """``[N]`` log density of the standard normal in z's ``D`` columns, ``[N, D]`` -> ``[N]``."""
    return -0.5 * (z**2).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)


def weighted_mean(per_event: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """mean over events of ``per_event`` ``[N]``, each times its ``weight`` ``[N]`` (None: the plain
    mean). The training data's weights have mean 1 (:func:`hepgen.trainingdata.prepare_data`),
    so this is an unbiased estimate of the weighted expectation, also with negative weights."""
    return per_event.mean() if weight is None else (per_event * weight.to(per_event.dtype)).mean()
