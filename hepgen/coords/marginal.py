"""The dimuon mass drawn from the training sample's line shape (``process.settings.mass_sampling:
marginal``), a condition of the network instead of one of its columns.

    p(event | n) = p(m | n) p(rest | m, n)

p(m | n) is the training sample's own distribution of the (standardised) dimuon-mass column for
each jet multiplicity n; the network learns the rest of the event given it (c = [one-hot n | m]).
A CFM that learns the narrow Z peak as one of 17 columns leaves percent-level wiggles over the
peak (docs/training.md); drawn like this, the line shape is the training sample's by construction,
as precise as its statistics, and the network still learns every correlation with m.

:class:`MassMarginal` (fitted, in the run's coordinates) holds per multiplicity the edges of
:data:`FINE` equal-count bins of the column and the (weighted) count in each. From it
:meth:`MassMarginal.table` builds the inverse CDF at :data:`KNOTS` + 1 equally spaced
probabilities, piecewise linear in between (within a bin the density is flat); ``draw=k``
first draws the bin contents from their Dirichlet posterior (counts as for the multiplicity
fractions), so each Bayesian draw carries the training sample's statistical uncertainty of the
line shape. :class:`MassDraw` evaluates a table inside the exported pipeline: u ~ U[0, 1) and
the one-hot multiplicity -> the column value, with Clip, MatMul and arithmetic only (no Gather).
Values beyond the training sample's smallest and largest mass are never drawn.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn

from ..errors import InputError

FINE = 4096  # equal-count bins per multiplicity of the fitted line shape (fewer with fewer events)
KNOTS = 256  # equally spaced probabilities of the exported inverse CDF (memory: N x KNOTS per call)
MIN_EVENTS = 100  # a multiplicity's line shape needs at least this many training events


class MassMarginal(nn.Module):
    """Per multiplicity: ``edges`` ``[K, FINE + 1]`` of equal-count bins of the standardised mass
    column and ``counts`` ``[K, FINE]`` (Σw per bin scaled to the effective sample size; float64
    buffers saved with the coordinates)."""

    def __init__(self, k: int, fine: int = FINE):
        super().__init__()
        self.register_buffer("edges", torch.zeros(k, fine + 1, dtype=torch.float64))
        self.register_buffer("counts", torch.zeros(k, fine, dtype=torch.float64))

    @torch.no_grad()
    def fit(self, s: torch.Tensor, n: np.ndarray, n_values, w: np.ndarray) -> None:
        """``s`` ``[N]`` the standardised column, ``n`` ``[N]`` the multiplicities, ``w`` ``[N]`` the
        event weights (bins with a negative total count as empty)."""
        s = s.double().numpy()
        fine = self.counts.shape[1]
        for k, v in enumerate(n_values):
            sel = n == v
            if sel.sum() < MIN_EVENTS:
                raise InputError(f"process.settings.mass_sampling: marginal needs at least {MIN_EVENTS} training "
                                 f"events with {v} jet(s) for their dimuon line shape; there are {int(sel.sum())}")
            edges = np.quantile(s[sel], np.linspace(0.0, 1.0, fine + 1))
            ww = w[sel]
            idx = np.clip(np.searchsorted(edges, s[sel], side="right") - 1, 0, fine - 1)
            per = np.clip(np.bincount(idx, weights=ww, minlength=fine), 0.0, None)
            self.edges[k] = torch.from_numpy(edges)
            self.counts[k] = torch.from_numpy(per * (ww.sum() / np.sum(ww**2)))

    def table(self, seed: int, draw: int | None = None, knots: int = KNOTS) -> np.ndarray:
        """``[K, knots + 1]`` float64: the column's inverse CDF at probabilities j / knots for each
        multiplicity; ``draw=k``: with the bin contents drawn from their Dirichlet posterior
        (seeded by ``seed`` and ``k``), None: the fitted contents."""
        counts = self.counts.numpy()
        if draw is not None:
            digest = hashlib.sha256(f"hepgen-mass/{seed}/{draw}".encode()).digest()
            rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
            counts = rng.gamma(np.maximum(counts, 1e-12))  # normalised below: a Dirichlet draw per row
        levels = np.linspace(0.0, 1.0, knots + 1)
        rows = []
        for c, e in zip(counts, self.edges.numpy()):
            cum = np.concatenate([[0.0], np.cumsum(c)])
            rows.append(np.interp(levels, cum / cum[-1], e))
        return np.stack(rows)


class MassDraw(nn.Module):
    """Exportable (u ``[N]`` ~ U[0, 1), one-hot ``[N, K]``) -> the mass column ``[N]``, piecewise
    linear between the ``table`` ``[K, Q + 1]`` values at probabilities j / Q (a float32 buffer:
    each Bayesian draw's weight file carries its own)."""

    def __init__(self, table: np.ndarray):
        super().__init__()
        self.register_buffer("table", torch.tensor(table, dtype=torch.float32))
        self.register_buffer("steps", torch.arange(table.shape[1] - 1, dtype=torch.float32))

    def forward(self, u: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        q = self.table.shape[1] - 1
        # fraction of each probability step [j/Q, (j+1)/Q] below u: 1 for steps below, 0 above
        t = torch.clamp(u.unsqueeze(-1) * q - self.steps.to(u.dtype), 0.0, 1.0)
        table = self.table.to(u.dtype)
        rise = table[:, 1:] - table[:, :-1]  # [K, Q]
        per = t @ rise.transpose(0, 1) + table[:, 0]  # [N, K]: the column for every multiplicity
        return (per * onehot).sum(-1)
