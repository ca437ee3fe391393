"""A bidirectional transformer backbone over the coordinates of one event (CFM velocity field).

(The causal transformer of JetGPT is :mod:`hepgen.nn.transformer`.)

Every input coordinate is a token: value embedding (Linear 1 -> hidden) + a learned position
embedding + the embedded condition (time, jet multiplicity); pre-norm self-attention blocks
(:class:`hepgen.nn.transformer.TransformerBlock` without the causal mask, written out with
MatMul / Softmax so it exports without fused attention ops); a per-token
linear head gives one output per coordinate (``out_dim == in_dim``, as a velocity field needs)
or, otherwise, a head over the flattened tokens. With ``bayes.enabled`` the layers chosen by
``bayes.layers`` are Bayesian, like :class:`hepgen.nn.blocks.ResidualMLP`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..cards import BayesConfig, NetworkConfig
from .bayesian import BayesianLinear
from .blocks import linear
from .transformer import TransformerBlock


class CoordinateTransformer(nn.Module):
    """x ``[N, in_dim]`` (+ condition ``[N, cond_dim]``) -> ``[N, out_dim]``."""

    def __init__(self, in_dim: int, out_dim: int, net: NetworkConfig, bayes: BayesConfig | None = None,
                 cond_dim: int = 0):
        super().__init__()
        every = bayes is not None and bayes.enabled and bayes.layers == "all"
        w = net.hidden
        self.in_dim, self.out_dim = in_dim, out_dim
        self.value = nn.Linear(1, w)
        self.pos = nn.Parameter(torch.randn(in_dim, w) * 0.02)
        self.cond = nn.Linear(cond_dim, w) if cond_dim else None
        self.layers = nn.ModuleList(TransformerBlock(in_dim, net, bayes, every, causal=False, mlp_ratio=2)
                                    for _ in range(net.layers))
        self.norm = nn.LayerNorm(w)
        self.per_token = out_dim == in_dim
        self.out = linear(w if self.per_token else w * in_dim, 1 if self.per_token else out_dim, bayes, bayesian=True)
        with torch.no_grad():
            wt = self.out.weight_mu if isinstance(self.out, BayesianLinear) else self.out.weight
            wt.mul_(0.01)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        h = self.value(x.unsqueeze(-1)) + self.pos
        if self.cond is not None and c is not None and c.shape[-1]:
            h = h + self.cond(c).unsqueeze(1)
        for layer in self.layers:
            h = layer(h)
        h = self.norm(h)
        if self.per_token:
            return self.out(h).squeeze(-1)
        return self.out(h.reshape(h.shape[0], -1))
