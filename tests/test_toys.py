"""Bayesian CFM on the seeds' toys: the learned density matches the truth, and the Bayesian
spread grows where the training data are sparse (ramp: x2 -> 0)."""

import numpy as np
import pytest

from hepgen.cards import card_from_dict
from hepgen.runs import load_run
from hepgen.processes.toys import TOY_RAMP, TOY_RING, draw_histograms, plot_toy
from hepgen.train import train


def test_toy_data_follow_their_densities():
    x = TOY_RAMP.sample_truth(200_000, 1)
    counts, edges = np.histogram(x[:, 1], bins=10, range=(0, 1))
    expected = 200_000 * TOY_RAMP.truth_in_bins(edges) * 0.1
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))
    assert np.all((x >= 0) & (x <= 1))
    r = np.hypot(*TOY_RING.sample_truth(100_000, 1).T)
    assert abs(r.mean() - 1.0) < 0.002 and abs(r.std() - 0.1) < 0.002
    # the densities are normalised (numerically, on a grid)
    g = np.linspace(-1.5, 1.5, 601)
    xx, yy = np.meshgrid(g, g)
    pts = np.stack([xx.ravel(), yy.ravel()], 1)
    assert abs(TOY_RING.density(pts).sum() * (g[1] - g[0]) ** 2 - 1) < 0.01
    assert TOY_RAMP.sample_truth(10, 3).tolist() == TOY_RAMP.sample_truth(10, 3).tolist()


@pytest.fixture(scope="module")
def ramp_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("toy")
    card = card_from_dict({
        "name": "ramp", "seed": 1, "process": {"name": "toy_ramp"}, "simulate": {"events": 4000},
        "data": {"split": [0.8, 0.2, 0.0]},
        "model": {"network": {"hidden": 32, "layers": 2}, "cfm": {"solver": "midpoint", "steps": 4},
                  "bayes": {"enabled": True, "draws": 8, "init_log_sigma": -4.0}},
        "train": {"epochs": 30, "batch_size": 256, "lr": 3e-3, "threads": 1, "runs_dir": str(tmp)},
    })
    return load_run(train(card, progress=False, after=False, run_dir=tmp / "run"))


def test_ramp_density_and_bayesian_spread(ramp_run, tmp_path):
    edges = np.linspace(0, 1, 6)
    h = draw_histograms(ramp_run, 20_000, 8, edges)
    truth = TOY_RAMP.truth_in_bins(edges)
    ratio = h.mean / truth
    # density: 3200 training events and 30 short epochs; every 0.2-wide bin within 30 %,
    # the bulk (0.4 < x2 < 0.8) within 10 %
    assert np.all(np.abs(ratio - 1) < 0.30), ratio
    assert np.all(np.abs(ratio[2:4] - 1) < 0.10), ratio
    # uncertainty: the relative spread over posterior draws is largest where data are sparse
    rel = h.std / h.mean
    assert rel[0] > 2 * rel[3:].mean(), rel
    assert np.all(rel > 0)
    plot_toy(TOY_RAMP, h, tmp_path / "ramp.png")
    assert (tmp_path / "ramp.png").stat().st_size > 10_000
