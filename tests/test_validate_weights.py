"""hepgen validate with weighted samples: sum-of-weights histograms with sqrt(sum w^2) errors
(also with negative weights), the weighted AUC's null width from the effective sample sizes,
the effective sample size in the report, unit weights that change nothing, and bad weights
refused in one line with nothing written. Real ROOT files (hepgen.io.root), toy kinematics."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from dataclasses import replace
from scipy.stats import norm

from hepgen.cli import main
from hepgen.io.root import write_events
from hepgen.validate.classifier import auc, null_auc_sigma
from hepgen.validate.histograms import binned, effective_size

from zjets_toy import toy_zjets

OBS = """
sets:
  jets:
    pt_j1: {bins: 12, range: [20, 200], logy: true}
  global:
    n_jets: {bins: 3, range: [0.5, 3.5], ratio: [0.9, 1.1]}
"""


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


def _sums(values, weights, edges):
    """(weighted bin sums, their squared errors) from binned's density and error (times sum w
    times the bin width)."""
    b = binned(values, edges, weights)
    scale = weights.sum() * np.diff(edges)
    return b.density * scale, (b.error * scale) ** 2


def _check(sums, err2, expected):
    """Over R repetitions ``[R, B]``: each bin's mean sum within 4 sigma of ``expected`` (10 bins:
    a false alarm ~ 1e-3), and the mean squared error (sum w^2) over the observed variance, summed
    over bins, within 0.1 of 1 (R = 300: the variance is known to ~8% per bin, ~3% over 10 bins)."""
    r = len(sums)
    pull = (sums.mean(axis=0) - expected) / (sums.std(axis=0, ddof=1) / np.sqrt(r))
    assert np.all(np.abs(pull) < 4), pull
    ratio = err2.mean(axis=0).sum() / sums.var(axis=0, ddof=1).sum()
    assert ratio == pytest.approx(1.0, abs=0.1)
    return ratio


def test_importance_sampled_histogram_has_sum_w2_errors():
    # N ~ Poisson(2000) events x ~ g = N(0, 2), weighted w = u f/g with f = N(0, 1), u ~ Exp(1): a
    # bin's sum of weights has mean 2000 P_f(bin) and (compound Poisson) variance E[sum w^2]. The
    # error of an unweighted count, sum w / sqrt(entries), misses E[u^2] = 2: half the variance.
    rng = np.random.default_rng(3)
    edges = np.linspace(-2.5, 2.5, 11)
    expected = 2000 * np.diff(norm.cdf(edges))
    sums, err2, count_err2 = [], [], []
    for _ in range(300):
        x = rng.normal(0, 2, rng.poisson(2000))
        w = norm.pdf(x) / norm.pdf(x, scale=2) * rng.exponential(1.0, len(x))
        s, e2 = _sums(x, w, edges)
        sums.append(s), err2.append(e2)
        count_err2.append(s**2 / np.histogram(x, edges)[0])
    sums = np.array(sums)
    _check(sums, np.array(err2), expected)
    assert np.mean(count_err2, axis=0).sum() / sums.var(axis=0, ddof=1).sum() < 0.7  # the check tells them apart


def test_negative_weights_subtract_in_histograms_and_errors():
    # f = N(0, 1) written as Poisson(4000) events of (f + g)/2 with w = +1 minus Poisson(2000)
    # events of g = U(-3, 3) with w = -1: a bin's signed sum has mean 2000 P_f(bin) and variance
    # E[sum w^2] (both parts compound Poisson); checked as above.
    rng = np.random.default_rng(4)
    edges = np.linspace(-2.5, 2.5, 11)
    expected = 2000 * np.diff(norm.cdf(edges))
    sums, err2 = [], []
    for _ in range(300):
        n_plus, n_minus = rng.poisson(4000), rng.poisson(2000)
        plus = np.where(rng.uniform(size=n_plus) < 0.5, rng.normal(0, 1, n_plus), rng.uniform(-3, 3, n_plus))
        x = np.r_[plus, rng.uniform(-3, 3, n_minus)]
        w = np.r_[np.ones(n_plus), -np.ones(n_minus)]
        s, e2 = _sums(x, w, edges)
        sums.append(s), err2.append(e2)
    _check(np.array(sums), np.array(err2), expected)


def test_weighted_auc_null_width_follows_the_effective_sample_sizes():
    # two samples of one density with weights w ~ Exp(1) (effective size ~ n/2): the weighted AUC
    # spreads as the Mann-Whitney width at the effective sizes, not at the raw counts. 1500 draws:
    # the std is known to ~2%; 8% allowed (as for the unweighted test); raw counts would be ~30% off.
    rng = np.random.default_rng(5)
    n1, n2 = 400, 600
    y = np.r_[np.ones(n1), np.zeros(n2)]
    aucs, widths = [], []
    for _ in range(1500):
        w = rng.exponential(1.0, n1 + n2)
        aucs.append(auc(rng.normal(size=n1 + n2), y, w))
        widths.append(null_auc_sigma(effective_size(w[:n1]), effective_size(w[n1:])))
    assert np.std(aucs) == pytest.approx(np.mean(widths), rel=0.08)
    assert np.std(aucs) > 1.2 * null_auc_sigma(n1, n2)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A weighted reference (toy events, weights w = 0.5..1.5 as genWeight, float64), an
    unweighted generated sample, and the generated events again with an explicit genWeight = 1."""
    d = tmp_path_factory.mktemp("validate_weights")
    ref = toy_zjets(1500, 1)
    w = np.random.default_rng(6).uniform(0.5, 1.5, len(ref))
    write_events(d / "ref_w.root", replace(ref, weight=w), weight_branch="genWeight")
    gen = toy_zjets(1000, 2)
    write_events(d / "gen.root", gen)
    write_events(d / "gen_w1.root", replace(gen, weight=np.ones(len(gen))), weight_branch="genWeight")
    (d / "obs.yaml").write_text(OBS)
    return d, w


def _validate(d, sample, reference, out, capsys, *extra):
    return run_cli(["validate", str(sample), "--reference", str(reference), "-o", str(out), "--no-progress",
                    "--observables", str(d / "obs.yaml"), *extra], capsys)


def test_report_gives_the_effective_sample_size_of_a_weighted_reference(files, capsys, tmp_path):
    d, w = files
    rc, _, err = _validate(d, d / "gen.root", d / "ref_w.root", tmp_path / "r", capsys, "--no-classifier")
    assert rc == 0, err
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    ws = m["inputs"]["weights"]
    assert ws["reference"]["effective_events"] == pytest.approx(w.sum() ** 2 / np.sum(w**2), rel=1e-12)
    assert ws["reference"]["weighted"] and not ws["generated"]["weighted"]
    assert ws["generated"]["effective_events"] == 1000
    md = (tmp_path / "r" / "metrics.md").read_text()
    assert re.search(r"effective sample size .*reference %.1f" % ws["reference"]["effective_events"], md)


def test_unit_weights_give_the_unweighted_report(files, capsys, tmp_path):
    # the same events without a weight branch (weight 1 by default, float32 'weight') and with an
    # explicit float64 genWeight = 1: every number of the report (classifier included) is the same
    d, _ = files
    torch.set_num_threads(1)
    outs = []
    for name in ("gen.root", "gen_w1.root"):
        out = tmp_path / name.split(".")[0]
        rc, _, err = _validate(d, d / name, d / "ref_w.root", out, capsys,
                               "--set", "validate.classifier_runs=1", "--set", "validate.classifier_epochs=2",
                               "--set", "validate.classifier_folds=2")
        assert rc == 0, err
        m = json.loads((out / "metrics.json").read_text())
        for key in ("created",):
            m.pop(key)
        m["summary"].pop("seconds")
        m["inputs"].pop("generated"), m["inputs"].pop("generated_info")
        outs.append((m, (out / "metrics.md").read_text().replace(name, "GEN")))
    assert outs[0][0] == outs[1][0]
    assert outs[0][1] == outs[1][1]
    assert "Weighted samples" in outs[0][1]  # the reference is weighted
    assert math.isfinite(outs[0][0]["classifier"]["auc_total"])


@pytest.mark.parametrize("weights, match", [
    ("zero", "all 1500 event weights are zero"),
    ("negative", "the event weights sum to"),
])
def test_bad_weights_are_one_line_and_nothing_is_written(files, capsys, tmp_path, weights, match):
    d, w = files
    # (NaN weights: hepgen's writer refuses to write them and EventSample.check_finite refuses to read them)
    bad = {"zero": np.zeros_like(w), "negative": -w}[weights]
    write_events(tmp_path / "bad.root", replace(toy_zjets(1500, 1), weight=bad), weight_branch="genWeight")
    rc, _, err = _validate(d, d / "gen.root", tmp_path / "bad.root", tmp_path / "r", capsys, "--no-classifier")
    assert rc == 2 and match in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_a_requested_weight_branch_that_is_missing_is_one_line(files, capsys, tmp_path):
    d, _ = files
    mapping = ("{Muon_pt: Muon_pt, Muon_eta: Muon_eta, Muon_phi: Muon_phi, Muon_mass: Muon_mass, Jet_pt: Jet_pt, "
               "Jet_eta: Jet_eta, Jet_phi: Jet_phi, Jet_mass: Jet_mass, weight: eventWeight}")
    rc, _, err = _validate(d, d / "gen.root", d / "ref_w.root", tmp_path / "r", capsys, "--no-classifier",
                           "--reference-branches", mapping)
    assert rc == 2 and "lacks branch weight -> eventWeight" in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()
