"""hepgen.fourvectors.boost_from_rest against the defining properties of a Lorentz boost."""

import torch

from hepgen.fourvectors import boost_from_rest


def dot(a, b):
    """E_a E_b - p_a . p_b of (E, px, py, pz) vectors."""
    return a[..., 0] * b[..., 0] - (a[..., 1:] * b[..., 1:]).sum(-1)


def _random_parent(n, gen):
    m = 10 + 90 * torch.rand(n, generator=gen, dtype=torch.float64)
    p3 = 500 * torch.randn(n, 3, generator=gen, dtype=torch.float64)
    return torch.cat([torch.sqrt(m[:, None] ** 2 + (p3**2).sum(-1, keepdim=True)), p3], -1), m


def test_the_parent_at_rest_boosts_to_the_parent():
    gen = torch.Generator().manual_seed(1)
    p, m = _random_parent(1000, gen)
    rest = torch.zeros_like(p)
    rest[:, 0] = m
    assert torch.allclose(boost_from_rest(rest, p, m), p, rtol=1e-12, atol=1e-9)


def test_the_boost_keeps_invariants_and_composes_back_to_rest():
    """Masses and products of boosted vectors are unchanged, and boosting by the reversed parent
    (E, -p) undoes the boost (the inverse of a pure boost)."""
    gen = torch.Generator().manual_seed(2)
    p, m = _random_parent(1000, gen)
    q1, q2 = (torch.cat([50 + 10 * torch.rand(1000, 1, generator=gen, dtype=torch.float64),
                         10 * torch.randn(1000, 3, generator=gen, dtype=torch.float64)], -1) for _ in range(2))
    b1, b2 = boost_from_rest(q1, p, m), boost_from_rest(q2, p, m)
    assert torch.allclose(dot(b1, b2), dot(q1, q2), rtol=1e-9)
    back = torch.cat([p[:, :1], -p[:, 1:]], -1)
    assert torch.allclose(boost_from_rest(b1, back, m), q1, rtol=1e-10, atol=1e-8)
