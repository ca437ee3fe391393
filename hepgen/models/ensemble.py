"""Repulsive deep ensembles: K generators of one family, trained together in one loss.

``model.ensemble.members`` = K > 1 makes :func:`hepgen.models.build_model` return an
:class:`Ensemble` holding K members of the card's family (each built from the same settings,
initialised from the next numbers of the torch RNG, so they start apart). Its loss is, in the
training loop's one optimiser step (:mod:`hepgen.train`),

    loss = 1/K sum_i [ L_i + repulsion / N_train * log sum_j k(f_i, sg(f_j)) ]

(``sg``: no gradient). The gradient of the second term with respect to member i is
``sum_j grad_i k(f_i, f_j) / sum_j k(f_i, f_j)``: the repulsive force of repulsive deep ensembles
(D'Angelo & Fortuin 2021, "Repulsive deep ensembles are Bayesian"), which turns the ensemble's
gradient flow into a particle approximation of the posterior; with ``repulsion`` 0 it is a plain
deep ensemble. The 1/N_train puts it on the scale of the per-event loss (the posterior is N_train
times the mean log-likelihood plus the log prior), like the KL term of Bayesian layers.
With ``bootstrap`` (bagging) the training loop passes weights ``[N, K]``: column k is member k's
Poisson(1) resample counts of the batch's events (:func:`hepgen.trainingdata.bootstrap_counts`)
times their event weights, so the members differ by the events they learn, not only by their start.
``k(a, b) = exp(-|a - b|^2 / h)``, h by the median heuristic (median of the squared distances /
log K, no gradient). ``kernel``:

* ``weight``: f_i = the member's trainable parameters, flattened (every family);
* ``function``: f_i = the member's samples ``sampler()(noise, c)`` for noise shared by all members
  and the first :data:`FUNCTION_EVENTS` events of the batch (families that start from noise; the
  repulsion then acts on what the member generates, blind to the permutations of hidden units
  that make weight-space distances misleading).

N_train is set once by ``fit_data`` (a buffer, so a resumed run keeps it). Sampling, export and
generation treat members as the draws of a Bayesian model: draw ``k`` is member ``k``
(:func:`member_of`; every member has the same structure and parameter names, so the export writes
one graph and K weight files), draw None is member 0 (an ensemble has no weight mean).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import CardError, InputError
from .base import Generator

FUNCTION_EVENTS = 256  # events of each batch on which the function-space kernel compares the members


class Ensemble(Generator):
    """K members of one family (``members``, an ``nn.ModuleList``); see the module docstring."""

    def __init__(self, members: list[Generator], cfg):
        first = members[0]
        super().__init__(first.dim, first.cond_dim, cfg)
        ens = cfg.ensemble
        if first.learns_from_teacher:
            raise CardError(f"model.ensemble.members {len(members)}: a model distilled from a teacher (hepgen distill: "
                            f"student, reflow) learns the teacher's one map; ensembles of it are not supported")
        if ens.kernel == "function" and first.maps_samples:
            raise CardError(f"model.ensemble.kernel function compares the members' samples from noise; the "
                            f"{first.family} generator maps source events: use kernel weight")
        if ens.bootstrap and first.event_weights == "none":
            raise CardError(f"model.ensemble.bootstrap weights each member's loss by its resample counts; the "
                            f"{first.family} loss has no per-event form: set bootstrap false")
        self.members = nn.ModuleList(members)
        self.family = first.family
        self.maps_samples = first.maps_samples
        self.event_weights = first.event_weights  # data.weights: file reaches every member's loss
        self.pairs_nuisances = first.pairs_nuisances
        self.repulsion, self.kernel = float(ens.repulsion), ens.kernel
        self.register_buffer("n_train", torch.zeros((), dtype=torch.float64))

    # -- hooks: every member ------------------------------------------------------------------
    def set_active_columns(self, active):
        for m in self.members:
            m.set_active_columns(active)

    def fit_data(self, x):
        self.n_train.fill_(float(len(x)))
        for m in self.members:
            m.fit_data(x)

    def attach_coords(self, coords):
        for m in self.members:
            m.attach_coords(coords)

    def check_coords(self, coords):
        for m in self.members:
            m.check_coords(coords)

    # -- training -----------------------------------------------------------------------------
    def loss(self, x, c, weight=None):
        """``weight`` ``[N]`` weights every member's events alike; ``[N, K]`` gives member k column k
        (``model.ensemble.bootstrap``: its resample counts, times the event weights)."""
        return self._members_loss(lambda m, w: m.loss(x, c) if w is None else m.loss(x, c, w), x, c, weight)

    def paired_loss(self, x, c, c_varied, w_varied, weight=None):
        """Every member's :meth:`~hepgen.models.base.Generator.paired_loss`; ``weight`` as in :meth:`loss`."""
        return self._members_loss(lambda m, w: m.paired_loss(x, c, c_varied, w_varied, w), x, c, weight)

    def _members_loss(self, member_loss, x, c, weight):
        per = [weight if weight is None or weight.dim() == 1 else weight[:, k] for k in range(len(self.members))]
        total = torch.stack([member_loss(m, w) for m, w in zip(self.members, per)]).mean()
        if self.training and self.repulsion > 0 and len(self.members) > 1:
            total = total + self.repulsion / max(float(self.n_train), 1.0) * self.repulsive_term(x, c)
        return total

    def features(self, x, c) -> torch.Tensor:
        """``[K, F]``: what the kernel compares (flat parameters, or samples on shared noise)."""
        if self.kernel == "weight":
            return torch.stack([torch.cat([p.reshape(-1) for p in m.parameters() if p.requires_grad])
                                for m in self.members])
        n = min(len(x), FUNCTION_EVENTS)
        noise = self.members[0].draw_noise(n).to(x)
        return torch.stack([m.sampler()(noise, c[:n]).reshape(-1) for m in self.members])

    def repulsive_term(self, x, c) -> torch.Tensor:
        """``sum_i log sum_j k(f_i, sg(f_j))`` (its gradient is the repulsive force)."""
        f = self.features(x, c)
        fd = f.detach()
        # [K, K]: |f_i - sg(f_j)|^2 = |f_i|^2 + |f_j|^2 - 2 f_i . sg(f_j), through the K x K Gram matrix:
        # the difference tensor [K, K, F] costs 2x the members' own training step at F ~ 6e5 weights.
        # The diagonal is exactly 0 (its gradient, 2 f_i - 2 f_i, is 0 in either form).
        k = len(self.members)
        eye = torch.eye(k, dtype=torch.bool, device=f.device)
        sq = (f * f).sum(1)  # |f_i|^2; its detached copy is |sg(f_j)|^2
        d2 = (sq[:, None] + sq.detach()[None, :] - 2.0 * f @ fd.T).clamp_min(0.0)
        d2 = d2.masked_fill(eye, 0.0)
        off = d2.detach()[~eye]
        h = (off.median() / math.log(k)).clamp_min(1e-12)
        return torch.logsumexp(-d2 / h, dim=1).sum()

    # -- sampling: member 0 (the draws: member_of) ---------------------------------------------
    def noise_dim(self, **opts):
        return self.members[0].noise_dim(**opts)

    def noise_layout(self, **opts):
        return self.members[0].noise_layout(**opts)

    def sampler_record(self, **opts):
        return self.members[0].sampler_record(**opts)

    def sampler(self, **opts):
        return self.members[0].sampler(**opts)

    def draw_noise(self, n, generator=None, **opts):
        return self.members[0].draw_noise(n, generator, **opts)

    def log_prob(self, x, c):
        """The mixture's log-density: log mean_i p_i(x | c)."""
        lp = torch.stack([m.log_prob(x, c) for m in self.members])
        return torch.logsumexp(lp, dim=0) - math.log(len(self.members))


def is_ensemble(model: nn.Module) -> bool:
    return isinstance(model, Ensemble)


def member_of(model: nn.Module, draw: int | None) -> nn.Module:
    """The generator of draw ``draw``: member ``draw`` of an ensemble (None: member 0), else the model."""
    if not is_ensemble(model):
        return model
    k = 0 if draw is None else int(draw)
    if not 0 <= k < len(model.members):
        raise InputError(f"draw {k}: the ensemble has {len(model.members)} members (draws 0..{len(model.members) - 1})")
    return model.members[k]
