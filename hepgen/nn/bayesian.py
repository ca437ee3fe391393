"""Bayesian (variational) linear layers and the helpers that train and freeze them.

A :class:`BayesianLinear` keeps a mean-field Gaussian over its weights and biases,
q(w) = N(mu, sigma^2), against a prior N(0, prior_sigma^2). In training it samples with the
local reparameterisation trick (noise on the pre-activations, one draw per event); the closed
form KL term (:func:`kl_divergence`) is added to the loss by the training loop, scaled by
1/N_train and the card's ``kl_scale``.

At generation time a posterior draw is frozen (:func:`set_draw`): draw ``k`` of seed ``s``
gives the same weights every time, on every machine. ``set_draw(model, None)`` uses the
means. :func:`materialize` returns a copy in which every Bayesian layer is an ordinary
``nn.Linear`` with the frozen weights: identical structure and parameter names for every draw,
which is what the ONNX export needs (one graph, one weight file per draw).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

from ..rngstate import derived_seed


class BayesianLinear(nn.Module):
    """y = x W^T + b with W, b ~ N(mu, exp(logsig2)); x ``[N, in]`` -> y ``[N, out]``."""

    def __init__(self, in_features: int, out_features: int, prior_sigma: float = 1.0,
                 init_log_sigma: float = -9.0):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.prior_sigma = prior_sigma
        ref = nn.Linear(in_features, out_features)
        self.weight_mu = nn.Parameter(ref.weight.detach().clone())
        self.bias_mu = nn.Parameter(ref.bias.detach().clone())
        self.weight_logsig2 = nn.Parameter(torch.full((out_features, in_features), 2 * init_log_sigma))
        self.bias_logsig2 = nn.Parameter(torch.full((out_features,), 2 * init_log_sigma))
        self.register_buffer("frozen_weight", None, persistent=False)
        self.register_buffer("frozen_bias", None, persistent=False)
        self.use_mean = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.frozen_weight is not None:
            return F.linear(x, self.frozen_weight, self.frozen_bias)
        if self.use_mean or not self.training:
            return F.linear(x, self.weight_mu, self.bias_mu)
        mean = F.linear(x, self.weight_mu, self.bias_mu)
        var = F.linear(x * x, self.weight_logsig2.exp(), self.bias_logsig2.exp())
        return mean + var.clamp_min(1e-30).sqrt() * torch.randn_like(mean)

    def kl(self) -> torch.Tensor:
        """KL(q || prior), summed over weights and bias (closed form)."""
        p2 = self.prior_sigma**2
        total = 0.0
        for mu, logsig2 in ((self.weight_mu, self.weight_logsig2), (self.bias_mu, self.bias_logsig2)):
            total = total + 0.5 * ((logsig2.exp() + mu**2) / p2 - 1.0 - logsig2 + math.log(p2)).sum()
        return total

    def draw(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One sample (weight, bias) from q, using ``generator`` (CPU) for the noise."""
        ew = torch.randn(self.weight_mu.shape, generator=generator, dtype=torch.float64)
        eb = torch.randn(self.bias_mu.shape, generator=generator, dtype=torch.float64)
        w = self.weight_mu.double() + (0.5 * self.weight_logsig2.double()).exp() * ew
        b = self.bias_mu.double() + (0.5 * self.bias_logsig2.double()).exp() * eb
        dev, dt = self.weight_mu.device, self.weight_mu.dtype
        return w.to(dev, dt).detach(), b.to(dev, dt).detach()

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, prior_sigma={self.prior_sigma}"


def bayesian_layers(model: nn.Module) -> list[BayesianLinear]:
    """All Bayesian layers of ``model`` in a fixed (module registration) order."""
    return [m for m in model.modules() if isinstance(m, BayesianLinear)]


def is_bayesian(model: nn.Module) -> bool:
    return bool(bayesian_layers(model))


def kl_divergence(model: nn.Module) -> torch.Tensor:
    """Sum of the KL terms of every Bayesian layer (0 for a plain model)."""
    layers = bayesian_layers(model)
    if not layers:
        return torch.zeros(())
    return sum(layer.kl() for layer in layers)


@torch.no_grad()
def set_draw(model: nn.Module, draw: int | None, seed: int = 0) -> nn.Module:
    """Freeze posterior draw ``draw`` (deterministic in (seed, draw)); ``None`` = the means."""
    for i, layer in enumerate(bayesian_layers(model)):
        if draw is None:
            layer.frozen_weight = layer.weight_mu.detach().clone()
            layer.frozen_bias = layer.bias_mu.detach().clone()
        else:
            gen = torch.Generator().manual_seed(derived_seed("bayes", seed, draw, i, bits=63))
            layer.frozen_weight, layer.frozen_bias = layer.draw(gen)
    return model


def unfreeze(model: nn.Module) -> nn.Module:
    """Back to training behaviour (sampling in train mode, means in eval mode)."""
    for layer in bayesian_layers(model):
        layer.frozen_weight = None
        layer.frozen_bias = None
    return model


@torch.no_grad()
def materialize(model: nn.Module, draw: int | None = None, seed: int = 0) -> nn.Module:
    """A deep copy with every BayesianLinear replaced by ``nn.Linear`` holding draw ``draw``.

    Plain models are copied unchanged. Parameter names become ``<layer>.weight``/``.bias``
    for every draw, so one exported graph fits the weights of every draw.
    """
    clone = copy.deepcopy(model)
    set_draw(clone, draw, seed)
    for name, module in list(clone.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, BayesianLinear):
                lin = nn.Linear(child.in_features, child.out_features,
                                device=child.weight_mu.device, dtype=child.weight_mu.dtype)
                lin.weight.copy_(child.frozen_weight)
                lin.bias.copy_(child.frozen_bias)
                setattr(module, child_name, lin)
    return clone.eval()
