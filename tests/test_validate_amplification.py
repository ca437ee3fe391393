"""GANplification (arXiv:2008.06545) on a 1-D camel with a known density.

The estimator must say: a resampled training set is worth its training events (amplification
~1: resampling adds no information), a sample of the truth itself is worth as much as we can
resolve (a lower bound), and a smooth 5-parameter fit (a 'generator' that knows the functional
form) is worth several times its training events, as in the paper.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from hepgen.validate.amplification import equivalent_events, quantile_edges, quantile_mse

W, M1, M2, S = 0.5, -2.0, 2.0, 0.6


def camel_cdf(x):
    return W * norm.cdf(x, M1, S) + (1 - W) * norm.cdf(x, M2, S)


def camel(rng, n, w=W, m1=M1, m2=M2, s1=S, s2=S):
    c = rng.random(n) < w
    return np.where(c, rng.normal(m1, s1, n), rng.normal(m2, s2, n))


def fit_camel(x, iterations=60):
    """Maximum-likelihood fit of a two-Gaussian mixture (5 parameters) by EM."""
    w, m1, m2, s1, s2 = 0.5, x.min() / 2, x.max() / 2, x.std() / 2, x.std() / 2
    for _ in range(iterations):
        a, b = w * norm.pdf(x, m1, s1), (1 - w) * norm.pdf(x, m2, s2)
        r = a / (a + b)
        w = r.mean()
        m1, m2 = np.average(x, weights=r), np.average(x, weights=1 - r)
        s1, s2 = np.sqrt(np.average((x - m1) ** 2, weights=r)), np.sqrt(np.average((x - m2) ** 2, weights=1 - r))
    return w, m1, m2, s1, s2


def test_quantile_mse_of_truth_samples_is_one_minus_q_over_n():
    rng = np.random.default_rng(1)
    nq, n = 20, 500
    edges = np.arange(1, nq) / nq
    mses = [quantile_mse(camel_cdf(camel(rng, n)), edges) for _ in range(400)]
    # mean of 400 values with relative spread ~ sqrt(2/19): 1.6% error
    assert np.mean(mses) * n / (1 - 1 / nq) == __import__("pytest").approx(1.0, abs=0.06)


def test_fit_amplifies_resampling_does_not_truth_is_unresolved():
    rng = np.random.default_rng(2)
    n_train, n_gen = 100, 200_000
    fit_amp, boot_amp, truth_bounded = [], [], 0
    for _ in range(12):
        x = camel(rng, n_train)
        gen = camel(rng, n_gen, *fit_camel(x))
        fit_amp.append(equivalent_events(gen, truth_cdf=camel_cdf, n_train=n_train).amplification)
        boot = rng.choice(x, n_gen)
        boot_amp.append(equivalent_events(boot, truth_cdf=camel_cdf, n_train=n_train).amplification)
        truth_bounded += equivalent_events(camel(rng, n_gen), truth_cdf=camel_cdf, n_train=n_train).bounded
    # measured (seed 2): median fit amplification ~4, bootstrap ~1.0, truth unresolved in 11-12 of 12
    assert np.median(fit_amp) > 2.0
    assert 0.6 < np.median(boot_amp) < 1.6
    assert truth_bounded >= 9


def test_against_a_finite_truth_sample():
    # quantiles from a finite truth sample of 200k events: the edge noise is subtracted, a fit
    # still beats its 100 training events, resampling still does not
    rng = np.random.default_rng(3)
    truth = camel(rng, 200_000)
    assert len(quantile_edges(truth, 20)) == 19
    fit_amp, boot_amp = [], []
    for _ in range(10):
        x = camel(rng, 100)
        fit_amp.append(equivalent_events(camel(rng, 200_000, *fit_camel(x)), truth=truth, n_train=100).amplification)
        boot_amp.append(equivalent_events(rng.choice(x, 200_000), truth=truth, n_train=100).amplification)
    assert np.median(fit_amp) > 2.0
    assert 0.6 < np.median(boot_amp) < 1.6
