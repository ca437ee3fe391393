"""The nuisance weight multiplied out (docs/systematics.md): the categories' mean weights at any nu,
the condition columns of nu, and the exact mixture of the range's ends (prior ``ends``).

w(x; nu) = prod_k (1 + relu(nu_k) s+_k + relu(-nu_k) s-_k) is a sum of 3^K terms, each a product of
relu(+-nu_k) (:func:`term_factors`) and of the event's slopes; the mean of each term over a category's
training events (:func:`category_means`, fitted once: :class:`CategoryMeans`) gives the category's mean
weight at any nu exactly. Z+jets draws its jet multiplicity with it (:mod:`hepgen.processes.zjets`),
and :class:`MixtureDraw` the mixture component of prior ``ends``.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .modelcards import NuisanceConfig


def expansion_terms(k: int) -> list[tuple[int, ...]]:
    """The 3^K terms of w(x; nu) = prod_k (1 + relu(nu_k) s+_k + relu(-nu_k) s-_k) multiplied out: per
    nuisance 0 (its 1), +1 (relu(nu_k) s+_k) or -1 (relu(-nu_k) s-_k); the first term is all 0 (the 1)."""
    return list(itertools.product((0, 1, -1), repeat=k))


def term_factors(nu: torch.Tensor) -> torch.Tensor:
    """``[N, T]``: the nu-part of each expansion term (:func:`expansion_terms`) for nu ``[N, K]``:
    prod over the term's nuisances of relu(+-nu_k). Exportable (Relu, Mul)."""
    cols = []
    for term in expansion_terms(nu.shape[-1]):
        f = torch.ones_like(nu[:, 0])
        for k, sign in enumerate(term):
            if sign:
                f = f * torch.relu(nu[:, k] if sign > 0 else -nu[:, k])
        cols.append(f)
    return torch.stack(cols, dim=-1)


def category_means(slopes: np.ndarray, category: np.ndarray, n_categories: int, w: np.ndarray) -> np.ndarray:
    """``[T, C]`` float64: per category c the w-weighted mean over its events of each expansion term's
    slope product (prod over the term's nuisances of s+ or s-), so that the mean of w(x; nu) over
    category c is ``term_factors(nu) @ table[:, c]`` exactly (row 0, the all-1 term, is 1). The
    fraction of category c at nu is then f_c(0) times that mean, normalised over the categories."""
    table = np.zeros((3 ** slopes.shape[1], n_categories))
    norm = np.array([w[category == c].sum() for c in range(n_categories)])
    for t, term in enumerate(expansion_terms(slopes.shape[1])):
        prod = np.ones(len(slopes))
        for k, sign in enumerate(term):
            if sign:
                prod = prod * slopes[:, k, 0 if sign > 0 else 1]
        table[t] = [(w * prod)[category == c].sum() / norm[c] if norm[c] > 0 else float(t == 0) for c in range(n_categories)]
    return table


class CategoryMeans(nn.Module):
    """The fitted :func:`category_means` table ``[3^K, C]`` (buffer ``table``, float64) of K nuisances and
    C categories. Unfitted, and in a state saved before it existed, the table is that of no
    nu-dependence (the 1 term only), so such runs keep their fixed fractions."""

    def __init__(self, k: int, categories: int):
        super().__init__()
        table = torch.zeros(3 ** k, categories, dtype=torch.float64)
        table[0] = 1.0
        self.register_buffer("table", table)
        self.register_load_state_dict_pre_hook(self._default)

    def _default(self, module, state_dict, prefix, *args) -> None:
        state_dict.setdefault(prefix + "table", self.table.clone())

    def fit(self, slopes: np.ndarray, category: np.ndarray, w: np.ndarray) -> None:
        self.table.copy_(torch.from_numpy(category_means(slopes, category, self.table.shape[1], w)))


def cond_width(nus: Sequence[NuisanceConfig]) -> int:
    """The condition columns the nuisances take: one per nuisance (nu itself), two with prior ``ends``
    (:func:`encode`)."""
    return 2 * len(nus) if nus and all(n.prior == "ends" for n in nus) else len(nus)


def encode(nus: Sequence[NuisanceConfig], nu: torch.Tensor) -> torch.Tensor:
    """The network's condition columns for nu ``[N, K]``: nu itself, or with prior ``ends`` each side's
    fraction of the way to its end, relu(nu) / high and relu(-nu) / -low (``[N, 2K]``; at the ends and
    0 an indicator of the end, so the network learns the three densities apart instead of one
    response smooth in nu: a toy trained on nu in {-0.5, 0, 1} with nu itself as the condition learned
    a response linear in nu and half the one at -0.5). Exportable (Relu, Div)."""
    if cond_width(nus) == len(nus):
        return nu
    hi = torch.tensor([float(n.range[1]) if n.range[1] > 0 else 1.0 for n in nus], dtype=nu.dtype, device=nu.device)
    lo = torch.tensor([-float(n.range[0]) if n.range[0] < 0 else 1.0 for n in nus], dtype=nu.dtype, device=nu.device)
    return torch.cat([torch.relu(nu) / hi, torch.relu(-nu) / lo], dim=-1)


def probability_edges(p: torch.Tensor) -> torch.Tensor:
    """``[N, K + 1]`` category edges of per-event probabilities ``p`` ``[N, K]`` (rows summing to 1): 0,
    the running sums, then 2 (above any u < 1), for :func:`hepgen.coords.zjets.categorical_onehot`.
    Exportable (Add; no CumSum)."""
    cols, acc = [torch.zeros_like(p[:, 0])], torch.zeros_like(p[:, 0])
    for k in range(p.shape[1] - 1):
        acc = acc + p[:, k]
        cols.append(acc)
    cols.append(torch.full_like(acc, 2.0))
    return torch.stack(cols, dim=-1)


class MixtureDraw(nn.Module):
    """prior ``ends``: nu -> the nu the network gets, per event. On each side w(x; nu) is linear in nu,
    so w = (1 - t) + t w(x; nu_end) with t = nu / nu_end (nu_end the range's end on nu's side), and
    p(x | c, nu) is exactly the mixture of the network's densities at 0 and at nu_end. For K
    nuisances the 2^K components S (a subset at their ends, the rest at 0) have the weights
    prod_{k in S} t_k prod_{k not in S} (1 - t_k) <w(x; nu_S)>_c, the category mean from the
    :class:`CategoryMeans` table (``c``'s first C columns are the category one-hot; one category
    without). One uniform u per event picks S. Exportable (Relu, Div, Where, MatMul, compares)."""

    def __init__(self, nus: Sequence[NuisanceConfig], table: torch.Tensor):
        super().__init__()
        self.k = len(nus)
        self.register_buffer("lo", torch.tensor([float(n.range[0]) for n in nus], dtype=torch.float32))
        self.register_buffer("hi", torch.tensor([float(n.range[1]) for n in nus], dtype=torch.float32))
        self.register_buffer("table", table.to(torch.float32).clone())
        subsets = [[(s >> j) & 1 for j in range(self.k)] for s in range(2 ** self.k)]
        self.register_buffer("subsets", torch.tensor(subsets, dtype=torch.float32))  # [2^K, K]
        self.nus = tuple(nus)

    def encode(self, nu: torch.Tensor) -> torch.Tensor:
        return encode(self.nus, nu)

    def forward(self, nu: torch.Tensor, u: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        sides = self.encode(nu)
        t = sides[:, :self.k] + sides[:, self.k:]  # the fraction of the way to nu's end
        end = torch.where(nu >= 0, self.hi, self.lo)  # [N, K]
        cats = self.table.shape[1]
        pick = c[:, :cats] if cats > 1 else torch.ones_like(nu[:, :1])
        probs, values = [], []
        for s in range(len(self.subsets)):
            mask = self.subsets[s]
            nu_s = end * mask
            mean_w = (term_factors(nu_s) @ self.table * pick).sum(-1)
            share = torch.ones_like(u)
            for j in range(self.k):  # no ReduceProd (outside SOFIE's set)
                share = share * (t[:, j] * mask[j] + (1 - t[:, j]) * (1 - mask[j]))
            probs.append(share * mean_w)
            values.append(nu_s)
        p = torch.stack(probs, dim=-1)
        p = p / p.sum(-1, keepdim=True)
        edges = probability_edges(p)
        onehot = torch.stack([(u >= edges[:, s]).to(u.dtype) - (u >= edges[:, s + 1]).to(u.dtype)
                              for s in range(p.shape[1])], -1)  # categorical_onehot's (coords.zjets imports this module)
        return (onehot.unsqueeze(-1) * torch.stack(values, dim=1)).sum(1)
