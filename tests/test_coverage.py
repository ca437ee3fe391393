"""The coverage measurement of ``hepgen validate`` (hepgen.validate.coverage) on synthetic draws
whose calibration is known by construction.

The model: a density piecewise constant in 40 cells on [0, 1]; a "posterior draw" k has cell
contents t (1 + sigma_w xi_k) (xi ~ N(0, 1) per cell, renormalised); the truth is one more draw
of the same posterior (so the band is calibrated by construction), or one with 2x the spread
(a band 2x too narrow). Events of a draw come from the inverse CDF of its density applied to
uniforms: the SAME uniforms for every draw (what ``hepgen generate --bayes-samples`` does) or
fresh ones per draw. The reference is an independent sample of the truth. Ten such observables
(independent xi) give 10 x 20 = 200 pulls: a calibrated band gives coverage 0.68 with a binomial
error of sqrt(0.68 0.32 / 200) = 0.033 (tolerance 3 sigma: 0.10) and a pull width (RMS) of
sqrt((K-1)/(K-3)) = 1.06 for K = 20 draws, with an error of about 1/sqrt(2 x 200) = 0.05
(tolerance 3 sigma: 0.15). Bins are correlated a little through the normalisation and the
quantile binning (40 cells vs 20 bins); the seeds used below were not tuned.
"""

from __future__ import annotations

import numpy as np
import pytest

from hepgen.processes.base import Category
from hepgen.validate import coverage

CELLS, K, OBSERVABLES = 40, 20, 10
COV_TOL, WIDTH_TOL = 0.10, 0.15  # 3 sigma for 200 pulls (module docstring)


def _draw_density(rng, sigma):
    t = 1.0 + 0.5 * np.sin(np.linspace(0, 3, CELLS))  # any smooth shape
    d = t * (1 + sigma * rng.standard_normal(CELLS))
    return d / d.sum()


def _sample(density, u):
    """Inverse CDF of the piecewise-constant ``density`` (cell probabilities) at uniforms ``u``."""
    cdf = np.concatenate([[0.0], np.cumsum(density)])
    cell = np.clip(np.searchsorted(cdf, u, side="right") - 1, 0, CELLS - 1)
    return (cell + (u - cdf[cell]) / density[cell]) / CELLS


def _observables(seed, *, sigma_w, truth_scale=1.0, n_gen=50_000, n_ref=100_000, shared=True):
    """{name: (v_ref, v_gen)} for OBSERVABLES observables and the draw label of the generated events."""
    rng = np.random.default_rng(seed)
    v_ref, v_gen = {}, {}
    for i in range(OBSERVABLES):
        truth = _draw_density(rng, truth_scale * sigma_w)
        u = rng.uniform(size=n_gen)
        gen = [_sample(_draw_density(rng, sigma_w), u if shared else rng.uniform(size=n_gen)) for _ in range(K)]
        v_gen[f"x{i}"] = np.concatenate(gen)
        v_ref[f"x{i}"] = _sample(truth, rng.uniform(size=n_ref))
    return v_ref, v_gen, np.repeat(np.arange(K), n_gen)


def _evaluate(v_ref, v_gen, draw, shared):
    n_ref, n_gen = len(next(iter(v_ref.values()))), len(draw)
    return coverage.category_coverage(v_ref, np.ones(n_ref), np.ones(n_ref, dtype=int), v_gen, np.ones(n_gen),
                                      np.ones(n_gen, dtype=int), draw, 1, shared, min_entries=100)


@pytest.mark.parametrize("shared", [True, False], ids=["shared-noise", "independent-noise"])
def test_calibrated_band_covers_68_percent(shared):
    # independent noise: the spread over draws holds each draw's Poisson error (here 2/3 of the band),
    # which band_and_stat takes out again; shared noise: it is not there
    n_gen = 50_000 if shared else 40_000
    v_ref, v_gen, draw = _observables(1 if shared else 2, sigma_w=0.05, n_gen=n_gen, shared=shared)
    r = _evaluate(v_ref, v_gen, draw, shared)
    assert r["bins"] == OBSERVABLES * coverage.BINS
    assert abs(r["coverage"] - 0.683) < COV_TOL, r["coverage"]
    assert abs(r["pull_width"] - coverage.expected_pull_width(K)) < WIDTH_TOL, r["pull_width"]
    assert not r["noise_dominated"]


def test_band_two_times_too_narrow_fails():
    v_ref, v_gen, draw = _observables(3, sigma_w=0.05, truth_scale=2.0)
    r = _evaluate(v_ref, v_gen, draw, True)
    # the truth deviates 2x the band (~3.5 % per bin), the noise is ~2.4 %: expected pull width
    # sqrt(4 x 3.5^2 + 2.4^2) / sqrt(3.5^2 + 2.4^2) ~ 1.7 (x 1.06 for K = 20), i.e. far outside the
    # calibrated acceptance (width <= 1.06 + 0.15); asserted > 1.4, coverage below 0.683 - 0.10
    assert r["pull_width"] > 1.4, r["pull_width"]
    assert r["coverage"] < 0.683 - COV_TOL, r["coverage"]


def test_treating_independent_noise_as_shared_overstates_the_band():
    """The bookkeeping matters: independent draws read as shared count their Poisson error twice
    (in the spread and as stat_gen), so the pulls come out too narrow."""
    v_ref, v_gen, draw = _observables(2, sigma_w=0.05, n_gen=40_000, shared=False)
    right, wrong = _evaluate(v_ref, v_gen, draw, False), _evaluate(v_ref, v_gen, draw, True)
    assert wrong["pull_width"] < right["pull_width"] - 0.1, (wrong["pull_width"], right["pull_width"])


def test_noise_dominated_warning_fires_when_and_only_when_noise_exceeds_the_band():
    # band 0.5 % of a bin holding 1/20 of 20k events: Poisson error ~3 %, 6x the band -> warning
    v_ref, v_gen, draw = _observables(4, sigma_w=0.005, n_gen=20_000, n_ref=20_000)
    noisy = _evaluate(v_ref, v_gen, draw, True)
    assert noisy["noise_dominated"] and noisy["noise_over_band"] > 3, noisy["noise_over_band"]
    text = coverage.warning("1 jet", noisy)
    assert text.startswith("1 jet: the sampling noise is ") and f"{noisy['noise_over_band']:.2f}x" in text
    # band 5 % per cell (~3.5 % per bin of two cells) and 50k events per draw, 100k reference: noise
    # ~2.4 % (both samples), ratio ~0.7 -> no warning
    v_ref, v_gen, draw = _observables(5, sigma_w=0.05)
    quiet = _evaluate(v_ref, v_gen, draw, True)
    assert not quiet["noise_dominated"] and quiet["noise_over_band"] < 0.9 and coverage.warning("1 jet", quiet) is None


def test_evaluate_reports_per_category_and_skips_undefined_observables():
    v_ref, v_gen, draw = _observables(6, sigma_w=0.05, n_gen=20_000, n_ref=40_000)
    lab_ref = np.tile([1, 2], 20_000)
    lab_gen = np.tile([1, 2], len(draw) // 2)
    v_ref["only_in_2"] = np.where(lab_ref == 2, v_ref["x0"], np.nan)
    v_gen["only_in_2"] = np.where(lab_gen == 2, v_gen["x0"], np.nan)
    cov = coverage.evaluate(v_ref, np.ones(40_000), lab_ref, v_gen, np.ones(len(draw)), lab_gen, draw,
                            {1: Category("1", "1 jet", "1j"), 2: Category("2", "2 jets", "2j")}, True, 100)
    assert set(cov["categories"]) == {"1", "2"} and cov["draws"] == K and cov["noise"] == "shared"
    assert "only_in_2" not in cov["categories"]["1"]["observables"]
    assert "only_in_2" in cov["categories"]["2"]["observables"]
    assert set(cov["pulls"]) == {"1 jet", "2 jets"} and len(cov["pulls"]["2 jets"]) == cov["categories"]["2"]["bins"]
    md = "\n".join(coverage.markdown({k: v for k, v in cov.items() if k != "pulls"}, "jets"))
    assert "## Coverage of the uncertainty band" in md and "| 2 | " in md


def test_events_per_draw_puts_the_noise_below_the_band():
    f, b, r = 0.045 * 0.73, 0.01, 0.5  # one of 20 bins over 90 % of the 1-jet events; 1 % band
    for n_ref in (None, 5e6):
        n = coverage.events_per_draw(b, f, r, n_ref)
        n_r = n if n_ref is None else n_ref
        # the noise of one draw and of the reference, over the band, is then r
        assert np.sqrt(1 / (n * f) + 1 / (n_r * f)) / b == pytest.approx(r, rel=1e-9)
    # a 100k-event reference alone is noisier than a 1 % band here: no N per draw helps
    assert coverage.events_per_draw(b, f, r, 1e5) == np.inf


def test_draw_files_of_one_generate_call_are_read_as_sharing_their_noise(tmp_path):
    """``hepgen generate --bayes-samples K`` writes K files with the same seed, event range and
    noise blocks: shared noise. Files that differ in seed (or do not say) are independent."""
    from hepgen.io.root import write_events
    from hepgen.validate.inputs import read_generated
    from tests.zjets_toy import toy_zjets

    same = {"seed": "7", "event_range": "0:300", "noise_block": "4096"}
    shared, other = [], []
    for k in range(2):
        shared.append(tmp_path / f"s.draw{k}.root")
        write_events(shared[-1], toy_zjets(300, 1), info={**same, "bayes_draw": str(k)})
        other.append(tmp_path / f"o.draw{k}.root")
        write_events(other[-1], toy_zjets(300, 1 + k), info={**same, "seed": str(7 + k), "bayes_draw": str(k)})
    assert read_generated(shared).shared_noise is True
    assert read_generated(other).shared_noise is False
    assert read_generated(shared[:1]).shared_noise is False  # one file: no draws
