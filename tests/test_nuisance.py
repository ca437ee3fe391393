"""Nuisance-conditioned generators (hepgen.nuisance): the card, the weight, training, generate
--nuisance, bad input, and the export with nu in the condition."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import torch
import yaml

from hepgen.cards import Card, card_from_dict, dump_card
from hepgen.errors import CardError, InputError
from hepgen.export.bundle import TORCH_RTOL, event_diff, torch_outputs
from hepgen.export.from_run import export
from hepgen.export.runtime import OnnxSampler
from hepgen import observables
from hepgen.generate import generate
from hepgen.io.root import read_events, write_events
from hepgen.nuisance import event_slopes, setting, weight
from hepgen.pipeline import pipeline
from hepgen.runs import build_for, load_run
from hepgen.train import train
from tests.zjets_like import zjets_like

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]
# the seed's example: w = 1 + a ((pT_j1 - 15 GeV) / 100 GeV)^2; a >= -0.14 keeps w >= 0 for the
# zjets_like events below (pT_j1 up to 281 GeV)
LOW = -0.1
SEED_NUISANCE = {"name": "a", "kind": "parametric", "observable": "pt_j1", "center": 15.0, "scale": 100.0,
                 "range": [LOW, 1.0]}


def _zjets_card(tmp: Path, **model) -> Card:
    return card_from_dict({
        "name": "zjnu", "seed": 4, "data": {"path": str(tmp / "ref.root")},
        "model": {"family": "cfm", "network": {"hidden": 16, "layers": 1}, "cfm": {"solver": "euler", "steps": 2},
                  "nuisance": [SEED_NUISANCE], **model},
        "train": {"epochs": 1, "batch_size": 256, "threads": 1, "validate": False, "runs_dir": str(tmp / "runs")},
        "generate": {"events": 100, "calibration_events": 200},
    })


@pytest.fixture(scope="module")
def zrun(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nuisance")
    write_events(tmp / "ref.root", zjets_like(1500, seed=3))
    return load_run(train(_zjets_card(tmp), progress=False, after=False, run_dir=tmp / "run")), tmp


# -- card ----------------------------------------------------------------------------------------


def test_a_card_without_nuisances_dumps_as_before():
    """No model.nuisance / simulate.psweight key in the dump of a default card: the card hash of
    existing cards and reference files does not change."""
    text = dump_card(Card())
    assert "nuisance" not in text and "psweight" not in text


def test_a_nuisance_card_round_trips_through_its_dump(tmp_path):
    card = _zjets_card(tmp_path)
    again = card_from_dict(yaml.safe_load(dump_card(card)))
    assert again == card and again.model.nuisance[0].scale == 100.0


@pytest.mark.parametrize("entry, words", [
    ({"name": "a", "range": [0.1, 1.0]}, "low <= 0 <= high"),
    ({"name": "a", "range": [0.0, 0.0]}, "low < high"),
    ({"name": "a", "range": [-1.0]}, "low <= 0 <= high"),
    ({"name": "a b"}, "letters, digits"),
    ({"name": "a", "sigma": 2}, "unknown key"),
    ({"name": "a", "scale": 0}, "out of range"),
])
def test_bad_nuisance_entries_are_one_line_card_errors(tmp_path, entry, words):
    with pytest.raises(CardError, match=words) as err:
        build_for(_zjets_card(tmp_path, nuisance=[entry]))
    assert "\n" not in str(err.value)


def test_a_one_sided_range_is_a_nuisance_that_only_raises_or_only_lowers(tmp_path):
    build_for(_zjets_card(tmp_path, nuisance=[{**SEED_NUISANCE, "range": [0.0, 1.0]}]))  # no error


@pytest.mark.parametrize("family", ["cfm", "vae"])
def test_a_range_whose_weight_goes_negative_is_refused_before_the_run_folder(tmp_path, family):
    """At a = -0.5 the seed's weight is negative above pT_j1 = 156 GeV: the varied density would be
    negative there (a Z+jets CFM trained on it diverged at epoch 61). Refused for every family, with
    the bound that keeps w >= 0 for these events (-1 / max(((pT_j1 - 15) / 100)^2))."""
    events = zjets_like(1500, seed=3)
    write_events(tmp_path / "ref.root", events)
    pt = observables.compute(events, ["pt_j1"])["pt_j1"]
    bound = -1 / np.nanmax(((pt - 15) / 100) ** 2)
    card = _zjets_card(tmp_path, family=family, nuisance=[{**SEED_NUISANCE, "range": [-0.5, 1.0]}])
    with pytest.raises(CardError, match=r"at a = -0.5 the weight is negative for \d+ training events") as err:
        train(card, progress=False, after=False, run_dir=tmp_path / "run")
    assert "\n" not in str(err.value) and not (tmp_path / "run").exists()
    # the bound is for the training rows, a subset: at most as strict as the whole sample's
    said = float(str(err.value).rsplit(">= ", 1)[1])
    assert bound <= said < 0
    nu_ok = {**SEED_NUISANCE, "range": [said, 1.0]}
    assert train(_zjets_card(tmp_path, family=family, nuisance=[nu_ok]), progress=False, after=False,
                 run_dir=tmp_path / "ok").is_dir()


def test_names_are_unique_and_families_without_a_per_event_loss_refuse(tmp_path):
    with pytest.raises(CardError, match="given 2 times"):
        build_for(_zjets_card(tmp_path, nuisance=[{"name": "a"}, {"name": "a"}]))
    with pytest.raises(CardError, match="cannot train on weighted events"):
        build_for(_zjets_card(tmp_path, family="gan"))


# -- the weight ------------------------------------------------------------------------------------


def test_parametric_weight_is_the_seeds_formula_on_physics_pt_j1(tmp_path):
    sample = zjets_like(400, seed=1)
    slopes = event_slopes(_zjets_card(tmp_path), sample)
    pt_j1 = np.array([float(row[0]) for row in sample["Jet"].pt])  # the leading jet, read off the sample
    for a in (-0.5, 0.3, 1.0):
        w = weight(torch.from_numpy(slopes), torch.full((len(sample), 1), a, dtype=torch.float64)).numpy()
        np.testing.assert_allclose(w, 1 + a * ((pt_j1 - 15.0) / 100.0) ** 2, rtol=1e-12)


def test_psweight_weight_interpolates_linearly_between_the_variations():
    slopes = torch.tensor([[[0.3, -0.2]], [[-0.1, 0.4]]], dtype=torch.float64)  # up - 1, down - 1
    for nu, expect in ((1.0, [1.3, 0.9]), (-1.0, [0.8, 1.4]), (0.5, [1.15, 0.95]), (-0.25, [0.95, 1.1]), (0.0, [1, 1])):
        got = weight(slopes, torch.full((2, 1), nu, dtype=torch.float64))
        np.testing.assert_allclose(got.numpy(), expect, rtol=1e-12)


# -- training on a toy: the learned ratio follows w -------------------------------------------------


@pytest.fixture(scope="module")
def toy_ratio(tmp_path_factory):
    """toy_ramp (p(x2) = 2 x2 on [0, 1]) with w = 1 + a x2^2, a uniform in [-0.5, 1], 16 epochs of
    CFM; returns ratio(a) -> (learned gen(a) / gen(0), exact ratio, sigma) in five bins of x2. The
    same 50 000 noise rows feed every a, so the difference is the learned response, not sampling
    noise; sigma treats the two histograms as independent (conservative: they are positively
    correlated). a is drawn continuously in training, so no value was 'seen'."""
    return _toy_ratio(tmp_path_factory.mktemp("toy_nuisance"), "uniform")


@pytest.fixture(scope="module")
def toy_ratio_ends(tmp_path_factory):
    """As :func:`toy_ratio` with prior ends: training draws a from {-0.5, 0, 1} only, generation
    samples the mixture of the three densities."""
    return _toy_ratio(tmp_path_factory.mktemp("toy_nuisance_ends"), "ends")


@pytest.fixture(scope="module")
def toy_ratio_paired(tmp_path_factory):
    """As :func:`toy_ratio_ends` with train.nuisance_paired (each event at a = 0 and at its drawn a)."""
    return _toy_ratio(tmp_path_factory.mktemp("toy_nuisance_paired"), "ends", paired=True)


def _toy_ratio(tmp: Path, prior: str, paired: bool = False):
    card = card_from_dict({
        "name": "ramp", "seed": 3, "process": {"name": "toy_ramp"}, "simulate": {"events": 20000},
        "model": {"family": "cfm", "network": {"hidden": 96, "layers": 2}, "cfm": {"solver": "midpoint", "steps": 10},
                  "nuisance": [{"name": "a", "observable": "x2", "center": 0.0, "scale": 1.0, "range": [-0.5, 1.0],
                                "prior": prior}]},
        "train": {"epochs": 16, "batch_size": 512, "lr": 5e-3, "threads": 1, "validate": False, "runs_dir": str(tmp),
                  "nuisance_paired": paired},
    })
    run = load_run(train(card, progress=False, after=False, run_dir=tmp / "ramp"))
    pipe = pipeline(run)
    noise = pipe.draw_noise(50_000, torch.Generator().manual_seed(1))
    edges = np.array([0.0, 0.3, 0.5, 0.7, 0.85, 1.0])
    lo, hi = edges[:-1], edges[1:]
    m2 = (hi**4 - lo**4) / 2 / (hi**2 - lo**2)  # <x2^2> in each bin under p = 2 x2

    def hist(a):
        with torch.no_grad():
            x = pipe(setting(card.model.nuisance, {"a": a}).fill(noise, pipe.noise_layout)).numpy()
        return np.histogram(x[:, 1], edges)[0].astype(float)

    h0 = hist(0.0)

    def ratio(a):
        h = hist(a)
        r = (h / h.sum()) / (h0 / h0.sum())
        return r, (1 + a * m2) / (1 + a / 2), r * np.sqrt(1 / h + 1 / h0)

    return h0 / h0.sum(), hi**2 - lo**2, ratio


def test_learned_ratio_follows_the_weight_on_a_toy(toy_ratio):
    """At a = 1 (the range's upper edge) and a = 0.4 (inside), per bin within 4 sigma plus 0.03 for
    what the 16-epoch toy network leaves unlearned (its nominal gen(0) is within 0.03 of the truth
    in these bins, checked first). A generator that ignores a (ratio 1) misses by 0.2-0.3 in the
    outer bins and fails."""
    _check_ratio(toy_ratio, (1.0, 0.4))


def test_the_mixture_of_the_ends_follows_the_weight_on_a_toy_at_both_edges_and_inside(toy_ratio_ends):
    """prior ends: the same check at a = 1, 0.4, -0.5 (the lower edge the continuous prior misses) and
    -0.2; the values inside the range come from the exact mixture of the trained densities."""
    _check_ratio(toy_ratio_ends, (1.0, 0.4, -0.5, -0.2))


def test_paired_training_follows_the_weight_on_a_toy_at_both_edges_and_inside(toy_ratio_paired):
    """train.nuisance_paired: the same check as prior ends alone. A paired loss that dropped the
    varied term (or its weights) learns no response and misses by 0.2-0.3 in the outer bins."""
    _check_ratio(toy_ratio_paired, (1.0, 0.4, -0.5, -0.2))


def _check_ratio(toy, values):
    nominal, truth0, ratio = toy
    np.testing.assert_allclose(nominal, truth0, atol=0.03)
    for a in values:
        r, truth, sigma = ratio(a)
        assert np.abs(truth - 1).max() > 0.07  # the test can tell a response from none
        assert np.all(np.abs(r - truth) <= 4 * sigma + 0.03), (a, r, truth)


@pytest.mark.xfail(strict=True, reason="measured: at the lower edge a = -0.5 the 16-epoch toy learns about half "
                   "the response (gen/nominal 1.14 vs 1.30 in the lowest x2 bin, 0.90 vs 0.76 in the highest); "
                   "not understood yet (a third of the uniform draws fall below 0; longer training not tried). "
                   "prior ends (the exact mixture of the ends) passes it: "
                   "test_the_mixture_of_the_ends_follows_the_weight_on_a_toy_at_both_edges_and_inside")
def test_learned_ratio_at_the_lower_edge_of_the_range(toy_ratio):
    _, _, ratio = toy_ratio
    r, truth, sigma = ratio(-0.5)
    assert np.all(np.abs(r - truth) <= 4 * sigma + 0.03), (r, truth)


# -- generate --nuisance ---------------------------------------------------------------------------


def test_the_run_conditions_on_nu(zrun):
    run, _ = zrun
    assert run.model.cond_dim == 3 + 1  # one-hot multiplicity, then a
    assert pipeline(run).noise_layout.count("nuisance") == 1


def test_the_training_log_names_the_nuisances_and_how_batches_use_them(zrun, zrun_ends):
    """The log says which nuisance the run conditions on, its prior and the batch mode (a log
    written without it could not tell a weighted-loss run from a resampled one)."""
    runs = {"uniform": zrun[1] / "run" / "train.log", "ends": zrun_ends[1] / "run" / "train.log"}
    for prior, log in runs.items():
        line = next(t for t in log.read_text().splitlines() if "events:" in t)
        assert f"nuisances a (parametric pt_j1, {prior}), loss weighted by w(x; nu)" in line, line


def test_generate_fixed_and_prior_values(zrun, tmp_path):
    run, _ = zrun
    (nominal,) = generate(run, 500, output=tmp_path / "nom.root", progress=False)
    (zero,) = generate(run, 500, output=tmp_path / "zero.root", progress=False, nuisance=["a=0"])
    (up,) = generate(run, 500, output=tmp_path / "up.root", progress=False, nuisance=["a=1"])
    (prior,) = generate(run, 500, output=tmp_path / "prior.root", progress=False, nuisance=["a=prior"])
    n, z, u, p = (read_events(f) for f in (nominal, zero, up, prior))
    assert n.info["nuisance_a"] == "0.0" and u.info["nuisance_a"] == "1.0" and p.info["nuisance_a"] == "prior"
    assert np.array_equal(_muon_pt(n), _muon_pt(z))  # a not given = a=0, the same events
    assert not np.array_equal(_muon_pt(n), _muon_pt(u))


def _muon_pt(sample) -> np.ndarray:
    return ak.to_numpy(ak.flatten(sample["Muon"].pt))


def test_prior_draws_fill_the_range(zrun):
    run, _ = zrun
    pipe = pipeline(run)
    noise = pipe.draw_noise(20000, torch.Generator().manual_seed(2))
    filled = setting(run.card.model.nuisance, ["a=prior"]).fill(noise, pipe.noise_layout, torch.Generator().manual_seed(3))
    col = pipe.noise_layout.index("nuisance")
    nu = filled[:, col].double().numpy()
    assert nu.min() >= LOW and nu.max() <= 1.0
    # uniform on [LOW, 1]: mean (LOW + 1) / 2, std (1 - LOW) / sqrt(12); 5 sigma of the mean's error
    assert abs(nu.mean() - (LOW + 1) / 2) < 5 * ((1 - LOW) / np.sqrt(12)) / np.sqrt(len(nu))
    others = [j for j in range(noise.shape[1]) if j != col]
    assert torch.equal(filled[:, others], noise[:, others])  # the noise itself is untouched


@pytest.mark.parametrize("args, words", [
    (["--nuisance", "b=0.5"], "has no nuisance 'b'"),
    (["--nuisance", "a=1.5"], "outside its range"),
    (["--nuisance", "a=-0.2"], "outside its range"),
    (["--nuisance", "a=nan"], "outside its range"),
    (["--nuisance", "a=big"], "a number or 'prior'"),
    (["--nuisance", "a"], "NAME=VALUE"),
])
def test_bad_nuisance_values_are_one_line_errors_with_nothing_written(zrun, tmp_path, args, words):
    run, _ = zrun
    out = tmp_path / "g.root"
    cli = subprocess.run([sys.executable, "-m", "hepgen", "generate", str(run.path), "-n", "50", "-o", str(out),
                          "--no-progress", *args], capture_output=True, text=True, cwd=REPO)
    assert cli.returncode == 2 and words in cli.stderr
    assert len(cli.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_a_run_without_nuisances_refuses_the_option():
    with pytest.raises(InputError, match="has no nuisance 'a' .*none"):
        setting((), ["a=0.5"])


# -- jet-multiplicity fractions at nu ------------------------------------------------------------


def test_the_expanded_weight_gives_each_categorys_mean_weight_at_any_nu():
    """hepgen.nuisance.category_means / term_factors: for two nuisances with different up and down
    slopes, term_factors(nu) @ table is, per category, the weighted mean of w(x; nu) computed event by
    event (hepgen.nuisance.weight), at nu of either sign, mixed signs and 0."""
    from hepgen.nuisance_mixture import category_means, term_factors

    rng = np.random.default_rng(1)
    slopes = rng.uniform(-0.5, 1.0, size=(3000, 2, 2))
    category, w = rng.integers(0, 3, 3000), rng.uniform(0.5, 2.0, 3000)
    table = category_means(slopes, category, 3, w)
    nus = torch.tensor([[0.0, 0.0], [1.0, 0.0], [-0.7, 0.0], [0.4, -0.9], [-1.0, 0.6], [0.3, 0.8]], dtype=torch.float64)
    got = term_factors(nus).numpy() @ table
    for i, nu in enumerate(nus):
        wn = weight(torch.from_numpy(slopes), nu.expand(len(slopes), 2)).numpy()
        direct = [np.sum((w * wn)[category == c]) / np.sum(w[category == c]) for c in range(3)]
        assert got[i] == pytest.approx(direct, rel=1e-12)


def test_the_jet_multiplicity_fractions_follow_nu(zrun):
    """The Z+jets pipeline draws n_jets at nu with the sampling fractions times each multiplicity's
    mean weight w(x; nu) over the training events (recomputed here from the events and the split),
    normalised: at a = 1 the 3-jet share rises. Tolerance: 5 binomial sigma of 40 000 draws; a
    pipeline with fixed fractions misses the 3-jet share at a = 1 by about 30 sigma."""
    run, tmp = zrun
    pipe = pipeline(run)
    train_rows = read_events(tmp / "ref.root").select(np.load(run.path / "split.npz")["train"])
    slopes = event_slopes(run.card, train_rows)
    noise = pipe.draw_noise(40000, torch.Generator().manual_seed(11))
    shares = {}
    for a in (0.0, 1.0):
        wn = weight(torch.from_numpy(slopes), torch.full((len(slopes), 1), a, dtype=torch.float64)).numpy()
        mean_w = np.array([wn[train_rows.n_jets == n].mean() for n in (1, 2, 3)])
        expected = np.asarray(pipe.fractions) * mean_w / np.sum(np.asarray(pipe.fractions) * mean_w)
        with torch.no_grad():
            n_jets = pipe(setting(run.card.model.nuisance, {"a": a}).fill(noise, pipe.noise_layout))[1].numpy()
        got = np.array([np.mean(n_jets == n) for n in (1, 2, 3)])
        assert np.all(np.abs(got - expected) < 5 * np.sqrt(expected * (1 - expected) / len(noise))), (a, got, expected)
        shares[a] = got
    assert shares[1.0][2] > shares[0.0][2] + 10 * np.sqrt(shares[0.0][2] / len(noise))


def test_a_run_saved_without_the_fraction_table_loads_with_fixed_fractions(zrun):
    """Nuisance runs trained before the table existed: their coordinates load, and the table is that
    of no nu-dependence (the 1 term only), so they generate as they did."""
    run, _ = zrun
    state = {k: v for k, v in run.coords.state_dict().items() if k != "mult_nuisance.table"}
    coords = build_for(run.card)[0]
    coords.load_state_dict(state)
    assert len(state) < len(run.coords.state_dict())
    assert coords.mult_nuisance.table[0].tolist() == [1.0, 1.0, 1.0] and not coords.mult_nuisance.table[1:].any()
    assert run.coords.mult_nuisance.table[1:].any()  # the trained run's own table does move


# -- export --------------------------------------------------------------------------------------


def test_export_takes_nu_in_its_input_and_matches_torch(zrun, tmp_path):
    run, _ = zrun
    out = export(run.path, output=tmp_path / "exp", sofie=False)
    manifest = json.loads((out / "manifest.json").read_text())
    (entry,) = manifest["physics"]["nuisances"]
    assert entry["name"] == "a" and manifest["noise_layout"][entry["noise_column"]] == "nuisance"
    pipe = pipeline(run)
    noise = pipe.draw_noise(400, torch.Generator().manual_seed(9))
    sampler = OnnxSampler(out)
    results = {}
    for a in (0.0, 0.7):
        fed = setting(run.card.model.nuisance, {"a": a}).fill(noise, pipe.noise_layout).numpy()
        got = list(sampler.run(fed).values())
        assert event_diff(got, torch_outputs(pipe, {"noise": fed})).max() <= TORCH_RTOL
        results[a] = got
    assert np.abs(results[0.0][0] - results[0.7][0]).max() > 1e-3  # nu reaches the graph


def test_systematic_bands_are_the_shifts_at_the_ends_of_the_range(zrun):
    """hepgen.validate.systematics: the nominal shape is a density over the bins; the up / down
    bands are the positive / negative parts of hist(a at an end of its range) - nominal, summed in
    quadrature over the ends (recomputed here from the same noise); total = stat (+) syst; without
    draws stat is 0. At a = 0 the generated ratio and the reweighted reference ratio are 1 in
    every bin (chi2 0): the weight and the condition agree on the nominal point."""
    from hepgen.validate import systematics

    run, tmp = zrun
    edges = {"pt_mumu": np.linspace(0, 150, 16), "m_mumu": np.linspace(70, 110, 11)}
    (b_pt, b_m) = systematics.bands(run, ["pt_mumu", "m_mumu"], edges, events=3000, seed=5)
    for b in (b_pt, b_m):
        assert b.nominal.sum() == pytest.approx(1.0) and not b.stat.any()
        assert np.array_equal(b.total_up, b.syst_up) and np.array_equal(b.total_down, b.syst_down)
    assert systematics.variation_ends(run.card.model.nuisance) == [("a", LOW), ("a", 1.0)]
    shifts = []
    for value in (LOW, 1.0):
        pt = observables.compute(systematics.sample_at(run, {"a": value}, 3000, 5), ["pt_mumu"])["pt_mumu"]
        h = np.histogram(pt[np.isfinite(pt)], edges["pt_mumu"])[0].astype(np.float64)
        shifts.append(h / h.sum() - b_pt.nominal)
    shifts = np.array(shifts)
    assert np.allclose(b_pt.syst_up, np.sqrt((np.clip(shifts, 0, None) ** 2).sum(axis=0)))
    assert np.allclose(b_pt.syst_down, np.sqrt((np.clip(-shifts, 0, None) ** 2).sum(axis=0)))
    assert b_pt.syst_up.any() and b_pt.syst_down.any()  # a moves the events
    ref = read_events(tmp / "ref.root")
    r = systematics.ratio_chi2(run, ref, "pt_mumu", edges["pt_mumu"], {"a": 0.0}, events=2000)
    assert r["chi2"] == pytest.approx(0.0, abs=1e-20) and r["ndf"] > 5
    assert np.allclose(np.array(r["gen_ratio"])[np.isfinite(r["gen_ratio"])], 1.0)


def test_the_reweighted_reference_ratio_has_the_error_of_a_ratio_of_mean_weights():
    """hepgen.validate.systematics.reweighted_ratio on x ~ U(0, 1) with w = 1 + 0.8 x^2 (exact ratio
    per bin: the bin's mean of w over 1 + 0.8 / 3): over 300 independent samples of 4000 events the
    ratio is unbiased (mean within 4 standard errors of the exact value in each bin) and its spread
    matches the predicted error to within 30 % (3 sigma of a variance estimated from 300 samples;
    the bin's own mean-weight error alone misses by 2.5-77x, the overall mean's noise dominates). The
    error of two independent histograms, sqrt(2 / N_b), is over 5x larger here: a chi2 with it cannot
    see a wrong ratio."""
    from hepgen.validate.systematics import reweighted_ratio

    edges = np.linspace(0, 1, 6)
    rng = np.random.default_rng(11)
    ratios, variances = [], []
    for _ in range(300):
        x = rng.uniform(size=4000)
        r, var, n = reweighted_ratio(x, 1 + 0.8 * x**2, edges)
        ratios.append(r)
        variances.append(var)
    ratios, predicted = np.array(ratios), np.mean(variances, axis=0)
    lo, hi = edges[:-1], edges[1:]
    exact = (1 + 0.8 * (hi**3 - lo**3) / (3 * (hi - lo))) / (1 + 0.8 / 3)
    assert np.all(np.abs(ratios.mean(0) - exact) < 4 * ratios.std(0) / np.sqrt(len(ratios))), (ratios.mean(0), exact)
    assert np.all(np.abs(ratios.var(0) / predicted - 1) < 0.3), ratios.var(0) / predicted
    assert np.all(np.sqrt(2 / n) > 5 * np.sqrt(predicted))


def test_heavy_tailed_weights_need_the_pooled_variance_for_a_chi2_of_one():
    """With heavy-tailed weights (log-normal, sigma 1.5: E[w^2] / E[w]^2 = 9.5; Pythia's FSR up reads
    3.2 with tails to 129) a bin of 200 events usually lacks the rare large weights: its mean reads
    low and its own spread understates the error. Over 400 samples of 2000 events (10 bins, the exact
    ratio 1 everywhere) the mean squared pull, what chi2 / ndf measures, is 1.65 with the bin's own
    variance and 1.02 with the variance per bin pooled over a second, 10x larger sample of the same
    simulation (hepgen.validate.systematics.pooled_variance): a correct ratio then scores chi2 / ndf
    about 1. Bounds: 0.85-1.15 (the mean of 4000 heavy-tailed squared pulls scatters by about 0.05)
    and above 1.4."""
    from hepgen.validate.systematics import pooled_variance, reweighted_ratio

    edges = np.linspace(0, 1, 11)
    rng = np.random.default_rng(3)
    own, pooled = [], []
    for _ in range(400):
        x, w = rng.uniform(size=2000), rng.lognormal(0.0, 1.5, 2000)
        xp, wp = rng.uniform(size=20000), rng.lognormal(0.0, 1.5, 20000)
        r, var, _ = reweighted_ratio(x, w, edges)
        own.append((r - 1) ** 2 / var)
        r, var, _ = reweighted_ratio(x, w, edges, pooled_variance([(x, w), (xp, wp)], edges))
        pooled.append((r - 1) ** 2 / var)
    assert 0.85 < np.mean(pooled) < 1.15, np.mean(pooled)
    assert np.mean(own) > 1.4, np.mean(own)


def test_the_paired_generated_ratio_has_the_error_of_its_noise_rows():
    """hepgen.validate.systematics.paired_ratio: over 300 repetitions of 4000 noise rows whose two
    values are close (v1 = v0 + a small shift and smear, 5 % of the rows dropped at one setting and not
    the other), the ratios' spread matches the predicted variance within 30 % in every bin (the
    independent-counts error it replaces is over 3 times too large here); identical rows have ratio 1
    and no error."""
    from hepgen.validate.systematics import paired_ratio

    edges = np.linspace(0, 1, 6)
    rng = np.random.default_rng(12)
    ratios, variances, poisson = [], [], []
    for _ in range(300):
        v0 = rng.uniform(size=4000)
        v1 = v0 + 0.02 + 0.03 * rng.normal(size=4000)
        v1[rng.uniform(size=4000) < 0.05] = np.nan
        r, var, c = paired_ratio(v1, v0, edges)
        ratios.append(r)
        variances.append(var)
        poisson.append(r**2 * (1 / np.histogram(v1[np.isfinite(v1)], edges)[0] + 1 / c))
    ratios, predicted = np.array(ratios), np.mean(variances, axis=0)
    assert np.all(np.abs(ratios.var(0) / predicted - 1) < 0.3), ratios.var(0) / predicted
    assert np.all(np.mean(poisson, axis=0) > 3 * predicted)
    v = rng.uniform(size=4000)
    same = paired_ratio(v, v, edges)
    assert np.allclose(same[0], 1) and np.max(same[1]) < 1e-12


def test_a_nominal_share_of_the_training_draws_sits_at_nu_0(tmp_path):
    """model.nuisance[].nominal = 0.4: 40 % of the batch's draws are exactly 0 (5 sigma of a binomial
    share), the rest uniform on the range (mean within 5 sigma), each event's weight is w(x; its nu)
    (1 at nu = 0); without the key no extra random numbers are drawn (the draws are as before)."""
    from hepgen.nuisance import TrainingConditions

    card = _zjets_card(tmp_path, nuisance=[{**SEED_NUISANCE, "range": [0.0, 1.0], "nominal": 0.4}])
    n = 40000
    slopes = np.random.default_rng(1).uniform(0, 2, (n, 1, 2))
    x, c = torch.zeros(n, 3), torch.zeros(n, 4)
    torch.manual_seed(7)
    conditions = TrainingConditions(card, slopes, "cpu")
    xb, cb, wb = conditions.batch(x, c, None, torch.arange(n))
    assert torch.equal(conditions.nominal(c), torch.cat([c, torch.zeros(n, 1)], -1))  # validation: at nu = 0
    nu = cb[:, -1].double().numpy()
    at0 = nu == 0
    assert abs(at0.mean() - 0.4) < 5 * np.sqrt(0.4 * 0.6 / n), at0.mean()
    rest = nu[~at0]
    assert rest.min() > 0 and rest.max() < 1 and abs(rest.mean() - 0.5) < 5 / np.sqrt(12 * len(rest))
    assert torch.allclose(wb.double(), torch.from_numpy(1 + nu * slopes[:, 0, 0]), rtol=1e-5)
    plain = _zjets_card(tmp_path, nuisance=[{**SEED_NUISANCE, "range": [0.0, 1.0]}])
    torch.manual_seed(7)
    _, c_plain, _ = TrainingConditions(plain, slopes, "cpu").batch(x, c, None, torch.arange(n))
    torch.manual_seed(7)
    expect = torch.rand(n, 1)  # the prior's uniforms alone: uniform on [0, 1] is u itself
    assert torch.allclose(c_plain[:, -1:], expect)


@pytest.mark.parametrize("balance", [None, (1.0, 3.0, 1.0, 0.5, 2.0)])
def test_resampled_batches_draw_each_event_with_its_weight_at_the_rows_nu(tmp_path, balance):
    """train.nuisance_resample: every row of a batch is a training event drawn with probability
    b_i w_file_i w_i(nu) / sum_j b_j w_file_j w_j(nu) at the nu of its row (NUISANCE_GROUPS values per
    batch; b: train.balance's draw weights, 1 without), and the loss weight is sign(w_file). Tested on
    five events with very different slopes and file weights: per event, the mean over 4000 batches of
    1[row is the event] - p_i(row's nu) is 0 within 5 sigma (a uniform draw, or one that ignores the
    file weights or the balance weights, misses by > 20 sigma)."""
    from hepgen.nuisance import NUISANCE_GROUPS, TrainingConditions

    card = _zjets_card(tmp_path, nuisance=[{**SEED_NUISANCE, "range": [0.0, 1.0]}])
    card = card_from_dict({**yaml.safe_load(dump_card(card)), "train": {**yaml.safe_load(dump_card(card))["train"],
                                                                        "nuisance_resample": True}})
    slopes = np.array([0.0, 0.5, 2.0, 8.0, 0.1])[:, None, None].repeat(2, axis=2)
    w_file = torch.tensor([1.0, 2.0, 0.5, 1.0, -3.0])
    x, c = torch.arange(5.0)[:, None], torch.zeros(5, 2)
    b = np.ones(5) if balance is None else np.array(balance)
    conditions = TrainingConditions(card, slopes, "cpu", None if balance is None else torch.tensor(balance))
    torch.manual_seed(3)
    dev, var = np.zeros(5), np.zeros(5)
    for _ in range(4000):
        xb, cb, wb = conditions.batch(x, c, w_file, torch.arange(16))
        assert len(torch.unique(cb[:, -1])) <= NUISANCE_GROUPS
        pick = xb[:, 0].long().numpy()
        assert torch.equal(wb, torch.sign(w_file[pick]))
        nu = cb[:, -1:].double().numpy()
        p = b * np.abs(w_file.double().numpy()) * (1 + nu * slopes[:, 0, 0])
        p /= p.sum(1, keepdims=True)
        dev += (pick[:, None] == np.arange(5)).sum(0) - p.sum(0)
        var += (p * (1 - p)).sum(0)
    assert np.all(np.abs(dev) < 5 * np.sqrt(var)), dev / np.sqrt(var)


def test_resampling_without_nuisances_is_a_card_error(tmp_path):
    card = card_from_dict({"name": "plain", "train": {"nuisance_resample": True}})
    with pytest.raises(CardError, match="needs model.nuisance"):
        build_for(card)


def test_the_training_floor_compares_the_runs_own_training_events(zrun):
    """hepgen.validate.systematics.training_floor: the run's training events (its split.npz) against
    themselves score chi2 0 at any nu; against the whole file (validation and test events too) they do
    not, and a nu of 0 gives 0 (no reweighting, both ratios 1)."""
    from hepgen.validate.systematics import training_floor

    run, tmp = zrun
    edges = {"pt_j1": np.linspace(20, 200, 7), "n_jets": np.arange(0.5, 4.0, 1.0)}
    everything = read_events(tmp / "ref.root")
    train_rows = everything.select(np.load(run.path / "split.npz")["train"])
    assert training_floor(run, train_rows, edges, {"a": 1.0}) == {"pt_j1": 0.0, "n_jets": 0.0}
    assert training_floor(run, everything, edges, {"a": 1.0})["pt_j1"] > 0
    assert training_floor(run, everything, edges, {"a": 0.0}) == {"pt_j1": 0.0, "n_jets": 0.0}


@pytest.fixture(scope="module")
def zrun_ends(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nuisance_ends")
    write_events(tmp / "ref.root", zjets_like(1500, seed=3))
    card = _zjets_card(tmp, nuisance=[{**SEED_NUISANCE, "range": [0.0, 1.0], "prior": "ends"}])
    return load_run(train(card, progress=False, after=False, run_dir=tmp / "run")), tmp


def test_prior_ends_picks_the_end_with_the_mixture_weight_of_each_multiplicity(zrun_ends):
    """At a = 0.6 the network gets a = 1 (the end) for a share t m_n / ((1 - t) + t m_n) of the n-jet
    events, t = 0.6, m_n the mean weight w(x; 1) of the n-jet training events (recomputed here from the
    events and the split), and a = 0 otherwise; at a = 0 never. 5 binomial sigma of 30 000 events; a
    mixture that ignored the weights (share t) misses the 3-jet share by over 10 sigma."""
    run, tmp = zrun_ends
    pipe = pipeline(run)
    train_rows = read_events(tmp / "ref.root").select(np.load(run.path / "split.npz")["train"])
    w_end = 1 + event_slopes(run.card, train_rows)[:, 0, 0]
    mean_w = np.array([w_end[train_rows.n_jets == n].mean() for n in (1, 2, 3)])
    seen = []
    hook = pipe.sampler.inner.register_forward_hook(lambda _m, args, _out: seen.append(args[1].clone()))
    noise = pipe.draw_noise(30000, torch.Generator().manual_seed(5))
    try:
        for a in (0.6, 0.0):
            seen.clear()
            with torch.no_grad():
                pipe(setting(run.card.model.nuisance, {"a": a}).fill(noise, pipe.noise_layout))
            cond = seen[-1].numpy()
            assert set(np.unique(cond[:, 3:].round(6)).tolist()) <= {0.0, 1.0}  # the ends' indicators only
            for k in range(3):
                rows = cond[:, k] == 1
                share = cond[rows, 3].mean()
                expect = a * mean_w[k] / ((1 - a) + a * mean_w[k])
                assert abs(share - expect) < 5 * np.sqrt(max(expect * (1 - expect), 1e-9) / rows.sum()), (a, k, share, expect)
        assert abs(0.6 * mean_w[2] / (0.4 + 0.6 * mean_w[2]) - 0.6) > 10 * np.sqrt(0.24 / (cond[:, 2] == 1).sum())
    finally:
        hook.remove()


def test_an_ends_run_exports_the_mixture_and_matches_torch(zrun_ends, tmp_path):
    run, _ = zrun_ends
    out = export(run.path, output=tmp_path / "exp", sofie=False)
    pipe = pipeline(run)
    assert pipe.noise_layout[-5:-3] == ["nuisance", "uniform"]  # nu, then the mixture's uniform
    noise = pipe.draw_noise(400, torch.Generator().manual_seed(9))
    fed = setting(run.card.model.nuisance, {"a": 0.6}).fill(noise, pipe.noise_layout).numpy()
    got = list(OnnxSampler(out).run(fed).values())
    assert event_diff(got, torch_outputs(pipe, {"noise": fed})).max() <= TORCH_RTOL


def test_prior_ends_on_some_nuisances_only_is_a_card_error(tmp_path):
    mixed = [{**SEED_NUISANCE, "range": [0.0, 1.0], "prior": "ends"}, {**SEED_NUISANCE, "name": "b", "range": [0.0, 1.0]}]
    with pytest.raises(CardError, match="every nuisance of the card has it or none"):
        build_for(_zjets_card(tmp_path, nuisance=mixed))


def test_an_ensembles_nominal_and_ratio_pool_its_members(tmp_path):
    """hepgen.validate.systematics on a 2-member ensemble with a nuisance: the nominal sample (draw
    None) is the ensemble's prediction, its members pooled (the first half of the noise rows through
    member 0, the second through member 1, event by event as each member's own pipeline makes them
    from the same rows), not member 0 alone; the pooled ratio at a = 0 is 1 in every bin (the pairing
    of the rows holds per member); the statistical band is the spread over the members."""
    from hepgen.validate import systematics

    write_events(tmp_path / "ref.root", zjets_like(1500, seed=3))
    card = _zjets_card(tmp_path, ensemble={"members": 2, "repulsion": 0.0})
    run = load_run(train(card, progress=False, after=False, run_dir=tmp_path / "run"))
    assert systematics.pooled_draws(run, None) == [0, 1] and systematics.pooled_draws(run, 1) == [1]
    names, events = ["pt_mumu"], 3000
    pooled = systematics.observed_at(run, {"a": 0.7}, names, events, seed=5)["pt_mumu"]
    noise = pipeline(run).draw_noise(events, torch.Generator().manual_seed(5))
    noise = setting(run.card.model.nuisance, {"a": 0.7}).fill(noise, pipeline(run).noise_layout,
                                                              torch.Generator().manual_seed(6))
    for k, rows in enumerate(torch.tensor_split(noise, 2)):
        pipe = pipeline(run, k)
        with torch.no_grad():
            out = pipe(rows)
        sample = run.process.to_events(out)
        keep = run.process.select(tuple(t.double().numpy() for t in out), run.card).keep
        own = np.where(keep, observables.compute(sample, names)["pt_mumu"], np.nan)
        half = pooled[k * events // 2:(k + 1) * events // 2]
        assert np.array_equal(np.isnan(half), np.isnan(own)) and np.allclose(half[~np.isnan(half)], own[~np.isnan(own)])
    member0 = systematics.observed_at(run, {"a": 0.7}, names, events, seed=5, draw=0)["pt_mumu"]
    assert not np.allclose(np.nan_to_num(pooled[events // 2:]), np.nan_to_num(member0[events // 2:]))
    ref = read_events(tmp_path / "ref.root")
    r = systematics.ratio_chi2(run, ref, "pt_mumu", np.linspace(0, 150, 16), {"a": 0.0}, events=2000)
    assert r["chi2"] == pytest.approx(0.0, abs=1e-20) and r["ndf"] > 5
    (band,) = systematics.bands(run, names, {"pt_mumu": np.linspace(0, 150, 16)}, events, draws=2, seed=5)
    assert band.stat.any()
    edges = {"pt_mumu": np.linspace(0, 150, 16)}
    one = systematics.ratio_chi2s(run, ref, edges, {"a": 0.7}, events, seed=5, draw=1)[0]
    own = systematics.paired_ratio(systematics.observed_at(run, {"a": 0.7}, names, events, 5, draw=1)["pt_mumu"],
                                   systematics.observed_at(run, {}, names, events, 5, draw=1)["pt_mumu"], edges["pt_mumu"])[0]
    both = systematics.ratio_chi2s(run, ref, edges, {"a": 0.7}, events, seed=5)[0]
    assert np.allclose(one["gen_ratio"], own, equal_nan=True) and not np.allclose(one["gen_ratio"], both["gen_ratio"], equal_nan=True)


def test_bootstrap_counts_are_poisson_1_per_member_and_fixed_by_the_seed(tmp_path):
    """model.ensemble.bootstrap: [N, K] counts, the same for the same seed (a resumed run's), other
    for another seed and per member; mean 1 and P(0) = 1/e within 5 sigma; None when off."""
    from hepgen.trainingdata import bootstrap_counts

    ens = {"members": 3, "repulsion": 0.0, "bootstrap": True}
    card = _zjets_card(tmp_path, ensemble=ens)
    n = 30000
    counts = bootstrap_counts(card, n)
    assert counts.shape == (n, 3) and counts.dtype == torch.float32
    assert torch.equal(counts, bootstrap_counts(card, n))
    other = card_from_dict({**yaml.safe_load(dump_card(card)), "seed": 5})
    assert not torch.equal(counts, bootstrap_counts(other, n))
    k = counts.double().numpy()
    assert np.abs(k.mean(0) - 1).max() < 5 / np.sqrt(n)  # Poisson(1): variance 1
    p0 = np.exp(-1)
    assert np.abs((k == 0).mean(0) - p0).max() < 5 * np.sqrt(p0 * (1 - p0) / n)
    assert (k[:, 0] != k[:, 1]).mean() > 0.5  # members resample apart (equal with probability ~0.31)
    assert bootstrap_counts(_zjets_card(tmp_path, ensemble={"members": 3}), n) is None


@pytest.mark.parametrize("resample", [False, True])
def test_bootstrap_counts_multiply_each_rows_loss_weight_per_member(tmp_path, resample):
    """TrainingConditions with counts [N, K]: the batch's weight is [B, K], the counts of the rows the
    batch holds (idx, or the resampled picks) times the row's weight: w_file * w(x; nu), or
    sign(w_file) with train.nuisance_resample; without nuisances the counts times w_file."""
    from hepgen.nuisance import TrainingConditions

    card = _zjets_card(tmp_path, nuisance=[{**SEED_NUISANCE, "range": [0.0, 1.0]}])
    if resample:
        card = card_from_dict({**yaml.safe_load(dump_card(card)),
                               "train": {**yaml.safe_load(dump_card(card))["train"], "nuisance_resample": True}})
    n = 50
    slopes = np.random.default_rng(2).uniform(0, 2, (n, 1, 2))
    x, c = torch.arange(float(n))[:, None], torch.zeros(n, 2)
    w_file = torch.linspace(-1.0, 2.0, n)
    counts = torch.from_numpy(np.random.default_rng(3).poisson(1.0, (n, 2))).float()
    idx = torch.tensor([3, 7, 7, 20, 41, 0])
    torch.manual_seed(5)
    xb, cb, wb = TrainingConditions(card, slopes, "cpu", counts=counts).batch(x, c, w_file, idx)
    torch.manual_seed(5)
    _, _, w_plain = TrainingConditions(card, slopes, "cpu").batch(x, c, w_file, idx)
    rows = xb[:, 0].long()
    assert wb.shape == (len(idx), 2)
    assert resample or torch.equal(rows, idx)
    torch.testing.assert_close(wb, w_plain[:, None] * counts[rows])
    none = _zjets_card(tmp_path, nuisance=[])
    _, _, wb = TrainingConditions(none, None, "cpu", counts=counts).batch(x, c, w_file, idx)
    torch.testing.assert_close(wb, w_file[idx, None] * counts[idx])
    _, _, wb = TrainingConditions(none, None, "cpu", counts=counts).batch(x, c, None, idx)
    assert torch.equal(wb, counts[idx])


def test_the_systematics_benchmark_refuses_each_draw_without_draws(tmp_path):
    """benchmarks/systematics.py --each-draw checks each of --draws K draws: without --draws it is a
    usage error (exit 2, one line naming --draws) before the run is loaded or anything is written."""
    run = tmp_path / "run"
    run.mkdir()
    r = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "benchmarks" / "systematics.py"),
                        str(run), "--each-draw", "-o", str(tmp_path / "out")], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].endswith("--each-draw checks each of the --draws draws: give --draws K "
                                                       "(an ensemble: its members)")
    assert not (tmp_path / "out").exists() and not any(run.iterdir())
