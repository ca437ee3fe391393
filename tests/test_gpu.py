"""The GPU path: ``train.device: auto`` trains on CUDA, ``hepgen generate --device`` runs the network
on the GPU (torch) or through ONNX Runtime's CUDA provider, and a machine without either refuses
``--device cuda`` in one line.

The CUDA tests skip without a CUDA GPU (CI has none); on a GPU machine run ``pytest tests/test_gpu.py``
(docs/performance.md, "On a GPU"). The ONNX Runtime CUDA test also needs onnxruntime-gpu
(``pip install "hepgen[gpu]"``).
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hepgen.cards import card_from_dict
from hepgen.errors import HepgenError
from hepgen.generate import generate
from hepgen.io.root import read_events, write_events
from hepgen.runs import load_run
from hepgen.train import train
from hepgen.workflow import finish_run
from tests.zjets_like import zjets_like

ROOT = Path(__file__).resolve().parents[1]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


def _ort_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def _card(tmp):
    # the Bayesian model and the drawn dimuon mass put every kind of buffer the pipeline has on the device
    return card_from_dict({
        "name": "zjgpu", "seed": 3, "process": {"settings": {"mass_coordinate": "breit_wigner",
                                                             "mass_sampling": "marginal"}},
        "data": {"path": str(tmp / "ref.root"), "split": [0.8, 0.1, 0.1]},
        "model": {"family": "cfm", "network": {"hidden": 32, "layers": 2},
                  "bayes": {"enabled": True, "draws": 2}, "cfm": {"solver": "rk4", "steps": 4}},
        "train": {"epochs": 2, "batch_size": 256, "device": "auto", "validate": False, "runs_dir": str(tmp / "runs")},
        "generate": {"events": 2000, "chunk": 100000},
    })


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu")
    write_events(tmp / "ref.root", zjets_like(3000, seed=7))
    return load_run(train(_card(tmp), progress=False, run_dir=tmp / "run", after=finish_run))


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "hepgen", *map(str, args)], capture_output=True, text=True, cwd=ROOT)


@cuda
def test_training_with_device_auto_runs_on_the_gpu_and_reports_from_it(run):
    assert "(device cuda" in (run.path / "train.log").read_text()
    assert read_events(run.path / "generated.root").info["device"] == "cuda"


@cuda
@pytest.mark.parametrize("draw", [None, 1])
def test_the_gpu_pipeline_gives_the_cpu_events(run, draw):
    """Same weights, same noise: the events agree to float32 rounding carried through the RK4 steps.
    Tolerance: 1e-3 relative on every momentum component, for at least 99.5 % of the events (an event
    whose ODE path passes a ReLU kink or a jet-count boundary may differ by more)."""
    pipe = run.pipeline(draw).to("cpu")
    noise = pipe.draw_noise(4096, torch.Generator().manual_seed(11))
    with torch.no_grad():
        cpu = pipe(noise)
        gpu = tuple(t.cpu() for t in pipe.to("cuda")(noise.cuda()))
    p_cpu, p_gpu = cpu[0].double(), gpu[0].double()
    scale = p_cpu.abs().amax(dim=-1, keepdim=True)  # per particle: its largest momentum component
    close = (p_gpu - p_cpu).abs() <= 1e-3 * (p_cpu.abs() + scale)
    same = close.flatten(1).all(1) & (cpu[1] == gpu[1])
    assert same.double().mean() >= 0.995, f"{(~same).sum()} of {len(same)} events differ"
    for a, b in zip(cpu[1:], gpu[1:]):
        assert (a == b).double().mean() >= 0.995


@cuda
def test_generate_device_cuda_and_cpu_write_the_same_events(run, tmp_path):
    files = {}
    for dev in ("cuda", "cpu"):
        r = _cli("generate", run.path, "-n", 4000, "--seed", 5, "--device", dev, "-o", tmp_path / f"{dev}.root",
                 "--no-progress")
        assert r.returncode == 0, r.stderr
        files[dev] = read_events(tmp_path / f"{dev}.root")
    assert files["cuda"].info["device"] == "cuda" and files["cpu"].info["device"] == "cpu"
    n_gpu, n_cpu = len(files["cuda"]), len(files["cpu"])
    assert abs(n_gpu - n_cpu) <= 0.005 * n_cpu  # events at a cut may fall either side by rounding
    pt = {d: np.sort(np.asarray(files[d]["Muon"].pt[:, 0])) for d in files}
    k = min(n_gpu, n_cpu)
    assert np.quantile(np.abs(pt["cuda"][:k] - pt["cpu"][:k]) / pt["cpu"][:k], 0.99) < 1e-2


@cuda
@pytest.mark.skipif(not _ort_cuda(), reason="onnxruntime without the CUDA provider (pip install 'hepgen[gpu]')")
def test_onnx_backend_on_the_cuda_provider_gives_the_cpu_providers_events(run, tmp_path):
    out = tmp_path / "export"
    r = _cli("export", run.path, "-o", out)
    assert r.returncode == 0, r.stderr
    files = {}
    for dev in ("cuda", "cpu"):
        r = _cli("generate", out, "--backend", "onnx", "-n", 4000, "--device", dev, "-o", tmp_path / f"{dev}.root",
                 "--no-progress")
        assert r.returncode == 0, r.stderr
        files[dev] = read_events(tmp_path / f"{dev}.root")
    assert files["cuda"].info["device"] == "CUDAExecutionProvider"
    assert files["cpu"].info["device"] == "CPUExecutionProvider"
    assert abs(len(files["cuda"]) - len(files["cpu"])) <= 0.005 * len(files["cpu"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is here")
def test_device_cuda_without_a_gpu_is_refused_in_one_line_before_any_output(tmp_path):
    write_events(tmp_path / "ref.root", zjets_like(600, seed=2))
    card = card_from_dict({
        "name": "zjcpu", "seed": 3, "data": {"path": str(tmp_path / "ref.root")},
        "model": {"family": "cfm", "network": {"hidden": 8, "layers": 1}, "cfm": {"solver": "euler", "steps": 1}},
        "train": {"epochs": 1, "threads": 1, "runs_dir": str(tmp_path / "runs")}})
    path = train(card, progress=False, run_dir=tmp_path / "run", after=False)
    out = tmp_path / "g.root"
    with pytest.raises(HepgenError, match="no CUDA GPU is available"):
        generate(load_run(path), 10, output=out, device="cuda", progress=False)
    r = _cli("generate", path, "-n", 10, "--device", "cuda:1", "-o", out)
    assert r.returncode != 0 and r.stderr.strip() == ("hepgen: error: --device = 'cuda:1' but no CUDA GPU is "
                                                      "available (use auto or cpu)") and not out.exists()
    if not _ort_cuda():  # the CPU onnxruntime: its missing CUDA provider is named
        exp = tmp_path / "export"
        assert _cli("export", path, "-o", exp).returncode == 0
        r = _cli("generate", exp, "--backend", "onnx", "-n", 10, "--device", "cuda", "-o", out)
        assert r.returncode != 0 and "no CUDA execution provider" in r.stderr and not out.exists()
