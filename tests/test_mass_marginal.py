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
from hepgen.coords.marginal import FINE, MassDraw, MassMarginal
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


def _fitted(n_per: int, seed: int, weight: float = 1.0, fine: int = FINE) -> tuple[MassMarginal, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    s = np.concatenate([TRUTH[k][0](rng, n_per) for k in (1, 2, 3)])
    n = np.repeat([1, 2, 3], n_per)
    marginal = MassMarginal(3, fine)
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


def _median(marginal: MassMarginal, draw: int | None = None) -> float:
    return float(marginal.table(seed=5, draw=draw)[0, 128])


def test_each_bayesian_draw_carries_the_line_shapes_statistical_spread():
    """The posterior draws of the (smoothed) line shape scatter as the fitted line shape itself
    does from one training sample to the next. N = 2 000 events of N(0, 1): the median of the
    fitted table over 200 independent samples has a standard deviation s_f (about 0.025, between
    the sample median's sqrt(pi / 2) / sqrt(N) = 0.028 and a Gaussian fit's 1 / sqrt(N)); over
    300 posterior draws from one sample the median scatters by s_f within 25 % (the two standard
    deviations are known to 5 % and 4 %), also when every event weighs 3 (the effective sample
    size is the same), and centres on the fitted median within 4 of its standard errors. 512
    equal-count bins (4 events each) instead of 4096 keep its 5 000 spline fits quick."""
    rng = np.random.default_rng(21)
    fitted = []
    for _ in range(200):
        one = MassMarginal(1, fine=512)
        one.fit(torch.from_numpy(rng.normal(0.0, 1.0, 2000)), np.ones(2000, dtype=int), (1,), np.ones(2000))
        fitted.append(_median(one))
    spread = np.std(fitted, ddof=1)
    assert 0.8 / np.sqrt(2000) < spread < 1.1 * np.sqrt(np.pi / 2 / 2000)
    for weight in (1.0, 3.0):
        marginal, _, _ = _fitted(2000, seed=2, weight=weight, fine=512)
        observed = _median(marginal)
        medians = np.array([_median(marginal, d) for d in range(300)])
        assert medians.std(ddof=1) == pytest.approx(spread, rel=0.25), weight
        assert abs(medians.mean() - observed) < 4 * spread / np.sqrt(300)
        assert not np.allclose(marginal.table(seed=5, draw=0), marginal.table(seed=5, draw=1))


def _truth_mass(rng, n: int) -> np.ndarray:
    """A Z-like line shape with a closed-form CDF (:func:`_truth_cdf`): 95 % a Breit-Wigner in m^2
    (91.19, 2.5 GeV), 5 % a continuum exp(-m / 20 GeV), both on [60, 150] GeV."""
    bw = _bw_angle(np.array([60.0, 150.0]))
    m_bw = np.sqrt(91.19**2 + 91.19 * 2.5 * np.tan(rng.uniform(bw[0], bw[1], n)))
    ex = np.exp(-np.array([60.0, 150.0]) / 20)
    m_ex = -20 * np.log(rng.uniform(ex[1], ex[0], n))
    return np.where(rng.uniform(size=n) < 0.95, m_bw, m_ex)


def _bw_angle(m):
    return np.arctan((m**2 - 91.19**2) / (91.19 * 2.5))


def _truth_cdf(m):
    bw, ex = _bw_angle(np.array([60.0, 150.0])), np.exp(-np.array([60.0, 150.0]) / 20)
    return 0.95 * (_bw_angle(m) - bw[0]) / (bw[1] - bw[0]) + 0.05 * (ex[0] - np.exp(-m / 20)) / (ex[0] - ex[1])


def test_the_smoothed_line_shape_is_closer_to_the_truth_than_the_training_histogram():
    """The line shape a generator draws from, against a known truth, in 20 bins between the truth's
    5 % and 95 % quantiles: chi2 = N sum (p_fit - p)^2 / p over 10 training samples of N = 20 000
    events. The training histogram itself (smoothing off) scores about 19 (its statistical
    fluctuation; measured 19.6); the Breit-Wigner-flattened spline about its number of knots
    (6 to 16 chosen; measured 7.9). The smoothed mean must be below 0.6 of the histogram's (the
    two means are known to about 10 % and 15 %): smoothing that adds bias, or does nothing, fails."""
    grid = np.linspace(60.0, 150.0, 200001)
    edges = np.interp(np.linspace(0.05, 0.95, 21), _truth_cdf(grid), grid)
    p = np.diff(_truth_cdf(edges))
    rng = np.random.default_rng(8)
    levels = np.linspace(0.0, 1.0, 257)
    chi2 = {"histogram": [], "smoothed": []}
    for _ in range(10):
        m = _truth_mass(rng, 20_000)
        marginal = MassMarginal(1)
        marginal.fit(torch.from_numpy(np.log(m)), np.ones(len(m), dtype=int), (1,), np.ones(len(m)), torch.from_numpy(m))
        assert np.isfinite(marginal.knots[0]).sum() >= 3  # the smoothing is on
        for name in ("smoothed", "histogram"):
            if name == "histogram":
                marginal.knots.fill_(float("nan"))
            cdf = np.interp(np.log(edges), marginal.table(seed=1)[0], levels)
            chi2[name].append(len(m) * np.sum((np.diff(cdf) - p) ** 2 / p))
    assert np.mean(chi2["smoothed"]) < 0.6 * np.mean(chi2["histogram"]), chi2


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
    """One epoch of a 16-wide CFM cannot learn the Z peak; the drawn mass gives the generated events the training sample's (smoothed) m_mumu
    in each multiplicity anyway: the KS distance of the 20 000 generated events to the 4 800
    training events is within the 95 % two-sample bound 1.36 sqrt(1/n + 1/m) of their counts
    (0.028 / 0.039 / 0.065 for 1 / 2 / 3 jets; the smoothed line shape is not the training
    histogram, so that sample's own fluctuation counts) plus the 1/256 of the table's interpolation."""
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
        assert ks < 1.36 * np.sqrt(1 / len(a) + 1 / len(b)) + 1 / 256, (k, ks, len(a), len(b))


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


def test_a_line_shape_fitted_before_the_smoothing_loads_and_stays_a_histogram():
    """A run saved before the smoothing has no ``flat_edges`` or ``knots`` in its coordinates: it
    loads, and its table is the histogram's (the inverse CDF through the saved equal-count edges),
    not a smoothed one."""
    marginal, _, _ = _fitted(5000, seed=3)
    old = {k: v for k, v in marginal.state_dict().items() if k in ("edges", "counts")}
    loaded = MassMarginal(3)
    loaded.load_state_dict(old)
    assert torch.isnan(loaded.knots).all()
    histogram = MassMarginal(3)
    histogram.load_state_dict(marginal.state_dict())
    histogram.knots.fill_(float("nan"))
    assert np.array_equal(loaded.table(seed=1), histogram.table(seed=1))
    assert not np.allclose(loaded.table(seed=1), marginal.table(seed=1))
