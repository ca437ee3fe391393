"""CFM exact log-likelihood through the ODE, the transformer backbone, the adaptive solver."""

import math

import pytest
import torch

from hepgen.cards import card_from_dict
from hepgen.models import build_model


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(backbone="mlp", dim=2, cond=0, bayes=False):
    card = card_from_dict({"model": {"family": "cfm", "network": {"backbone": backbone, "hidden": 16, "layers": 1,
                                                                   "heads": 2},
                                     "bayes": {"enabled": bayes}, "cfm": {"solver": "rk4", "steps": 16}}})
    torch.manual_seed(0)
    m = build_model(card.model, dim, cond).double()
    with torch.no_grad():  # a non-trivial field: undo the near-zero output initialisation
        for name, p in m.named_parameters():
            if name.endswith("out.weight") or name.endswith("out.weight_mu"):
                p.normal_(0, 0.5)
    return m.eval()


def test_log_prob_is_normalised():
    """exp(log p) integrates to 1 over the plane (grid, 2D), for a strongly non-Gaussian flow."""
    m = _model()
    g = torch.linspace(-7, 7, 101, dtype=torch.float64)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    x = torch.stack([xx.ravel(), yy.ravel()], -1)
    lp = m.log_prob(x, x[:, :0], steps=6)
    integral = float(lp.exp().sum() * (g[1] - g[0]) ** 2)
    assert abs(integral - 1) < 0.01, integral


def test_log_prob_matches_change_of_variables_of_the_sampler():
    """log p(x1) = log N(x0) - log|det dx1/dx0| along the sampled path (autograd Jacobian, fine steps)."""
    m = _model()
    x0 = torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    sampler = m.sampler(solver="rk4", steps=32)
    c = x0[:, :0]
    x1 = sampler(x0, c).detach()
    lp = m.log_prob(x1, c, steps=32, method="rk4")
    for i in range(3):
        jac = torch.autograd.functional.jacobian(lambda z: sampler(z.unsqueeze(0), c[:1])[0], x0[i])
        ref = -0.5 * float((x0[i] ** 2).sum()) - math.log(2 * math.pi) - float(torch.slogdet(jac).logabsdet)
        assert abs(float(lp[i]) - ref) < 1e-3, (float(lp[i]), ref)  # O(h^4) solver error, 32 steps


def test_adaptive_and_hutchinson_agree_with_exact():
    m = _model()
    x = torch.randn(100, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    c = x[:, :0]
    fixed = m.log_prob(x[:10], c[:10], steps=64)
    adaptive = m.log_prob(x[:10], c[:10], method="adaptive")
    assert torch.allclose(fixed, adaptive, atol=1e-4)
    hutch = torch.stack([m.log_prob(x, c, steps=8, hutchinson=True, generator=torch.Generator().manual_seed(s))
                         for s in range(16)])
    # unbiased: the mean over estimates approaches the exact value (stated tolerance: 5 standard errors)
    err = (hutch.mean(0) - m.log_prob(x, c, steps=8)).abs()
    se = hutch.std(0) / 4 + 1e-9
    assert (err < 5 * se + 1e-6).float().mean() > 0.97


@pytest.mark.parametrize("bayes", [False, True])
def test_transformer_backbone(bayes):
    m = _model("transformer", dim=5, cond=3, bayes=bayes).float().train()
    x, c = torch.randn(32, 5), torch.eye(3)[torch.randint(0, 3, (32,))]
    loss = m.loss(x, c)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    m.eval()
    noise = torch.randn(7, 5)
    a, b = m.sample(noise, c[:7]), m.sample(noise, c[:7])
    assert a.shape == (7, 5) and torch.equal(a, b)
    # the condition reaches the output
    assert not torch.allclose(m.sample(noise, torch.eye(3)[[0] * 7]), m.sample(noise, torch.eye(3)[[2] * 7]))
