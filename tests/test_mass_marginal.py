"""process.settings.mass_sampling: marginal: the dimuon mass drawn from the training line shape of
each jet multiplicity (hepgen.coords.marginal), a condition of the network.

Statistical tolerances are stated where used. The export through ONNX Runtime and SOFIE C++ is
tested in test_export_run.py (its Bayesian run draws the mass this way).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hepgen.cards import card_from_dict
from hepgen.coords import ZJetsCoords
from hepgen.coords.marginal import MassDraw, MassMarginal
from hepgen.errors import HepgenError
from hepgen.fourvectors import fourvector, mass
from hepgen.io.root import write_events
from hepgen.pipeline import pipeline
from hepgen.runs import build_for, load_run
from hepgen.train import train
from tests.zjets_like import zjets_like

TRUTH = {  # three unlike line shapes: a wrong multiplicity row is far off in the KS distance
    1: (lambda rng, n: rng.normal(0.0, 1.0, n), lambda s: 0.5 * (1 + torch.erf(s / np.sqrt(2)))),
    2: (lambda rng, n: rng.normal(1.0, 0.5, n), lambda s: 0.5 * (1 + torch.erf((s - 1.0) / (0.5 * np.sqrt(2))))),
    3: (lambda rng, n: rng.exponential(1.0, n) - 1.0, lambda s: (1 - torch.exp(-(s + 1.0))).clamp_min(0.0)),
}


def _fitted(n_per: int, seed: int, weight: float = 1.0) -> tuple[MassMarginal, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    s = np.concatenate([TRUTH[k][0](rng, n_per) for k in (1, 2, 3)])
    n = np.repeat([1, 2, 3], n_per)
    marginal = MassMarginal(3)
    marginal.fit(torch.from_numpy(s), n, (1, 2, 3), np.full(len(s), weight))
    return marginal, s, n


def test_the_drawn_mass_follows_each_multiplicitys_line_shape():
    """50 000 events per multiplicity; the draws on a fine u grid reproduce each truth CDF within a
    KS distance of 0.012 (the sample's own KS fluctuation is about 0.006 at 95 %, the 256-knot
    interpolation adds at most 1/256), and the rows are not interchanged (between the truths the
    distance is above 0.15)."""
    marginal, _, _ = _fitted(50_000, seed=1)
    draw = MassDraw(marginal.table(seed=7))
    u = (torch.arange(20_000, dtype=torch.float64) + 0.5) / 20_000
    for k in (1, 2, 3):
        onehot = torch.zeros(len(u), 3, dtype=torch.float64)
        onehot[:, k - 1] = 1.0
        s = torch.sort(draw(u, onehot)).values
        ks = {j: float((TRUTH[j][1](s) - u).abs().max()) for j in (1, 2, 3)}
        assert ks[k] < 0.012, (k, ks)
        assert all(ks[j] > 0.1 for j in ks if j != k), (k, ks)


def test_each_bayesian_draw_carries_the_line_shapes_statistical_spread():
    """With N = 2 000 events of N(0, 1) the median of the training sample scatters by
    sqrt(pi / 2) / sqrt(N) = 0.028; over 300 posterior draws the table's median scatters by that
    within 20 % (the spread of a 300-draw std is 4 %), also when every event weighs 3 (the
    effective sample size is the same), and centres on the observed median within 4 of its
    standard errors."""
    expected = np.sqrt(np.pi / 2) / np.sqrt(2000)
    for weight in (1.0, 3.0):
        marginal, _, _ = _fitted(2000, seed=2, weight=weight)
        observed = marginal.table(seed=5)[0, 128]
        medians = np.array([marginal.table(seed=5, draw=d)[0, 128] for d in range(300)])
        assert medians.std(ddof=1) == pytest.approx(expected, rel=0.2), weight
        assert abs(medians.mean() - observed) < 4 * expected / np.sqrt(300)
        assert not np.allclose(marginal.table(seed=5, draw=0), marginal.table(seed=5, draw=1))


def test_the_mass_is_a_condition_and_its_column_is_filled():
    sample = zjets_like(2000, seed=4)
    plain = ZJetsCoords((1, 2, 3), 20.0).fit(sample)
    marg = ZJetsCoords((1, 2, 3), 20.0, mass_sampling="marginal").fit(sample)
    x_plain, c_plain = plain.encode(sample, torch.Generator().manual_seed(0))
    x, c = marg.encode(sample, torch.Generator().manual_seed(0))
    assert marg.cond_dim == 4 and c.shape == (2000, 4)
    assert torch.equal(c[:, :3], c_plain)
    assert torch.allclose(c[:, 3], x_plain[:, 2], atol=1e-12)  # the standardised log m0 of the plain chain
    # x's mass column is N(0, 1) fill, independent of the mass (|r| < 0.1: 4.5 sigma at N = 2000)
    assert abs(float(torch.corrcoef(torch.stack([x[:, 2], c[:, 3]]))[0, 1])) < 0.1
    active = marg.active_columns()
    assert active.shape == (4, 17) and not active[3].any() and not active[:, 2].any()
    assert torch.equal(active[:3, 3:], plain.active_columns()[:, 3:])
    assert marg.differentiable_observables == ()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("marginal")
    write_events(tmp / "ref.root", zjets_like(6000, seed=11))
    card = card_from_dict({
        "name": "zjm", "seed": 3, "process": {"settings": {"mass_sampling": "marginal"}},
        "data": {"path": str(tmp / "ref.root"), "split": [0.8, 0.1, 0.1]},
        "model": {"family": "cfm", "network": {"hidden": 16, "layers": 1}, "cfm": {"solver": "euler", "steps": 2}},
        "train": {"epochs": 1, "batch_size": 256, "runs_dir": str(tmp / "runs")},
    })
    return load_run(train(card, progress=False, after=False, run_dir=tmp / "run"))


def test_a_barely_trained_run_generates_the_training_line_shape(run):
    """One epoch of a 16-wide CFM cannot learn the Z peak; the drawn mass gives the generated
    events the training sample's m_mumu in each multiplicity anyway: the KS distance of 20 000
    generated events to the 4 800 training events is below 0.04 (the 95 % KS bound of the two sample
    sizes is 0.022 for the pooled sample, 0.033 for the 3-jet one)."""
    pipe = pipeline(run)
    assert pipe.noise_layout[-4:] == ["uniform"] * 4
    with torch.no_grad():
        p, n_jets, _ = pipe(pipe.draw_noise(20_000, torch.Generator().manual_seed(1)))
    p = p.double()
    q = fourvector(p[:, :2, 0], p[:, :2, 1], p[:, :2, 2], p[:, :2, 3])
    m_gen = mass(q[:, 0] + q[:, 1]).numpy()
    data = run.process.load_data(run.card, log=lambda m: None)
    train_rows = data.select(np.load(run.path / "split.npz")["train"])
    mu = train_rows.padded("Muon", 2)
    qt = fourvector(*(torch.from_numpy(mu[:, :, i]) for i in range(4)))
    m_train = mass(qt[:, 0] + qt[:, 1]).numpy()
    for k in (1, 2, 3):
        a = np.sort(m_gen[n_jets.numpy() == k])
        b = np.sort(m_train[train_rows.n_jets == k])
        grid = np.concatenate([a, b])
        ks = np.abs(np.searchsorted(a, grid, side="right") / len(a) - np.searchsorted(b, grid, side="right") / len(b)).max()
        assert ks < 0.04, (k, ks)


@pytest.mark.parametrize("settings, model, message", [
    ({"mass_sampling": "marginal", "jet_recoil": True}, {}, "jet_recoil"),
    ({"mass_sampling": "marginal"}, {"network": {"backbone": "lgatr"}}, "lgatr"),
    ({"mass_sampling": "marginal"}, {"family": "gan", "gan": {"mmd": ["m_mumu"]}}, "m_mumu"),
    ({"mass_sampling": "sideways"}, {}, "mass_sampling"),
])
def test_settings_that_cannot_serve_a_drawn_mass_are_refused_in_one_line(settings, model, message):
    process = {"settings": settings} | ({"n_jets": [1]} if settings.get("jet_recoil") else {})
    card = card_from_dict({"name": "bad", "process": process, "model": model})
    with pytest.raises(HepgenError, match=message) as err:
        build_for(card)
    assert "\n" not in str(err.value)
