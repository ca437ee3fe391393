"""A small pre-LayerNorm transformer (causal or bidirectional), written from plain ops.

Used causally by JetGPT (one token per phase-space component, with incremental decoding) and
bidirectionally by the CFM transformer backbone (:mod:`hepgen.nn.coord_transformer`).

Attention is spelled out (Linear, MatMul, Softmax, an additive constant mask) instead of
``nn.MultiheadAttention`` so the exported ONNX graph uses only ops that ONNX Runtime and
SOFIE both know. Every linear layer goes through :func:`hepgen.nn.blocks.linear`, so with
``bayes.layers == "all"`` all of them are Bayesian.

Shapes: tokens ``h`` ``[N, L, H]`` with sequence length ``L`` and width ``H = net.hidden``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..cards import BayesConfig, NetworkConfig
from ..errors import CardError
from .blocks import _ACT, linear


class SelfAttention(nn.Module):
    """Multi-head self-attention ``[N, L, H] -> [N, L, H]``; causal: token i sees tokens 0..i."""

    def __init__(self, length: int, width: int, heads: int, bayes: BayesConfig | None, bayesian: bool,
                 causal: bool = True):
        super().__init__()
        if width % heads:
            raise CardError(f"model.network.hidden ({width}) must be divisible by model.network.heads ({heads})")
        self.heads, self.head_dim = heads, width // heads
        self.qkv = linear(width, 3 * width, bayes, bayesian)
        self.proj = linear(width, width, bayes, bayesian)
        self.causal = causal
        if causal:
            mask = torch.full((length, length), -1e9).triu(1)  # 0 on and below the diagonal
            self.register_buffer("mask", mask, persistent=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        n, length, width = h.shape
        q, k, v = self.qkv(h.reshape(n * length, width)).reshape(n, length, 3, self.heads, self.head_dim).unbind(2)
        q, k, v = (a.transpose(1, 2) for a in (q, k, v))  # [N, heads, L, head_dim]
        att = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        if self.causal:
            att = att + self.mask.to(h.dtype)
        out = (att.softmax(-1) @ v).transpose(1, 2).reshape(n * length, width)
        return self.proj(out).reshape(n, length, width)

    def step(self, h: torch.Tensor, cache: list) -> torch.Tensor:
        """Incremental decoding: the next token h ``[N, H]`` attends to itself and the tokens
        whose keys/values are in ``cache`` (a list, ``[]`` at the start, extended in place with
        ``[K, V]`` of shape ``[N, heads, i + 1, head_dim]``). Same result as ``forward`` on the
        whole sequence, at the cost of one token (a fixed shape per step: exportable)."""
        n, width = h.shape
        q, k, v = self.qkv(h).reshape(n, 3, self.heads, 1, self.head_dim).unbind(1)  # [N, heads, 1, hd]
        if cache:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        cache[:] = [k, v]
        att = (q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)).softmax(-1)  # [N, heads, 1, i+1]
        return self.proj((att @ v).reshape(n, width))


class TransformerBlock(nn.Module):
    """h + attn(LN(h)); h + MLP(LN(h)) with an ``mlp_ratio`` x wide MLP; ``[N, L, H] -> [N, L, H]``."""

    def __init__(self, length: int, net: NetworkConfig, bayes: BayesConfig | None, bayesian: bool,
                 causal: bool = True, mlp_ratio: int = 4):
        super().__init__()
        w = net.hidden
        self.norm1 = nn.LayerNorm(w)
        self.attn = SelfAttention(length, w, net.heads, bayes, bayesian, causal)
        self.norm2 = nn.LayerNorm(w)
        self.fc1 = linear(w, mlp_ratio * w, bayes, bayesian)
        self.fc2 = linear(mlp_ratio * w, w, bayes, bayesian)
        self.act = _ACT[net.activation]()
        self.drop = nn.Dropout(net.dropout) if net.dropout > 0 else nn.Identity()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.drop(self.attn(self.norm1(h)))
        n, length, w = h.shape
        m = self.fc2(self.act(self.fc1(self.norm2(h).reshape(n * length, w))))
        return h + self.drop(m.reshape(n, length, w))

    def step(self, h: torch.Tensor, cache: list) -> torch.Tensor:
        """One token ``[N, H]`` with cached keys/values (see :meth:`SelfAttention.step`; causal only)."""
        h = h + self.drop(self.attn.step(self.norm1(h), cache))
        return h + self.drop(self.fc2(self.act(self.fc1(self.norm2(h)))))
