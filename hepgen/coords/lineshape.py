"""Fitted resonance tails for the tt̄ mass columns (``process.settings.line_shape: fitted``).

The decay coordinates (:mod:`hepgen.coords.ttbar`) turn a mass m into the normal quantile of a
Breit-Wigner tail probability, a = atan(g / |m - M|) / pi on the side of the peak where m lies.
A line shape that is a Breit-Wigner becomes an exact N(0, 1) column. Pythia's W is not one:
its running width and the t -> b W phase space make the lower tail 3 times thinner and the upper
one 1.5 times thicker than a Breit-Wigner at 15 widths from the pole (docs/ttbar.md), and the
top's tails fall below one beyond about 20 widths. A flow from N(0, 1) has to learn that with
the 1 % of events in the tails.

``fitted`` bends the Breit-Wigner tail probability onto the training sample's own, per
resonance and side: in L = log(2a), a piecewise-linear map L -> L' through the sample's tail
fractions at |m - M| / g = 2^(j/2), j = 0..12 (knots with at least :data:`MIN_EVENTS` events
beyond them; the last slope continues outwards). Between knots the tail is a power of the
Breit-Wigner one, the map is monotone (slopes at least :data:`SLOPE_FLOOR`) and its inverse is
the same kind of map, so the column stays exactly invertible. The mass column of the training
sample is then N(0, 1) up to the interpolation between knots, in the tails too.

Exportable: Log, Exp, Relu and arithmetic, one term per knot.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

KNOTS = tuple(2.0 ** (j / 2) for j in range(13))  # |m - M| / g at the knots: 1 .. 64 half widths
MIN_EVENTS = 25  # a knot needs this many training events beyond it
SLOPE_FLOOR = 0.05  # keeps the map strictly monotone (invertible) where a tail is empty
# the knots in L = log(2 a) of the Breit-Wigner: a = atan(1 / d) / pi
BW_KNOTS = tuple(math.log(2 * math.atan(1 / d) / math.pi) for d in KNOTS)
SEGMENTS = len(KNOTS) + 1


def identity_slopes() -> torch.Tensor:
    """float64 ``[4, 2, SEGMENTS]``: the Breit-Wigner (no map) for t, W+, tbar, W-, below / above the peak."""
    return torch.ones(4, 2, SEGMENTS, dtype=torch.float64)


def fit_slopes(d: np.ndarray) -> torch.Tensor:
    """float64 ``[2, SEGMENTS]``: the map's slopes below and above the peak for a resonance
    whose training masses are ``d`` = (m - M) / g ``[N]``."""
    n = len(d)
    out = torch.ones(2, SEGMENTS, dtype=torch.float64)
    for side, sign in ((0, -1.0), (1, 1.0)):
        prev_b = prev_e = 0.0
        slopes: list[float] = []
        for lb, knot in zip(BW_KNOTS, KNOTS):
            count = int(np.sum(sign * d > knot))
            if count < MIN_EVENTS:
                break
            le = math.log(2 * count / n)
            slopes.append(max((le - prev_e) / (lb - prev_b), SLOPE_FLOOR))
            prev_e += slopes[-1] * (lb - prev_b)
            prev_b = lb
        if slopes:
            out[side, :len(slopes)] = torch.tensor(slopes, dtype=torch.float64)
            out[side, len(slopes):] = slopes[-1]
    return out


def _piecewise(x: torch.Tensor, s0, ds, knots) -> torch.Tensor:
    """s0 x + sum_j ds_j min(x - knot_j, 0): the piecewise-linear map through 0 with slope s0
    above the first knot (knots decreasing, all below 0)."""
    out = s0 * x
    for j in range(len(knots)):
        out = out - ds[j] * torch.relu(knots[j] - x)
    return out


class TailMap(nn.Module):
    """Tail probability a (``[N]``, in (0, 1/2]) of resonance ``k`` -> the fitted one (or back,
    ``inverse``), on the side below the peak where ``below`` (bool ``[N]``) and above elsewhere."""

    def __init__(self, slopes: torch.Tensor, dtype: torch.dtype):
        super().__init__()
        s = slopes.double()
        lb = torch.tensor(BW_KNOTS, dtype=torch.float64)
        # the fitted space's knots: the forward map at the Breit-Wigner knots
        le = torch.cumsum(s[..., :-1] * torch.diff(torch.cat([torch.zeros(1, dtype=torch.float64), lb])), dim=-1)
        inv = 1 / s
        for name, v in (("lb", lb.expand_as(le)), ("le", le), ("s0", s[..., 0]), ("ds", torch.diff(s, dim=-1)),
                        ("is0", inv[..., 0]), ("ids", torch.diff(inv, dim=-1))):
            self.register_buffer(name, v.to(dtype).clone())

    def forward(self, a: torch.Tensor, k: int, below: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        x = torch.log(2 * a)
        sides = []
        for side in (0, 1):
            if inverse:
                sides.append(_piecewise(x, self.is0[k, side], self.ids[k, side], self.le[k, side]))
            else:
                sides.append(_piecewise(x, self.s0[k, side], self.ds[k, side], self.lb[k, side]))
        return 0.5 * torch.exp(torch.where(below, sides[0], sides[1]))
