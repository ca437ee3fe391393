"""CFM with frozen absent columns (``model.cfm.absent: frozen``, the Z+jets default).

Columns of objects an event does not have (jet 2 and 3 of a 1-jet event) carry N(0, 1) fill; the
frozen CFM neither reads nor moves them, so they leave the sampler as the noise that went in and
the density stays a proper one in all D columns.
"""

import math

import pytest
import torch

from hepgen.cards import card_from_dict
from hepgen.models import build_model
from hepgen.runs import build_for

ACTIVE = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)  # condition 0: 3 columns


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(frozen=True):
    card = card_from_dict({"model": {"family": "cfm", "network": {"hidden": 16, "layers": 1},
                                     "cfm": {"solver": "rk4", "steps": 8}}})
    torch.manual_seed(0)
    m = build_model(card.model, 5, 2).double()
    with torch.no_grad():  # a non-trivial field (the output layer starts near zero)
        for name, p in m.named_parameters():
            if name.endswith("out.weight"):
                p.normal_(0, 0.5)
    if frozen:
        m.set_active_columns(ACTIVE)
    return m.eval()


def _cond(n, k):
    c = torch.zeros(n, 2, dtype=torch.float64)
    c[:, k] = 1
    return c


def test_absent_columns_pass_through_and_do_not_influence_present_ones():
    m = _model()
    g = torch.Generator().manual_seed(1)
    z = torch.randn(32, 5, generator=g, dtype=torch.float64)
    x = m.sample(z, _cond(32, 0))
    assert torch.equal(x[:, 3:], z[:, 3:])  # exactly the noise that went in
    z2 = z.clone()
    z2[:, 3:] = torch.randn(32, 2, generator=g, dtype=torch.float64) * 5
    assert torch.equal(m.sample(z2, _cond(32, 0))[:, :3], x[:, :3])
    # under the full condition every column moves and depends on every other one
    y = m.sample(z, _cond(32, 1))
    assert (y[:, 3:] - z[:, 3:]).abs().max() > 1e-3
    assert (m.sample(z2, _cond(32, 1))[:, :3] - y[:, :3]).abs().max() > 1e-3


def test_absent_columns_are_unit_gaussians_in_the_density():
    """log p(x | c) = log p(present) + log N(absent): changing the absent columns changes log p
    by exactly the Gaussian difference (the field has zero divergence there)."""
    m = _model()
    x = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    x2 = x.clone()
    x2[:, 3:] = x2[:, 3:] * 0.3 + 1.0
    c = _cond(6, 0)
    d = m.log_prob(x2, c, steps=8) - m.log_prob(x, c, steps=8)
    expect = -0.5 * (x2[:, 3:] ** 2).sum(-1) + 0.5 * (x[:, 3:] ** 2).sum(-1)
    assert torch.allclose(d, expect, atol=1e-10)


@torch.no_grad()
def test_loss_ignores_absent_data_and_learns_every_column_otherwise():
    m = _model()
    x = torch.randn(64, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    c = _cond(64, 0)
    garbage = x.clone()
    garbage[:, 3:] = 1e3
    torch.manual_seed(7)
    a = m.loss(x, c)
    torch.manual_seed(7)
    b = m.loss(garbage, c)
    assert float(a) == float(b)
    # without the mask the absent data enter the loss
    learned = _model(frozen=False)
    torch.manual_seed(7)
    a = learned.loss(x, c)
    torch.manual_seed(7)
    assert float(learned.loss(garbage, c)) > 100 * float(a)


def test_zjets_runs_freeze_absent_jets_unless_the_card_says_learned(tmp_path):
    base = {"process": {"name": "zjets"}, "model": {"family": "cfm", "network": {"hidden": 16, "layers": 1}}}
    coords, model = build_for(card_from_dict(base))
    active = model.field.active.bool()
    assert torch.equal(active, coords.active_columns())
    # 1 jet: muons (5 columns) + jet 1 (4); 3 jets: all 17
    assert active.sum(-1).tolist() == [9, 13, 17]
    learned = {**base, "model": {**base["model"], "cfm": {"absent": "learned"}}}
    _, model = build_for(card_from_dict(learned))
    assert bool(model.field.active.all())


@torch.no_grad()
def test_checkpoints_without_the_mask_load_as_learned():
    """Runs trained before the option keep their behaviour (every column learned)."""
    m = _model()
    state = {k: v for k, v in m.state_dict().items() if not k.endswith("field.active")}
    fresh = _model(frozen=False)
    fresh.field.active.zero_()
    fresh.load_state_dict(state)
    assert bool(fresh.field.active.all()) and not fresh.field.frozen
    # and a frozen checkpoint loads frozen into a freshly built (unfrozen) model
    again = _model(frozen=False)
    again.load_state_dict(m.state_dict())
    assert again.field.frozen
    z = torch.randn(8, 5, dtype=torch.float64)
    assert torch.equal(again.sample(z, _cond(8, 0)), m.sample(z, _cond(8, 0)))
    assert math.isfinite(float(fresh.loss(torch.zeros(4, 5, dtype=torch.float64), _cond(4, 0))))
