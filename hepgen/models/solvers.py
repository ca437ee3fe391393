"""Fixed-step ODE solvers, shared by torch sampling and ONNX export.

``integrate(f, x, t0, t1, steps, method)`` advances dx/dt = f(x, t) with ``steps`` equal steps;
the loop is plain Python, so tracing unrolls it into a fixed graph (SOFIE rejects ``Loop``).
``t`` is passed to ``f`` as a ``[N, 1]`` tensor. ``adaptive`` is a reference solver (scipy
RK45 with tight tolerances), for measuring the fixed-step error; it is not exportable.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

METHODS = ("euler", "midpoint", "rk4")
EVALS_PER_STEP = {"euler": 1, "midpoint": 2, "rk4": 4}


def _time(x: torch.Tensor, t: float) -> torch.Tensor:
    return torch.full_like(x[:, :1], t)


def integrate(f: Field, x: torch.Tensor, t0: float, t1: float, steps: int, method: str = "rk4") -> torch.Tensor:
    """x(t1) from x(t0) = x with ``steps`` fixed steps of ``method`` (euler | midpoint | rk4)."""
    if method not in METHODS:
        raise ValueError(f"unknown solver {method!r}; choose from {', '.join(METHODS)}")
    h = (t1 - t0) / steps
    for i in range(steps):
        t = t0 + i * h
        if method == "euler":
            x = x + h * f(x, _time(x, t))
        elif method == "midpoint":
            k1 = f(x, _time(x, t))
            x = x + h * f(x + 0.5 * h * k1, _time(x, t + 0.5 * h))
        else:
            k1 = f(x, _time(x, t))
            k2 = f(x + 0.5 * h * k1, _time(x, t + 0.5 * h))
            k3 = f(x + 0.5 * h * k2, _time(x, t + 0.5 * h))
            k4 = f(x + h * k3, _time(x, t + h))
            x = x + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


@torch.no_grad()
def adaptive(f: Field, x: torch.Tensor, t0: float, t1: float, rtol: float = 1e-7, atol: float = 1e-9) -> torch.Tensor:
    """Reference solution with scipy's adaptive RK45 (float64, not exportable)."""
    from scipy.integrate import solve_ivp

    shape, dtype = x.shape, x.dtype

    def rhs(t, y):
        xt = torch.from_numpy(y.reshape(shape)).to(dtype)
        return f(xt, _time(xt, float(t))).double().numpy().ravel()

    sol = solve_ivp(rhs, (t0, t1), x.double().numpy().ravel(), method="RK45", rtol=rtol, atol=atol)
    return torch.from_numpy(np.asarray(sol.y[:, -1]).reshape(shape)).to(dtype)
