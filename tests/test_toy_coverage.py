"""The Bayesian CFM's band covers the exact truth of both toys, the ring and the ramp, over 3 training seeds.

Setup = the shipped ``cards/toy_ring.yaml`` (16k training events, 64x2 network, kl_scale 0.1, 40
epochs, 1 thread) and ``cards/toy_ramp.yaml`` (the same network and training, kl_scale 4) for seeds
1-3 (the benchmark below runs 5; 3 keep CI's time); K = 20 posterior draws of 30k events each, all
with the same noise; the toy's observable in 12 bins (``ToyProcess.coverage_edges``: the ring's
radius on [0.7, 1.3], the ramp's x2 on [0, 1]; exact truth); pulls from
:func:`hepgen.validate.coverage.pulls` with the band and one draw's Poisson error (shared noise).
``benchmarks/toy_coverage_seeds.py`` runs the same (docs/validation.md, "Coverage across seeds").

Tolerances. A calibrated band read with K = 20 draws gives pulls ~ Student t(19): pull width
(RMS) 1.06, coverage 0.68. One seed has 12 correlated bins, so its width scatters by about
+-0.2 (1/sqrt(2 x 12) relative, more with correlations): asserting 0.8-1.2 per seed would fail
about a third of calibrated trainings on another machine's numerics, so per seed the test asks
0.7-1.35 and pooled over the 36 bins of the 3 seeds (scatter ~0.12) 0.8-1.2, coverage 0.55-0.85
(binomial 1 sigma 0.08 over 36 bins, wider for correlated bins). Measured with the benchmark,
which computes exactly this (same cards, seeds, noise seeds; torch 2.13 CPU, 1 thread):

* ring: widths 1.04, 0.93, 1.19, 0.98, 0.99 for seeds 1-5, pooled 1.03, coverage 0.70; band / one
  draw's noise 5.7-8.0 (median per seed); the same pulls with the band halved: pooled width 1.95
  (asserted > 1.5); relative band in the outermost bins / at the peak 3.3-4.6 (asserted > 2: the
  band grows where data are sparse);
* ramp: widths 1.10, 0.79, 1.20, 0.95, 1.18 for seeds 1-5, pooled 1.06, coverage 0.72 (seeds 1-3:
  1.05, 0.69); band / noise 3.4-4.7; the band halved: pooled width 1.96 over seeds 1-3; the
  relative band in the two lowest x2 bins (2.8 % of the events) / in bins 6-8 (x2 0.5-0.75):
  2.9-4.1 (asserted > 2). The model's own error sits at the edges (the top bin, where the density
  drops from 2 to 0, is 14-28 % low), which the band has to cover: at kl_scale 1 it is too narrow.
"""

from pathlib import Path

import numpy as np
import pytest

from hepgen.cards import load_card
from hepgen.processes.toys import TOY_RAMP, TOY_RING, draw_histograms
from hepgen.runs import load_run
from hepgen.train import train
from hepgen.validate.coverage import pulls, summarise_pulls

CARDS = Path(__file__).resolve().parents[1] / "cards"
SEEDS, DRAWS, EVENTS = (1, 2, 3), 20, 30_000

pytestmark = pytest.mark.usefixtures("one_thread")


def _seed_histograms(toy, tmp) -> dict:
    out = {}
    for seed in SEEDS:
        card = load_card(CARDS / f"{toy.name}.yaml", [f"seed={seed}", "train.threads=1", f"train.runs_dir={tmp}"])
        run = load_run(train(card, progress=False, after=False, run_dir=tmp / f"seed{seed}"))
        out[seed] = draw_histograms(run, EVENTS, DRAWS, toy.coverage_edges(), seed=seed + 1000)
    return out


@pytest.fixture(scope="module")
def ring(tmp_path_factory):
    return _seed_histograms(TOY_RING, tmp_path_factory.mktemp("ring"))


@pytest.fixture(scope="module")
def ramp(tmp_path_factory):
    return _seed_histograms(TOY_RAMP, tmp_path_factory.mktemp("ramp"))


def _pulls(toy, h, band_scale=1.0):
    edges = toy.coverage_edges()
    truth = toy.truth_in_bins(edges)
    stat = np.sqrt(h.mean / (EVENTS * np.diff(edges)))  # shared noise: one draw's Poisson error
    return pulls(h.mean, band_scale * h.std, truth, stat, np.zeros_like(truth)), stat


def _check_coverage(toy, histograms):
    per_seed, all_pulls = {}, []
    for seed, h in histograms.items():
        p, stat = _pulls(toy, h)
        assert np.median(h.std / stat) > 2.5, "the band should dominate the sample noise"
        per_seed[seed] = summarise_pulls(p)["pull_width"]
        all_pulls.append(p)
    pooled = summarise_pulls(np.concatenate(all_pulls))
    print(f"{toy.name}: pull widths per seed {per_seed}, pooled {pooled}")
    assert all(0.7 <= w <= 1.35 for w in per_seed.values()), per_seed
    assert 0.8 <= pooled["pull_width"] <= 1.2 and 0.55 <= pooled["coverage"] <= 0.85, (pooled, per_seed)
    halved = summarise_pulls(np.concatenate([_pulls(toy, h, 0.5)[0] for h in histograms.values()]))
    assert halved["pull_width"] > 1.5, halved


def test_bayesian_band_covers_the_ring_over_three_seeds(ring):
    _check_coverage(TOY_RING, ring)


def test_bayesian_band_covers_the_ramp_over_three_seeds(ramp):
    _check_coverage(TOY_RAMP, ramp)


def test_ring_band_grows_where_data_are_sparse(ring):
    # relative width in the outermost bins (truth density ~0.1 of the peak) > 2x that at the peak
    for seed, h in ring.items():
        rel = h.std / h.mean
        assert rel[[0, -1]].mean() > 2 * rel[5:7].mean(), (seed, rel)


def test_ramp_band_grows_toward_the_empty_edge(ramp):
    # the two lowest x2 bins hold 2.8 % of the events, bins 6-8 (x2 0.5-0.75) 31 %
    for seed, h in ramp.items():
        rel = h.std / h.mean
        assert rel[:2].mean() > 2 * rel[6:9].mean(), (seed, rel)
