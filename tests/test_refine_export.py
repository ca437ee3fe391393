"""A refined Z+jets run generates and exports like any other: ONE ONNX graph, refiner then generator.

A tiny CFM base (1 epoch on 1500 Z+jets-like events, hidden 16, Euler x 2) is refined with a tiny
latent CFM (hidden 16, Euler x 2) on 1500 latent vectors; the export is checked against the torch
pipeline for the same noise (ONNX Runtime vs torch: 1e-4 relative, absolute below 1, as in
test_export_run.py), and ``hepgen generate`` writes a ROOT file that records the refiner.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hepgen.cards import card_from_dict, load_card
from hepgen.export.bundle import TORCH_RTOL, event_diff, torch_outputs
from hepgen.export.runtime import OnnxSampler
from hepgen.io.root import read_events, write_events
from hepgen.pipeline import pipeline
from hepgen.refine import refine
from hepgen.runs import load_run
from hepgen.train import train
from tests.zjets_like import zjets_like

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
TINY = ["refine.events=1500", "refine.hidden=16", "refine.layers=1", "refine.solver=euler", "refine.steps=2",
        "train.epochs=2", "validate.classifier_runs=1", "validate.classifier_epochs=5", "validate.classifier_folds=2"]


@pytest.fixture(scope="module")
def refined(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("refine_export")
    write_events(tmp / "ref.root", zjets_like(1500, seed=11))
    card = card_from_dict({
        "name": "zj", "seed": 2,
        "data": {"path": str(tmp / "ref.root"), "split": [0.8, 0.1, 0.1]},
        "model": {"family": "cfm", "network": {"hidden": 16, "layers": 1}, "cfm": {"solver": "euler", "steps": 2}},
        "train": {"epochs": 1, "batch_size": 256, "runs_dir": str(tmp / "runs"), "validate": False},
    })
    base = train(card, progress=False, after=False, run_dir=tmp / "base")
    path = refine(base, overrides=TINY, run_dir=tmp / "refined", progress=False, after=False)
    return tmp, base, path


def test_export_is_one_graph_of_refiner_then_generator(refined):
    tmp, base, path = refined
    out = tmp / "export"
    cli = subprocess.run([sys.executable, "-m", "hepgen", "export", str(path), "-o", str(out)],
                         capture_output=True, text=True, cwd=REPO)
    assert cli.returncode == 0, cli.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generator"]["refiner"] == "laser cfm euler/2" and manifest["generator"]["family"] == "cfm"
    assert manifest["sofie"]["header"]  # the SOFIE C++ header was written for the same graph
    assert load_card(out / "card.yaml").refine.base == str(base.resolve())
    run = load_run(path)
    pipe = pipeline(run)
    noise = pipe.draw_noise(400, torch.Generator().manual_seed(9))
    got = list(OnnxSampler(out).run(noise.numpy()).values())
    assert event_diff(got, torch_outputs(pipe, {"noise": noise.numpy()})).max() <= TORCH_RTOL
    # the graph is not the base's: the refiner changed the events for the same noise
    unrefined = torch_outputs(pipeline(load_run(base)), {"noise": noise.numpy()})
    assert event_diff(got, unrefined).max() > 1e-2


def test_an_inn_refiner_exports_as_one_graph_too(refined):
    """The INN refiner (refine.refiner=inn) samples in one inverse pass: the same export checks."""
    tmp, base, _ = refined
    path = refine(base, overrides=TINY + ["refine.refiner=inn", "refine.blocks=2"], run_dir=tmp / "refined_inn",
                  progress=False, after=False)
    out = tmp / "export_inn"
    cli = subprocess.run([sys.executable, "-m", "hepgen", "export", str(path), "-o", str(out)],
                         capture_output=True, text=True, cwd=REPO)
    assert cli.returncode == 0, cli.stderr
    assert json.loads((out / "manifest.json").read_text())["generator"]["refiner"] == "laser inn 2 blocks"
    pipe = pipeline(load_run(path))
    noise = pipe.draw_noise(400, torch.Generator().manual_seed(9))
    got = list(OnnxSampler(out).run(noise.numpy()).values())
    assert event_diff(got, torch_outputs(pipe, {"noise": noise.numpy()})).max() <= TORCH_RTOL
    unrefined = torch_outputs(pipeline(load_run(base)), {"noise": noise.numpy()})
    assert event_diff(got, unrefined).max() > 1e-2  # trained away from its identity start


def test_generate_writes_the_refined_events_and_records_the_refiner(refined, tmp_path):
    _, _, path = refined
    cli = subprocess.run([sys.executable, "-m", "hepgen", "generate", str(path), "-n", "300", "-o",
                          str(tmp_path / "gen.root"), "--no-progress"], capture_output=True, text=True, cwd=REPO)
    assert cli.returncode == 0, cli.stderr
    events = read_events(tmp_path / "gen.root")
    assert 0 < len(events) <= 300
    assert events.info["refiner"] == "laser cfm euler/2" and events.info["card"] == "zj_refined"
    info = json.loads((path / "data.json").read_text())
    assert float(info["dctr_effective_sample_size"]) <= 1500 and info["latent_events"] == "1500"
