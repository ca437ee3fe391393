"""The tt̄ process end to end on real Pythia samples: every family trains and writes valid
decay records, the forward CFM learns the top line shape, DiDi maps on-shell events onto the
off-shell line shapes deterministically, the exports match torch in ONNX Runtime and SOFIE C++,
an LHE sample trains through the same card, and a wrong source is one error line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hepgen import dilepton
from hepgen import kinematics as kin
from hepgen.cards import card_from_dict
from hepgen.cli import main
from hepgen.errors import CardError
from hepgen.events import EventSample, make_collection
from hepgen.export.bundle import TORCH_RTOL, event_diff, torch_outputs
from hepgen.export.runtime import OnnxSampler
from hepgen.io.lhe import write_lhe
from hepgen.io.root import read_events, write_events
from hepgen.runs import load_run
from hepgen.simulate import produce
from hepgen.sources import complete, read_source
from hepgen.train import train
from tests.toolchain import needs_cpp, sofie_outputs

pytestmark = pytest.mark.usefixtures("one_thread")

SOFIE_RTOL = 1e-5
EVENTS = 3000


def _card(tmp: Path, name: str, widths: str = "breit_wigner", **sections) -> dict:
    card = {
        "name": name, "seed": 5,
        "process": {"name": "ttbar", "settings": {"widths": widths}},
        "simulate": {"events": EVENTS, "output": str(tmp / f"{widths}.root"), "jobs": 1},
        "data": {"path": str(tmp / f"{widths}.root")},
        "model": {"family": "cfm", "network": {"hidden": 64, "layers": 2}, "cfm": {"steps": 4}},
        "train": {"epochs": 2, "batch_size": 256, "runs_dir": str(tmp / "runs"), "validate": False, "threads": 1},
        "generate": {"events": 1000},
        "validate": {"reference_events": 0},
    }
    for key, value in sections.items():
        card[key] = {**card.get(key, {}), **value}
    return card


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ttbar")
    for widths in ("narrow", "breit_wigner"):
        produce(card_from_dict(_card(tmp, "sim", widths)), quiet=True)
    return tmp


def _hepgen(*argv) -> int:
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in argv])
    return exit_.value.code


def _top_masses(p: np.ndarray) -> np.ndarray:
    return kin.invariant_mass(*(tuple(p[:, i, k] for k in range(4)) for i in dilepton.TOP))


def _generate(run_path: Path, out: Path, *extra) -> Path:
    assert _hepgen("generate", run_path, "-n", 1000, "-o", out, "--no-progress", *extra) == 0
    return out


@pytest.mark.parametrize("family", ["cfm", "ddpm", "jetgpt", "inn", "vae", "gan"])
def test_every_family_trains_on_ttbar_and_writes_dilepton_decay_records(family, samples, tmp_path):
    """One short training per family: the generated file holds exactly the six decay products
    per event with their PDG ids and species masses (b 4.8 GeV, leptons by flavour, neutrinos 0)."""
    card = _card(samples, f"fam_{family}", model={"family": family}, train={"epochs": 1, "runs_dir": str(tmp_path)})
    run = train(card_from_dict(card), progress=False, after=False)
    p, pdg = dilepton.assign(read_events(_generate(run, tmp_path / "gen.root")))
    assert len(p) > 900 and np.isfinite(p).all()
    assert (p[:, [0, 3], 3] == np.float32(4.8)).all() and (p[:, [2, 5], 3] == 0).all()
    lepton_mass = np.where(np.abs(pdg[:, [1, 4]]) == 13, np.float32(0.10566), np.float32(0.000511))
    assert np.allclose(p[:, [1, 4], 3], lepton_mass, rtol=1e-4)
    # the flavours follow the training sample's (binomial, 5 sigma over 1000 events)
    train_pdg = dilepton.assign(read_events(samples / "breit_wigner.root"))[1]
    for col in (1, 4):
        f_train, f_gen = (np.abs(train_pdg[:, col]) == 13).mean(), (np.abs(pdg[:, col]) == 13).mean()
        assert abs(f_gen - f_train) < 5 * np.sqrt(0.25 / len(pdg))


def test_the_forward_cfm_learns_the_top_line_shape(samples, tmp_path):
    """20 epochs on 2400 events: the generated m_t peaks at 173 GeV (median within 0.3 GeV) with
    a width within 35 % of the training sample's (interquartile range; Pythia: about Gamma_t)."""
    card = _card(samples, "fwd", train={"epochs": 20, "runs_dir": str(tmp_path)})
    run = train(card_from_dict(card), progress=False, after=False)
    gen = _top_masses(dilepton.assign(read_events(_generate(run, tmp_path / "gen.root")))[0])
    ref = _top_masses(dilepton.assign(read_events(samples / "breit_wigner.root"))[0])
    iqr = lambda m: np.subtract(*np.quantile(m, [0.75, 0.25]))
    assert abs(np.median(gen) - kin.TOP_MASS) < 0.3
    assert abs(iqr(gen) / iqr(ref) - 1) < 0.35


@pytest.fixture(scope="module")
def didi_run(samples, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("didi")
    # line_shape fitted: the exports below carry the fitted tail map (hepgen/coords/lineshape.py) too
    card = _card(samples, "didi", data={"source": str(samples / "narrow.root")},
                 process={"name": "ttbar", "settings": {"widths": "breit_wigner", "line_shape": "fitted"}},
                 model={"family": "didi", "bayes": {"enabled": True, "draws": 2, "kl_scale": 0.01}},
                 train={"epochs": 15, "runs_dir": str(tmp)})
    return load_run(train(card_from_dict(card), progress=False, after=False))


def test_didi_maps_onshell_events_onto_spread_line_shapes_deterministically(didi_run, samples, tmp_path):
    """The four on-shell mass columns are filled with noise (and the tops' azimuth gap, pi in
    every event of both samples without initial-state radiation); the mapped events keep every
    particle's species and the event's azimuth (of the source event it names), the top masses spread (IQR > 0.5 GeV, the
    source has none) around 173 GeV, and the same source and seed give the same file."""
    assert didi_run.model.fill.tolist() == [1.0 if i in (2, 3, 10, 11, 12) else 0.0 for i in range(17)]
    src_p, src_pdg = dilepton.assign(read_events(samples / "narrow.root"))
    out = _generate(didi_run.path, tmp_path / "a.root", "--source", samples / "narrow.root")
    again = _generate(didi_run.path, tmp_path / "b.root", "--source", samples / "narrow.root")
    p, pdg = dilepton.assign(read_events(out))
    assert np.array_equal(p, dilepton.assign(read_events(again))[0])
    assert len(p) >= 990
    # each event names its source event (source_event); images beyond the beams leave gaps
    index = read_events(out).scalars["source_event"]
    assert len(index) == len(p) and np.all(np.diff(index) > 0) and index.max() < len(src_p)
    assert (pdg == src_pdg[index]).all()
    top_phi = lambda q: np.arctan2(*(sum(q[:, i, 0] * f(q[:, i, 2]) for i in dilepton.TOP) for f in (np.sin, np.cos)))
    assert np.max(np.abs(kin.wrap_phi(top_phi(p) - top_phi(src_p[index])))) < 1e-4
    m = _top_masses(p)
    assert np.subtract(*np.quantile(m, [0.75, 0.25])) > 0.5 and abs(np.median(m) - kin.TOP_MASS) < 1.0
    assert np.ptp(_top_masses(src_p)) < 1e-2


def test_a_wrong_source_is_one_line_and_no_file(didi_run, samples, tmp_path, capsys):
    """A source with a particle missing (5 of 6) or of other content is refused before any file."""
    p, pdg = dilepton.assign(read_events(samples / "narrow.root"))
    p5, pdg5 = p[:50, :5].reshape(-1, 4), pdg[:50, :5].reshape(-1)
    coll = make_collection(*(p5[:, k] for k in range(4)), counts=np.full(50, 5), pdgId=pdg5.astype(np.int32))
    bad = tmp_path / "five.root"
    write_events(bad, EventSample.build({"GenPart": coll}))
    out = tmp_path / "mapped.root"
    assert _hepgen("generate", didi_run.path, "--source", bad, "-o", out, "--no-progress") == 2
    err = capsys.readouterr().err.strip()
    assert "5 particles" in err and len(err.splitlines()) == 1 and not out.exists()


@pytest.fixture(scope="module")
def didi_export(didi_run, samples, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "exp"
    assert _hepgen("export", didi_run.path, "-o", out, "--bayes-samples", 2, "--source", samples / "narrow.root") == 0
    rows = read_source(samples / "narrow.root", didi_run.process, didi_run.card, max_events=300).x
    x = complete(rows, didi_run.pipeline().noise_layout, torch.Generator().manual_seed(3)).numpy()
    ort = OnnxSampler(out)
    return out, x, [ort.run(x, draw=k) for k in range(2)]


def test_the_didi_export_runs_the_same_map_in_onnx_runtime(didi_run, didi_export):
    """The exported map (source events and fill noise in): ONNX Runtime equals torch to 1e-4
    for every Bayesian weight file, and the draws differ."""
    out, x, runs = didi_export
    for k in range(2):
        assert event_diff(list(runs[k].values()), torch_outputs(didi_run.pipeline(k), {"source": x})).max() <= TORCH_RTOL
    assert np.abs(runs[0]["momenta"] - runs[1]["momenta"]).max() > 1e-3


@needs_cpp
def test_sofie_cpp_runs_the_same_ttbar_map(didi_export, tmp_path):
    """SOFIE's generated C++ equals ONNX Runtime on the same inputs to 2e-5 in every event and
    1e-6 at the median, per weight file (measured max 6e-6, median 4e-7; with the weights of the
    fused Adam update one event of 300 at 1.1e-5). The decay coordinates boost by rapidity shifts
    and take masses from pairwise products, so that the two backends' float32 rounding is not
    amplified in boosted tops (with E^2 - p^2 and Lorentz-matrix boosts: max 5e-5)."""
    out, x, runs = didi_export
    p = sofie_outputs(out, x, tmp_path, (6, 4))
    for k in range(len(runs)):
        diff = event_diff([p[k]], [runs[k]["momenta"]])
        assert diff.max() <= 2 * SOFIE_RTOL and np.median(diff) <= 0.1 * SOFIE_RTOL


def test_an_lhe_sample_trains_through_the_same_card(samples, tmp_path):
    """The off-shell sample written as LHE (the parton-level tt̄ record) reads back into the same
    GenPart events as the ROOT file (to float32 precision) and trains with data.format lhe."""
    sample = read_events(samples / "breit_wigner.root").select(np.arange(1000))
    lhe = tmp_path / "tt.lhe"
    write_lhe(lhe, sample)
    card = _card(samples, "lhe", data={"path": str(lhe), "format": "lhe"}, train={"epochs": 1, "runs_dir": str(tmp_path)})
    c = card_from_dict(card)
    run = load_run(train(c, progress=False, after=False))
    a = dilepton.assign(run.process.load_data(c, lambda m: None))[0]
    b = dilepton.assign(sample)[0]
    assert np.allclose(a, b, rtol=1e-6, atol=1e-5)
    # the suffix and data.format must agree (one rule for every process): one line, no run folder
    wrong = _card(samples, "lhe_as_root", data={"path": str(lhe), "format": "root"},
                  train={"epochs": 1, "runs_dir": str(tmp_path / "wrong")})
    with pytest.raises(CardError, match=r"its name says LHE, but data.format is root \(set data.format: lhe\)"):
        train(card_from_dict(wrong), progress=False, after=False)
    assert not (tmp_path / "wrong").exists()
