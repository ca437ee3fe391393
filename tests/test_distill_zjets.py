"""A tiny Z+jets CFM distilled into a one-step student and a reflow run: the teacher pairs carry the
training data's multiplicities, and the new runs generate and export like any other run (ONNX
Runtime reproduces torch to 1e-4, the SOFIE C++ generator reproduces ONNX Runtime to 1e-5)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hepgen.cards import card_from_dict
from hepgen.distill import distill
from hepgen.export.bundle import TORCH_RTOL, event_diff, torch_outputs
from hepgen.export.runtime import OnnxSampler
from hepgen.io.root import read_events, write_events
from hepgen.pipeline import pipeline
from hepgen.runs import load_run
from hepgen.teacher import teacher_conditions, teacher_pairs, teacher_run
from hepgen.train import train
from tests.toolchain import needs_cpp, sofie_outputs
from tests.zjets_like import zjets_like

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
SOFIE_RTOL = 1e-5


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("distill_zjets")
    write_events(tmp / "ref.root", zjets_like(1500, seed=11))
    card = card_from_dict({
        "name": "zj", "seed": 2, "data": {"path": str(tmp / "ref.root"), "split": [0.8, 0.1, 0.1]},
        "model": {"family": "cfm", "network": {"hidden": 16, "layers": 1}, "cfm": {"solver": "rk4", "steps": 3}},
        "train": {"epochs": 1, "batch_size": 256, "threads": 1, "runs_dir": str(tmp / "runs")},
    })
    teacher = train(card, progress=False, after=False, run_dir=tmp / "teacher")
    made = {method: distill(teacher, method, pairs=1500, overrides=["train.epochs=1"], run_dir=tmp / method,
                            progress=False, after=False) for method in ("student", "reflow")}
    return tmp, teacher, made


def test_teacher_pairs_carry_the_training_multiplicities_and_leave_absent_jets_at_their_noise(runs):
    tmp, teacher, _ = runs
    t = teacher_run(teacher)
    n = 4000
    rows, c = teacher_pairs(t, n, seed=4, solver="rk4", steps=3, progress=False)
    with np.load(teacher / "split.npz") as split:
        n_jets = read_events(tmp / "ref.root").multiplicity("Jet")[split["train"]]
    want = np.array([np.mean(n_jets == k) for k in (1, 2, 3)])
    got = c.double().mean(0).numpy()
    # resampled with replacement from the training events: binomial error sqrt(p (1 - p) / n) <= 0.008; 5 sigma
    assert np.all(np.abs(got - want) <= 5 * np.sqrt(want * (1 - want) / n)), (got, want)
    x, z = rows[:, :t.coords.dim], rows[:, t.coords.dim:]
    absent = ~(c @ t.model.field.active).bool()  # model.cfm.absent frozen: the ODE leaves these columns alone
    assert absent.any() and torch.equal(x[absent], z[absent])
    assert not torch.equal(x[~absent], z[~absent])


def test_uniform_pair_conditions_give_every_multiplicity_a_third(runs):
    """distill.conditions: uniform draws the multiplicities 1/3 each (binomial, 5 sigma), where the
    training data hold fewer 3-jet events."""
    tmp, teacher, _ = runs
    t = teacher_run(teacher)
    n = 4000
    rows, c = teacher_pairs(t, n, seed=4, solver="rk4", steps=3, progress=False, conditions="uniform")
    with np.load(teacher / "split.npz") as split:
        n_jets = read_events(tmp / "ref.root").multiplicity("Jet")[split["train"]]
    assert np.mean(n_jets == 3) < 0.3  # the data's fraction is not already a third
    got = c.double().mean(0).numpy()
    assert np.all(np.abs(got - 1 / 3) <= 5 * np.sqrt(2 / 9 / n)), got
    assert torch.equal(c.sum(-1), torch.ones(n))


def test_uniform_pair_conditions_keep_a_drawn_mass_condition_per_multiplicity(runs, tmp_path):
    """With mass_sampling marginal the condition is the one-hot multiplicity plus the event's dimuon
    mass, so nearly every training event's condition is distinct: uniform must still mean a third per
    multiplicity (not uniform over the distinct rows, which is the data's fractions again), and each
    multiplicity's mass column must keep that multiplicity's distribution (mean within 5 sigma)."""
    tmp, _, _ = runs
    card = card_from_dict({
        "name": "zjm", "seed": 2, "data": {"path": str(tmp / "ref.root"), "split": [0.8, 0.1, 0.1]},
        "process": {"settings": {"mass_sampling": "marginal"}},
        "model": {"family": "cfm", "network": {"hidden": 16, "layers": 1}, "cfm": {"solver": "rk4", "steps": 3}},
        "train": {"epochs": 1, "batch_size": 256, "threads": 1, "validate": False, "runs_dir": str(tmp_path)},
    })
    t = teacher_run(train(card, progress=False, after=False, run_dir=tmp_path / "teacher"))
    n = 6000
    c = teacher_conditions(t, n, torch.Generator().manual_seed(5), lambda _: None, "uniform").double()
    assert c.shape[1] == 4
    frac = c[:, :3].mean(0).numpy()
    assert np.all(np.abs(frac - 1 / 3) <= 5 * np.sqrt(2 / 9 / n)), frac
    data = teacher_conditions(t, 200_000, torch.Generator().manual_seed(6), lambda _: None, "data").double()
    for k in range(3):
        want, got = data[data[:, k] == 1, 3], c[c[:, k] == 1, 3]
        assert abs(got.mean() - want.mean()) <= 5 * want.std() / np.sqrt(len(got)), (k, got.mean(), want.mean())


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")
@pytest.mark.filterwarnings("ignore:.*axis name.*:UserWarning")
@pytest.mark.parametrize("method", ["student", "reflow"])
def test_the_distilled_run_exports_and_onnx_runtime_matches_torch(runs, method, tmp_path):
    _, _, made = runs
    out = tmp_path / "export"
    cli = subprocess.run([sys.executable, "-m", "hepgen", "export", str(made[method]), "-o", str(out)],
                         capture_output=True, text=True, cwd=REPO)
    assert cli.returncode == 0, cli.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    run = load_run(made[method])
    assert manifest["generator"]["family"] == run.family
    pipe = pipeline(run)
    noise = pipe.draw_noise(400, torch.Generator().manual_seed(9))
    sampler = OnnxSampler(out)
    got = list(sampler.run(noise.numpy(), draw=0).values())
    assert event_diff(got, torch_outputs(pipe, {"noise": noise.numpy()})).max() <= TORCH_RTOL
    if method == "reflow" or needs_cpp.args[0]:
        return  # SOFIE once (the reflow graph is the CFM's, tested in tests/test_export_run.py)
    noise = sampler.draw_noise(300, seed=3)
    got = sofie_outputs(out, noise, tmp_path, (5, 4))
    assert event_diff([got[0]], [sampler.run(noise, draw=0)["momenta"]]).max() <= SOFIE_RTOL


def test_the_distilled_runs_generate_and_record_their_sampler(runs, tmp_path):
    _, _, made = runs
    for method, solver in (("student", None), ("reflow", "euler/2")):
        cli = subprocess.run([sys.executable, "-m", "hepgen", "generate", str(made[method]), "-n", "300",
                              "-o", str(tmp_path / f"{method}.root"), "--no-progress"], capture_output=True, text=True,
                             cwd=REPO)
        assert cli.returncode == 0, cli.stderr
        events = read_events(tmp_path / f"{method}.root")
        assert 0 < len(events) <= 300 and events.info["model_family"] == load_run(made[method]).family
        assert events.info.get("solver") == solver
    bad = subprocess.run([sys.executable, "-m", "hepgen", "generate", str(made["student"]), "-n", "10", "--steps", "2",
                          "-o", str(tmp_path / "x.root")], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "no settings" in bad.stderr and not (tmp_path / "x.root").exists()
