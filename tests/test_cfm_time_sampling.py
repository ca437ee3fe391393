"""``model.cfm.time_sampling``: the flow times the CFM loss is trained at."""

import math

import pytest
import torch

from hepgen.cards import card_from_dict
from hepgen.errors import CardError
from hepgen.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(**cfm):
    card = card_from_dict({"model": {"family": "cfm", "network": {"hidden": 8, "layers": 1}, "cfm": cfm}})
    return build_model(card.model, 3, 1)


def test_logit_normal_times_follow_their_distribution():
    """t = sigmoid(loc + scale N(0, 1)): the quantiles of 200 000 draws match the distribution's
    (statistical sigma of a quantile <= 0.002 here; asserted 0.01), so time_loc > 0 puts the
    weight near the data end t = 1."""
    torch.manual_seed(0)
    model = _model(time_sampling="logit_normal", time_loc=1.0, time_scale=0.5)
    t = model.draw_times(torch.zeros(200_000, 3))
    assert t.shape == (200_000, 1) and (t > 0).all() and (t < 1).all()
    q = torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95])
    normal = torch.tensor([math.sqrt(2) * torch.erfinv(2 * p - 1).item() for p in q])
    assert torch.allclose(torch.quantile(t[:, 0], q), torch.sigmoid(1.0 + 0.5 * normal), atol=0.01)
    assert t.mean() > 0.65  # uniform: 0.5


def test_mixture_times_are_half_uniform_half_logit_normal():
    """The CDF of 200 000 mixture draws is the mean of the uniform and the logit-normal CDFs, at
    every point of a grid (statistical sigma <= 0.0012; asserted 0.006): neither part alone would do."""
    torch.manual_seed(1)
    t = _model(time_sampling="mixture", time_loc=1.0, time_scale=0.5).draw_times(torch.zeros(200_000, 3))[:, 0]
    grid = torch.linspace(0.05, 0.95, 19)
    logit_normal = 0.5 * (1 + torch.erf((torch.logit(grid) - 1.0) / (0.5 * math.sqrt(2))))
    empirical = (t[:, None] <= grid).float().mean(0)
    assert (empirical - 0.5 * (grid + logit_normal)).abs().max() < 0.006
    assert (empirical - grid).abs().max() > 0.1 and (empirical - logit_normal).abs().max() > 0.1


def test_uniform_times_are_the_default():
    torch.manual_seed(0)
    t = _model().draw_times(torch.zeros(200_000, 3))
    assert abs(t.mean().item() - 0.5) < 0.005 and abs((t < 0.1).float().mean().item() - 0.1) < 0.005


def test_a_bad_time_sampling_is_a_card_error():
    with pytest.raises(CardError, match="time_sampling"):
        _model(time_sampling="beta")
    with pytest.raises(CardError, match="time_scale"):
        _model(time_sampling="logit_normal", time_scale=0.0)
