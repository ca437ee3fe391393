"""hepgen.latent_weight: the DCTR weight learned as a function of the latent noise, and the fresh
latents a refined run trains on with ``refine.latents``.

A known weight w(z, c) = exp(b_c z_0) / E[exp(b_c z_0)] (b_c = 0.3 for the first condition, -0.2
for the second) tilts N(0, 1): under it z_0 has mean b_c. The regression sees 40 000 latents and
their exact weights; the fresh latents it weights must carry that tilt for each condition. The
Monte Carlo error of a weighted mean over 200 000 fresh rows is about 0.0025; the tolerance 0.02
also covers the regression's own error (measured R^2 0.99+).
"""

from __future__ import annotations

import pytest
import torch

from hepgen import latent_weight

pytestmark = pytest.mark.usefixtures("one_thread")
SLOPES = (0.3, -0.2)


def _weighted(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 3, generator=g)
    k = torch.randint(2, (n,), generator=g)
    c = torch.nn.functional.one_hot(k, 2).float()
    b = torch.tensor(SLOPES)[k]
    return z, c, torch.exp(b * z[:, 0] - b**2 / 2)  # E[exp(b z)] = exp(b^2 / 2): mean 1 per condition


def test_the_regression_learns_a_smooth_latent_weight_and_fresh_latents_carry_its_tilt():
    z, c, w = _weighted(40000, 1)
    zv, cv, wv = _weighted(5000, 2)
    model, r2 = latent_weight.fit(z, c, w, zv, cv, wv, seed=3, log=lambda _: None)
    assert r2 > 0.95, r2
    zt, ct, wt = _weighted(20000, 4)
    with torch.no_grad():
        assert latent_weight.r_squared(model(zt, ct), wt) > 0.95
    zf, cf, wf = latent_weight.fresh_rows(model, c, 200000, seed=5)
    assert zf.shape == (200000, 3) and torch.all(wf >= 0)
    assert abs(float(zf.std()) - 1) < 0.01  # the fresh latents are N(0, 1) draws
    for k, b in enumerate(SLOPES):
        rows = cf[:, k] == 1
        assert abs(float(rows.float().mean()) - float(c[:, k].mean())) < 0.01  # conditions drawn from the pool
        mean = float((wf[rows] * zf[rows, 0]).sum() / wf[rows].sum())
        assert abs(mean - b) < 0.02, (k, mean, b)
        assert abs(float((wf[rows] * zf[rows, 1]).sum() / wf[rows].sum())) < 0.02  # no tilt where w is flat


def test_fresh_rows_are_a_function_of_the_seed():
    z, c, w = _weighted(2000, 1)
    model, _ = latent_weight.fit(z, c, w, z[:500], c[:500], w[:500], seed=3, log=lambda _: None)
    a, b = latent_weight.fresh_rows(model, c, 1000, seed=7), latent_weight.fresh_rows(model, c, 1000, seed=7)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], latent_weight.fresh_rows(model, c, 1000, seed=8)[0])
