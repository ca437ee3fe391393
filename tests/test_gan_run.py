"""A tiny Z+jets GAN (Bayesian, MMD on m_mumu) through ``hepgen train``, resume and ``hepgen export``:
resume reaches the same parameters bit for bit; ONNX Runtime reproduces torch (1e-4) and the SOFIE
C++ generator reproduces ONNX Runtime (1e-5). About a minute, most of it compiling the SOFIE C++."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hepgen.cards import card_from_dict

REPO = Path(__file__).resolve().parents[1]


def _zjets_card(tmp: Path, epochs: int = 2):
    return card_from_dict({
        "name": "zjgan", "seed": 3,
        "data": {"path": str(tmp / "ref.root"), "split": [0.8, 0.1, 0.1]},
        "model": {"family": "gan", "network": {"hidden": 16, "layers": 1},
                  "bayes": {"enabled": True, "draws": 2},
                  "gan": {"disc_hidden": 16, "disc_layers": 2, "mmd": ["m_mumu"], "mmd_widths": [2.5]}},
        "train": {"epochs": epochs, "batch_size": 256, "threads": 1, "runs_dir": str(tmp / "runs")},
    })


@pytest.fixture(scope="module")
def zjets_runs(tmp_path_factory):
    from hepgen.io.root import write_events
    from hepgen.train import train
    from tests.zjets_like import zjets_like

    tmp = tmp_path_factory.mktemp("gan_runs")
    write_events(tmp / "ref.root", zjets_like(1500, seed=11))
    straight = train(_zjets_card(tmp), progress=False, after=False, run_dir=tmp / "straight")
    first = train(_zjets_card(tmp), progress=False, after=False, max_epochs=1, run_dir=tmp / "first")
    one_epoch = torch.load(first / "last.pt", weights_only=False)["model"]
    resumed = train(resume=first, progress=False, after=False)
    return straight, resumed, one_epoch, tmp


def test_train_and_resume_reach_the_same_parameters(zjets_runs):
    straight, resumed, one_epoch, _ = zjets_runs
    a, b = (torch.load(r / "last.pt", weights_only=False)["model"] for r in (straight, resumed))
    assert a.keys() == b.keys() and any(k.endswith(".u") for k in a)  # the power-iteration state is saved
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert not all(torch.equal(one_epoch[k], a[k]) for k in a)  # the interruption was in the middle
    hist = json.loads((resumed / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2]
    assert all(np.isfinite(h["train_loss"]) and np.isfinite(h["val_loss"]) and h["kl"] > 0 for h in hist)


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")
@pytest.mark.filterwarnings("ignore:.*axis name.*:UserWarning")
def test_export_onnx_runtime_and_sofie_match_torch(zjets_runs, tmp_path):
    """ONNX Runtime reproduces the torch pipeline (1e-4, hepgen.export.bundle.TORCH_RTOL) for each
    posterior draw; the SOFIE C++ generator reproduces ONNX Runtime (1e-5)."""
    from hepgen.export.bundle import TORCH_RTOL, event_diff, torch_outputs
    from hepgen.export.runtime import OnnxSampler
    from hepgen.pipeline import pipeline
    from hepgen.runs import load_run
    from tests.toolchain import needs_cpp, sofie_outputs

    straight, _, _, _ = zjets_runs
    out = tmp_path / "export"
    cli = subprocess.run([sys.executable, "-m", "hepgen", "export", str(straight), "-o", str(out), "--bayes-samples", "2"],
                         capture_output=True, text=True, cwd=REPO)
    assert cli.returncode == 0, cli.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generator"]["family"] == "gan"
    run = load_run(straight)
    sampler = OnnxSampler(out)
    assert len(sampler) == 2
    for k in range(2):
        pipe = pipeline(run, k)
        noise = pipe.draw_noise(400, torch.Generator().manual_seed(9))
        got = list(sampler.run(noise.numpy(), draw=k).values())
        assert event_diff(got, torch_outputs(pipe, {"noise": noise.numpy()})).max() <= TORCH_RTOL
    if needs_cpp.args[0]:
        pytest.skip(needs_cpp.kwargs["reason"])
    noise = sampler.draw_noise(300, seed=3)
    got = sofie_outputs(out, noise, tmp_path, (5, 4))
    for k in range(2):
        ref = sampler.run(noise, draw=k)["momenta"]
        assert event_diff([got[k]], [ref]).max() <= 1e-5
