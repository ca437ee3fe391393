"""Kernels and the unbiased squared maximum mean discrepancy (MMD²) between two samples.

For samples a ``[N, F]`` (or ``[N]``) and b ``[M, F]`` and a kernel k,

    MMD²_u = 1/(N(N-1)) sum_{i != j} k(a_i, a_j) + 1/(M(M-1)) sum_{i != j} k(b_i, b_j)
             - 2/(N M) sum_{i, j} k(a_i, b_j)

(Gretton et al. 2012, eq. 3): its expectation is the population MMD², 0 exactly when the two
distributions agree, so a single estimate may be slightly negative. Kernels of the distance
r = |a - b| and a width w (in the units of the samples; several widths = the sum of the kernels):

* ``gaussian``:     k = exp(-r² / (2 w²))
* ``breit_wigner``: k = w² / (r² + w²), a Cauchy (Breit-Wigner) shape of half width at half
  maximum w, whose heavy tails keep a gradient for values far from a narrow resonance (the
  seed talk's MMD term on the GAN's resonance masses).

Both are 1 at r = 0 and positive definite. Differentiable; runs in the dtype of its inputs.
"""

from __future__ import annotations

from typing import Sequence

import torch

KERNELS = ("gaussian", "breit_wigner")


def kernel(r2: torch.Tensor, kind: str, widths: Sequence[float]) -> torch.Tensor:
    """Sum over ``widths`` of the kernel ``kind`` at squared distances ``r2`` (any shape)."""
    if kind not in KERNELS:
        raise ValueError(f"unknown MMD kernel {kind!r}; choose from {', '.join(KERNELS)}")
    total = torch.zeros_like(r2)
    for w in widths:
        w2 = float(w) ** 2
        total = total + (torch.exp(-r2 / (2 * w2)) if kind == "gaussian" else w2 / (r2 + w2))
    return total


def _sq_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[N, M]`` squared Euclidean distances of the rows of a ``[N, F]`` and b ``[M, F]``: exact
    differences for F = 1; for F > 1 |a|² + |b|² - 2 a.b after centring (no ``[N, M, F]`` array)."""
    if a.shape[-1] == 1:
        return (a - b.T) ** 2
    mid = a.mean(0, keepdim=True).detach()
    a, b = a - mid, b - mid
    r2 = (a * a).sum(-1, keepdim=True) + (b * b).sum(-1) - 2 * a @ b.T
    return r2.clamp_min(0)


def mmd2(a: torch.Tensor, b: torch.Tensor, kind: str = "gaussian", widths: Sequence[float] = (1.0,)) -> torch.Tensor:
    """Unbiased MMD² (scalar) between a ``[N]`` / ``[N, F]`` and b ``[M]`` / ``[M, F]``, N, M >= 2."""
    a = a.unsqueeze(-1) if a.ndim == 1 else a
    b = b.unsqueeze(-1) if b.ndim == 1 else b
    n, m = a.shape[0], b.shape[0]
    if n < 2 or m < 2:
        raise ValueError("the unbiased MMD² needs at least two events in each sample")
    k_aa = kernel(_sq_dist(a, a), kind, widths)
    k_bb = kernel(_sq_dist(b, b), kind, widths)
    k_ab = kernel(_sq_dist(a, b), kind, widths)
    diag_a = k_aa.diagonal().sum()  # k(x, x): len(widths) each, but computed, so any kernel works
    diag_b = k_bb.diagonal().sum()
    return ((k_aa.sum() - diag_a) / (n * (n - 1)) + (k_bb.sum() - diag_b) / (m * (m - 1))
            - 2 * k_ab.mean())
