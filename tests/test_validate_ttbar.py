"""Validation of dileptonic tt̄ and of a map from a source sample (Direct Diffusion).

Samples come from a numpy decay generator (tests/ttbar_decays.py) whose top and W masses are
known per event: the observables computed from the GenPart record must give them back; the
classifier must not tell two samples of one density apart and must tell fixed-mass from
Breit-Wigner tops; the report for a process without jet multiplicities runs through the CLI
with a source sample (AUC of both side by side, migration plots, acceptance numbers); and the
acceptance's tail counting is checked on constructed histograms.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from hepgen import kinematics as kin
from hepgen import observables, processes
from hepgen.cli import main
from hepgen.dilepton import to_sample
from hepgen.errors import CardError, InputError
from hepgen.io.root import write_events
from hepgen.validate import acceptance, histograms, mapping
from hepgen.validate.classifier import two_sample_test
from hepgen.validate.histograms import Band, Binned
from hepgen.validate.inputs import Generated
from hepgen.validate.obsset import load_observable_set

from ttbar_decays import ttbar_events

pytestmark = pytest.mark.usefixtures("one_thread")
TTBAR_YAML = Path(__file__).resolve().parents[1] / "validation" / "ttbar.yaml"


def test_masses_from_the_genpart_record_are_the_generated_ones():
    d = ttbar_events(2000, 1)
    v = observables.compute(d.sample, ["m_t", "m_tbar", "m_Wp", "m_Wm", "dm_t", "dm_Wm", "m_tt", "pt_tt"])
    for name, truth in (("m_t", "t"), ("m_tbar", "tbar"), ("m_Wp", "Wp"), ("m_Wm", "Wm")):
        assert np.max(np.abs(v[name] - d.masses[truth])) < 1e-9, name
    assert np.max(np.abs(v["dm_t"] - (d.masses["t"] - kin.TOP_MASS) / kin.TOP_WIDTH)) < 1e-9
    assert np.max(np.abs(v["dm_Wm"] - (d.masses["Wm"] - kin.W_MASS) / kin.W_WIDTH)) < 1e-9
    # m_tt is at least the sum of the top masses; the generator's masses span the Breit-Wigner
    assert np.all(v["m_tt"] >= d.masses["t"] + d.masses["tbar"] - 1e-9)
    assert np.abs(v["dm_t"]).max() > 5 and np.all(np.abs(v["dm_t"]) <= 20 + 1e-9)
    # the record's particle order does not matter: the truth assignment is by PDG id
    p = np.stack([np.column_stack([d.sample["GenPart"][f][:, i].to_numpy() for f in ("pt", "eta", "phi", "mass")])
                  for i in range(6)], axis=1)
    pdg = np.stack([d.sample["GenPart"]["pdgId"][:, i].to_numpy() for i in range(6)], axis=1)
    order = [4, 0, 5, 2, 1, 3]
    shuffled = to_sample(p[:, order], pdg[:, order])
    assert np.array_equal(observables.compute(shuffled, ["m_t"])["m_t"], v["m_t"])


def test_on_shell_tops_sit_on_the_pole():
    d = ttbar_events(500, 2, breit_wigner=False)
    v = observables.compute(d.sample, ["m_t", "m_Wp", "dm_tbar"])
    assert np.max(np.abs(v["m_t"] - kin.TOP_MASS)) < 1e-9 and np.max(np.abs(v["m_Wp"] - kin.W_MASS)) < 1e-9
    assert np.max(np.abs(v["dm_tbar"])) < 1e-8


def test_the_ttbar_observable_set_loads_strictly(tmp_path):
    obs = load_observable_set(TTBAR_YAML)
    assert obs.classifier_objects == "none" and obs.acceptance.core == ("m_t", "m_tbar", "m_Wp", "m_Wm")
    assert obs.acceptance.tails == ("dm_t", "dm_tbar", "dm_Wp", "dm_Wm") and "m_tt" in obs.acceptance.bulk
    core = obs.hist("m_t").range
    assert abs(core[0] - (kin.TOP_MASS - 5 * kin.TOP_WIDTH)) < 1e-3 and abs(core[1] - (kin.TOP_MASS + 5 * kin.TOP_WIDTH)) < 1e-3
    w = obs.hist("m_Wp").range
    assert abs(w[0] - (kin.W_MASS - 5 * kin.W_WIDTH)) < 1e-3 and obs.hist("dm_t").range == (-20.0, 20.0)
    sample = ttbar_events(300, 3).sample
    names = list(dict.fromkeys(obs.names() + list(obs.classifier_extra) + list(obs.extreme)))
    for name, v in observables.compute(sample, names).items():
        assert v.shape == (300,) and np.isfinite(v).all(), name
    text = TTBAR_YAML.read_text()
    for bad, match in ((text.replace("core_width: 5", "core_widht: 5"), "unknown key 'acceptance.core_widht'"),
                       (text.replace("migration: [m_t,", "migration: [m_top,"), "unknown observable 'm_top'"),
                       (text.replace("migration: [m_t,", "migration: [pt_nu,"), "'pt_nu' has no histogram"),
                       (text.replace("objects: none", "objects: partons"), "classifier.objects must be one of")):
        (tmp_path / "bad.yaml").write_text(bad)
        with pytest.raises(CardError, match=match):
            load_observable_set(tmp_path / "bad.yaml")


def _auc(a, b, epochs: int):
    obs = load_observable_set(TTBAR_YAML)  # the shipped classifier features
    labels = (np.zeros(len(a), np.int64), np.zeros(len(b), np.int64))
    return two_sample_test(a, b, multiplicities=(0,), labels=labels, objects="none", extra=obs.classifier_extra,
                           pairs=False, runs=1, folds=2, epochs=epochs, seed=1).per_multiplicity[0]


def test_classifier_cannot_tell_one_density_apart_and_tells_fixed_from_breit_wigner_tops():
    n = 2000
    same = _auc(ttbar_events(n, 10).sample, ttbar_events(n, 11).sample, epochs=8)
    # two samples of one density: the out-of-fold AUC is 1/2 within 5 null widths (about 0.045)
    assert abs(same.auc - 0.5) < 5 * same.null_sigma
    # on-shell masses are a spike inside the Breit-Wigner (measured here: 0.995 at 2500 events)
    shifted = _auc(ttbar_events(n, 10).sample, ttbar_events(n, 12, breit_wigner=False).sample, epochs=30)
    assert shifted.auc > 0.9


def test_migration_of_the_identity_map_is_zero_and_pairs_follow_the_draws():
    d = ttbar_events(400, 4)
    v = observables.compute(d.sample, ["m_t"])["m_t"]
    r = mapping.migration(v, v.copy())
    assert r["events"] == 400 and r["mean"] == 0 and r["std"] == 0 and r["q05"] == 0 and r["q95"] == 0
    two_draws = Generated(d.sample, np.repeat([0, 1], 200), ())
    src = d.sample.select(np.arange(200))
    assert np.array_equal(mapping.pair_with_source(src, two_draws), np.tile(np.arange(200), 2))
    assert np.array_equal(mapping.pair_with_source(d.sample, Generated(d.sample, None, ())), np.arange(400))
    with pytest.raises(InputError, match="300 source events, but the mapped sample has 400"):
        mapping.pair_with_source(d.sample.select(np.arange(300)), Generated(d.sample, None, ()))
    # a file that names its source events pairs by them (gaps: images the selection dropped)
    named = replace(d.sample.select(np.arange(150)), scalars={"source_event": np.arange(150) * 2})
    source = d.sample.select(np.arange(300))
    assert np.array_equal(mapping.pair_with_source(source, Generated(named, None, ())), np.arange(150) * 2)
    with pytest.raises(InputError, match="names source events up to 298, but the source has 200"):
        mapping.pair_with_source(src, Generated(named, None, ()))


def test_tail_bins_and_band_coverage_count_right():
    edges = np.linspace(-20, 20, 41)  # one bin per width; |centre| > 5 in 30 bins
    ref = Binned(edges, np.full(40, 1.0), np.full(40, 0.01), np.full(40, 1000))
    gen_density = np.full(40, 1.05)  # every bin within 10 % ...
    gen_density[[0, 1, 2, 39]] = 1.5  # ... but four tail bins 50 % off
    gen = Binned(edges, gen_density, np.full(40, 0.01), np.full(40, 1000))
    assert acceptance.tails(ref, gen, None, core_width=5) == {
        "tail_bins": 30, "within_tolerance": 26, "covered_by_band": None, "band_coverage": None,
        "fraction_ok": 26 / 30, "max_abs_dev": pytest.approx(0.5), "ok": False}
    mean = np.full(40, 1.3)  # the band misses the reference by 0.3 ...
    std = np.full(40, 0.1)
    std[[0, 1, 2, 39, 5, 20]] = 0.4  # ... except in these bins (|1.3 - 1| <= sqrt(0.4^2 + 0.01^2)); 20 is in the core
    r = acceptance.tails(ref, gen, Band(mean, std, np.zeros((2, 40))), core_width=5)
    assert (r["tail_bins"], r["within_tolerance"], r["covered_by_band"]) == (30, 26, 5)
    assert r["band_coverage"] == pytest.approx(5 / 30) and r["fraction_ok"] == pytest.approx(1.0) and r["ok"]
    # bins without reference events are no tail bins
    empty = Binned(edges, np.where(np.arange(40) < 10, 0.0, 1.0), np.full(40, 0.01), np.full(40, 1000))
    assert acceptance.tails(empty, gen, None, core_width=5)["tail_bins"] == 20


def _breit_wigner(rng, n: int) -> np.ndarray:
    """(m - M) / Gamma of a Breit-Wigner: a Cauchy of half width 1/2."""
    return 0.5 * np.tan(np.pi * (rng.uniform(size=n) - 0.5))


def test_bulk_and_tails_are_judged_within_statistics():
    """Two independent samples of one line shape (100k reference, 400k generated, like the tt̄
    acceptance) pass: no bin exceeds 3 % (bulk) or 10 % (tails) by more than STAT_Z errors, though
    bins with 100 events fluctuate by 10 % and more. A generator 10 % high on one side of the peak,
    or 60 % high in the tails beyond 8 widths, fails."""
    rng = np.random.default_rng(3)
    edges = np.linspace(-20, 20, 41)
    ref_x = _breit_wigner(rng, 100_000)
    ref = histograms.binned(ref_x, edges)
    gen_x = _breit_wigner(rng, 400_000)
    same = histograms.binned(gen_x, edges)
    assert acceptance.bulk(ref, same, 100)["ok"] and acceptance.tails(ref, same, None, core_width=5)["ok"]
    assert acceptance.tails(ref, same, None, core_width=5)["max_abs_dev"] > 0.1  # statistics alone
    high = np.where((gen_x > 0) & (gen_x < 2), 1.10, 1.0)
    assert not acceptance.bulk(ref, histograms.binned(gen_x, edges, high), 100)["ok"]
    tails = np.where(np.abs(gen_x) > 8, 1.6, 1.0)
    assert not acceptance.tails(ref, histograms.binned(gen_x, edges, tails), None, core_width=5)["ok"]


@pytest.fixture
def ttbar_like_process():
    class TTbarLike:  # what validation asks of a process without jet multiplicities
        name, settings_class, writes_events, observables = "ttbar_validation_test", None, True, "ttbar"

    processes.register(TTbarLike())
    yield
    processes.unregister("ttbar_validation_test")


def _cli(args, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


def test_report_of_a_map_shows_both_aucs_the_migration_and_the_acceptance(ttbar_like_process, tmp_path, capsys):
    n = 2000
    write_events(tmp_path / "ref.root", ttbar_events(n, 20).sample)
    write_events(tmp_path / "onshell.root", ttbar_events(n, 21, breit_wigner=False).sample)
    write_events(tmp_path / "mapped.root", ttbar_events(n, 22).sample)  # a perfect map, in distribution
    obs = yaml.safe_load(TTBAR_YAML.read_text())
    obs["sets"] = {"tops": {k: obs["sets"]["tops"][k] for k in ("m_t", "m_tbar", "m_tt")},
                   "tails": obs["sets"]["top_tails"], "Ws": {k: obs["sets"]["Ws"][k] for k in ("m_Wp", "m_Wm")},
                   "W_tails": obs["sets"]["W_tails"]}
    obs["maps"], obs["migration"] = {}, ["m_t", "m_tt"]
    obs["classifier"]["extra"] = ["bw_t", "bw_tbar", "bw_Wp", "bw_Wm", "m_tt", "pt_lp", "eta_lp"]  # a quick subset
    (tmp_path / "obs.yaml").write_text(yaml.safe_dump(obs))
    (tmp_path / "card.yaml").write_text(yaml.safe_dump({"process": {"name": "ttbar_validation_test"}, "validate": {
        "classifier_epochs": 10, "classifier_runs": 1, "classifier_folds": 2, "min_bin_events": 20}}))
    common = ["--reference", tmp_path / "ref.root", "--card", tmp_path / "card.yaml", "--observables",
              tmp_path / "obs.yaml", "--no-progress"]
    rc, _, err = _cli(["validate", tmp_path / "mapped.root", "--source", tmp_path / "onshell.root",
                       "-o", tmp_path / "report", *common], capsys)
    assert rc == 0, err
    m = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert set(m["classifier"]["per_multiplicity"]) == {"all"} and m["multiplicity"]["reference"] == {"all": 1.0, "other": 0.0}
    assert m["cuts"] == {"reference": {}, "generated": {}}
    mapped_auc, source_auc = m["classifier"]["auc_total"], m["source"]["classifier"]["auc_total"]
    assert abs(mapped_auc - 0.5) < 5 * m["classifier"]["null_sigma_total"] and source_auc > 0.8
    assert m["source"]["migration"]["m_t"]["events"] == n and m["source"]["migration"]["m_t"]["std"] > kin.TOP_WIDTH / 2
    a = m["acceptance"]
    assert set(a["core"]) == {"m_t", "m_tbar", "m_Wp", "m_Wm"} and set(a["bulk"]) == {"m_tt"}
    assert a["tails"]["dm_t"]["tail_bins"] > 10 and a["tail_band_coverage"] is None  # one draw: no band
    md = (tmp_path / "report" / "metrics.md").read_text()
    assert "| category | mapped | source | null σ |" in md and "## Acceptance" in md
    for f in ("migration/m_t.png", "migration/m_tt.png", "classifier/logw_all.png", "plots/tails/dm_t.png"):
        assert (tmp_path / "report" / f).read_bytes()[:4] == b"\x89PNG", f

    # a source that the mapped sample is no map of: one line, exit 2, no report
    write_events(tmp_path / "short.root", ttbar_events(n - 1, 23, breit_wigner=False).sample)
    rc, _, err = _cli(["validate", tmp_path / "mapped.root", "--source", tmp_path / "short.root",
                       "-o", tmp_path / "bad", *common], capsys)
    assert rc == 2 and "1999 source events, but the mapped sample has 2000" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()
