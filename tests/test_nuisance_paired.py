"""``train.nuisance_paired`` (:mod:`hepgen.nuisance`, ``CFM.paired_loss``): each batch event regressed
at nu = 0 and at its drawn nu with the same random numbers, the varied term's nominal part taken by
a control variate.

Exact statements are checked without training (the loss with no variation is the flow-matching
loss; the batch's arguments); the control variate's noise cut is a measured spread over repeated
batches with a stated margin. That the trained network follows the weight is
tests/test_nuisance.py::test_paired_training_follows_the_weight_on_a_toy_at_both_edges_and_inside.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from hepgen.cards import card_from_dict, dump_card
from hepgen.errors import CardError
from hepgen.models import build_model
from hepgen.models.cfm import CFM
from hepgen.nuisance import TrainingConditions, encode, weight
from hepgen.runs import build_for

pytestmark = pytest.mark.usefixtures("one_thread")
DIM, COND = 4, 3
NUISANCE = {"name": "a", "kind": "parametric", "observable": "pt_j1", "center": 15.0, "scale": 100.0,
            "range": [-0.5, 1.0], "prior": "ends"}


def _card(family: str = "cfm", nuisance=(NUISANCE,), **train):
    return card_from_dict({"name": "paired", "model": {"family": family, "network": {"hidden": 32, "layers": 2},
                                                        "nuisance": list(nuisance)},
                           "train": {"nuisance_paired": True, **train}})


def _cfm(seed: int = 0, masked: bool = False) -> CFM:
    card = _card()
    torch.manual_seed(seed)
    model = CFM(DIM, COND + 2, card.model)  # [one-hot | the ends' two side columns]
    if masked:  # the Z+jets layout: condition k learns the first k + 2 columns
        active = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.float32)
        model.set_active_columns(torch.cat([active, torch.zeros(2, DIM)]))
    return model


def _batch(n: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, DIM, generator=gen) * 0.7 + 0.3
    onehot = torch.nn.functional.one_hot(torch.randint(0, COND, (n,), generator=gen), COND).float()
    zeros = torch.zeros(n, 2)
    varied = torch.cat([onehot, torch.tensor([[1.0, 0.0]]).expand(n, -1)], -1)  # a = +1, the upper end
    return x, torch.cat([onehot, zeros], -1), varied, gen


@pytest.mark.parametrize("masked", [False, True])
def test_without_a_variation_the_paired_loss_is_the_flow_matching_loss(masked):
    """With the varied condition equal to the nominal one and w = 1 the varied term is exactly 0 and
    the paired loss is the family's loss with the same random numbers (x0, t), masked columns and
    file weights included; so its scale is the nominal loss's."""
    model = _cfm(masked=masked)
    x, c, _, gen = _batch(300, 1)
    w_file = torch.rand(300, generator=gen) * 2
    for w in (None, w_file):
        torch.manual_seed(9)
        paired = model.paired_loss(x, c, c, torch.ones(300), w)
        torch.manual_seed(9)
        plain = model.loss(x, c) if w is None else model.loss(x, c, w)
        torch.testing.assert_close(paired, plain, rtol=1e-5, atol=1e-6)


def test_the_control_variate_cuts_the_varied_terms_gradient_noise_to_the_weights_spread():
    """The varied term's parameter gradient (paired loss minus the plain loss at c, same random numbers)
    against the plain weighted regression at nu, w |v(x_t, nu) - u|^2 (what weighted training
    learns nu from), over 200 batches of 256 with mild weights w = 1 + 0.1 tanh(x_0): the spread of
    its projection on a fixed direction falls below 0.3 of the plain one's (measured ~0.1, the
    weights' spread; the plain term carries the whole regression noise of |x - x0|^2). Without the
    control variate (w |d|^2 + 2 w sg(v0 - u) . d) the two spreads are equal."""
    model = _cfm(seed=2, masked=True)
    params = [p for p in model.parameters() if p.requires_grad]
    direction = [torch.randn(p.shape, generator=torch.Generator().manual_seed(5)) for p in params]

    def projected(loss):
        grads = torch.autograd.grad(loss, params)
        return float(sum((g * d).sum() for g, d in zip(grads, direction)))

    paired, plain = [], []
    for b in range(200):
        x, c, varied, _ = _batch(256, 100 + b)
        w = 1 + 0.1 * torch.tanh(x[:, 0])
        torch.manual_seed(b)
        full = projected(model.paired_loss(x, c, varied, w))
        torch.manual_seed(b)
        nominal = projected(model.loss(x, c))  # the nominal term alone (the first test)
        paired.append(full - nominal)
        torch.manual_seed(b)
        plain.append(projected(model.loss(x, varied, w)))
    ratio = np.std(paired) / np.std(plain)
    assert 0 < ratio < 0.3, ratio


def test_paired_batches_hold_each_event_at_nu_0_and_at_its_drawn_nu():
    """TrainingConditions with train.nuisance_paired: the loss arguments are (x, [c | 0], w_file,
    [c | encode(nu)], w(x; nu)) for the batch's rows, nu drawn from the prior (ends: -0.5, 0, 1) with
    the torch RNG as the weighted mode draws it; with bootstrap counts the file weight becomes
    [B, K] (counts times w_file) and the nuisance weight stays [B]."""
    card = _card()
    n = 60
    slopes = np.random.default_rng(2).uniform(0, 2, (n, 1, 2))
    x, c = torch.arange(float(n))[:, None], torch.nn.functional.one_hot(torch.arange(n) % 3, 3).float()
    w_file = torch.linspace(0.5, 2.0, n)
    idx = torch.tensor([4, 9, 9, 33, 59, 0, 17])
    torch.manual_seed(5)
    xb, c0, wf, c1, wn = TrainingConditions(card, slopes, "cpu").batch(x, c, w_file, idx)
    torch.manual_seed(5)
    weighted = TrainingConditions(_card(nuisance_paired=False), slopes, "cpu").batch(x, c, w_file, idx)
    assert torch.equal(xb, x[idx]) and torch.equal(wf, w_file[idx])
    assert torch.equal(c0, torch.cat([c[idx], torch.zeros(len(idx), 2)], -1))
    assert torch.equal(c1, weighted[1])  # the same nu draw as the weighted mode's
    sides = c1[:, 3:]
    nu = (sides[:, 0] * 1.0 - sides[:, 1] * 0.5).double()[:, None]
    assert set(nu[:, 0].tolist()) <= {-0.5, 0.0, 1.0}
    assert torch.equal(c1, torch.cat([c[idx], encode(card.model.nuisance, nu).float()], -1))
    torch.testing.assert_close(wn, weight(torch.from_numpy(slopes[idx.numpy()]).float(), nu.float()))
    counts = torch.from_numpy(np.random.default_rng(3).poisson(1.0, (n, 2))).float()
    torch.manual_seed(5)
    *_, wf_k, _, wn_k = TrainingConditions(card, slopes, "cpu", counts=counts).batch(x, c, w_file, idx)
    torch.testing.assert_close(wf_k, w_file[idx, None] * counts[idx])
    assert torch.equal(wn_k, wn)


def test_an_ensembles_paired_loss_gives_member_k_its_weight_column():
    """model.ensemble with train.nuisance_paired: the loss is the members' mean of their own paired
    losses, member k with column k of a [B, K] weight (bootstrap counts; no repulsion here, which adds
    its term as in the plain loss)."""
    card = card_from_dict({**yaml.safe_load(dump_card(_card())),
                           "model": {**yaml.safe_load(dump_card(_card()))["model"], "ensemble": {"members": 2, "repulsion": 0.0}}})
    torch.manual_seed(0)
    ens = build_model(card.model, DIM, COND + 2)
    x, c, varied, gen = _batch(200, 3)
    w = 1 + 0.2 * torch.tanh(x[:, 1])
    counts = torch.randint(0, 3, (200, 2), generator=gen).float()
    torch.manual_seed(4)
    total = ens.paired_loss(x, c, varied, w, counts)
    torch.manual_seed(4)
    each = [m.paired_loss(x, c, varied, w, counts[:, k]) for k, m in enumerate(ens.members)]
    torch.testing.assert_close(total, torch.stack(each).mean())


@pytest.mark.parametrize("card, words", [
    (dict(nuisance=()), "needs model.nuisance"),
    (dict(nuisance_resample=True), "train.nuisance_resample false"),
    (dict(family="inn"), "the inn loss has no paired form"),
])
def test_paired_training_it_cannot_do_is_a_card_error(card, words):
    with pytest.raises(CardError, match=words):
        build_for(_card(**card))
