"""hepgen export of trained Z+jets runs: the exported graph is hepgen.generate.pipeline.

Tiny CFM runs (1 epoch on 1500 Z+jets-like events, hidden 16, Euler 2 steps) are exported with
the CLI; for the same noise, ONNX Runtime (Python) and the SOFIE C++ generator reproduce the
torch pipeline of every Bayesian draw (tolerances as in test_export.py: 1e-4 ONNX Runtime vs
torch, 1e-5 SOFIE vs ONNX Runtime, relative with values below 1 compared absolutely).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hepgen.cards import card_from_dict
from hepgen.export.bundle import TORCH_RTOL, event_diff, torch_outputs
from hepgen.export.runtime import OnnxPipeline, OnnxRun, OnnxSampler
from hepgen.pipeline import pipeline
from hepgen.io.root import write_events
from hepgen.runs import load_run
from hepgen.train import train
from tests.toolchain import build_sofie, needs_cpp
from tests.zjets_like import zjets_like

REPO = Path(__file__).resolve().parents[1]
SOFIE_RTOL = 1e-5




def _card(tmp, bayes):
    # the Bayesian run (exported below, also to SOFIE C++) takes the Breit-Wigner dimuon-mass column,
    # so its exportable inverse (Sigmoid, Sin, Div, Log) runs through ONNX Runtime and SOFIE too, and
    # draws the mass from the training line shape (mass_sampling marginal; a table per draw)
    settings = {"mass_coordinate": "breit_wigner", "mass_sampling": "marginal"} if bayes else {}
    return card_from_dict({
        "name": "zj", "seed": 2, "process": {"settings": settings},
        "data": {"path": str(tmp / "ref.root"), "split": [0.8, 0.1, 0.1]},
        "model": {"family": "cfm", "network": {"hidden": 16, "layers": 1},
                  "bayes": {"enabled": bayes, "draws": 3}, "cfm": {"solver": "euler", "steps": 2}},
        "train": {"epochs": 1, "batch_size": 256, "runs_dir": str(tmp / "runs")},
    })


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export_run")
    write_events(tmp / "ref.root", zjets_like(1500, seed=11))
    plain = train(_card(tmp, False), progress=False, after=False, run_dir=tmp / "plain")
    bayes = train(_card(tmp, True), progress=False, after=False, run_dir=tmp / "bayes")
    out = tmp / "export-bayes"
    cli = subprocess.run([sys.executable, "-m", "hepgen", "export", str(bayes), "-o", str(out), "--bayes-samples", "2",
                          "--steps", "3", "--solver", "midpoint"], capture_output=True, text=True, cwd=REPO)
    assert cli.returncode == 0, cli.stderr
    return load_run(plain), load_run(bayes), out, tmp


def test_exported_graph_is_the_generation_pipeline_for_every_draw(runs):
    _, bayes, out, _ = runs
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generator"] | {"family": "cfm", "solver": "midpoint", "steps": 3, "draws": 2, "bayesian": True,
                                    "ensemble": False} == manifest["generator"]
    assert [o["name"] for o in manifest["outputs"]] == ["momenta", "n_jets", "charge"]
    assert manifest["objects"] == ["mu1", "mu2", "j1", "j2", "j3"]
    sampler = OnnxSampler(out)
    assert len(sampler) == 2
    events = []
    for k in range(2):
        pipe = pipeline(bayes, k, solver="midpoint", steps=3)
        assert manifest["physics"]["fractions_per_draw"][k] == pytest.approx(pipe.fractions)
        assert pipe.noise_layout[-4:] == ["uniform"] * 4  # multiplicity, azimuth, charge, dimuon mass
        noise = pipe.draw_noise(400, torch.Generator().manual_seed(9))
        got = list(sampler.run(noise.numpy(), draw=k).values())
        assert event_diff(got, torch_outputs(pipe, {"noise": noise.numpy()})).max() <= TORCH_RTOL
        events.append(got)
    assert np.abs(events[0][0] - events[1][0]).max() > 1e-3  # the draws differ
    assert (out / "card.yaml").read_text().startswith("name: zj")
    assert manifest["provenance"]["run"] == str(bayes.path)


def test_onnx_pipeline_is_a_drop_in_for_generate(runs):
    """Same generator state -> same noise and the same events as the torch pipeline (the generate hook)."""
    _, bayes, out, _ = runs
    onnx_pipe = OnnxPipeline(out, draw=1)
    torch_pipe = pipeline(bayes, 1, solver="midpoint", steps=3)
    a = onnx_pipe.draw_noise(300, torch.Generator().manual_seed(5))
    b = torch_pipe.draw_noise(300, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    got = onnx_pipe(a)
    with torch.no_grad():
        ref = torch_pipe(b)
    assert event_diff([t.numpy() for t in got], [t.numpy() for t in ref]).max() <= TORCH_RTOL
    assert onnx_pipe.fractions == pytest.approx(torch_pipe.fractions)
    assert onnx_pipe.pass_rates == pytest.approx(torch_pipe.pass_rates)  # recorded in the provenance
    assert OnnxPipeline(out).pass_rates == pytest.approx(pipeline(bayes, None, solver="midpoint", steps=3).pass_rates)


@needs_cpp
def test_sofie_cpp_runs_the_zjets_generator(runs, tmp_path):
    _, _, out, _ = runs
    build = build_sofie(out, tmp_path / "build")
    sampler = OnnxSampler(out)
    n = 500
    noise = sampler.draw_noise(n, seed=3)
    noise.tofile(tmp_path / "noise.f32")
    subprocess.run([str(build / "generate_events"), str(out), "-o", str(tmp_path / "ev"), "-n", str(n),
                    "--noise", str(tmp_path / "noise.f32")], check=True, capture_output=True)
    k = len(sampler)
    p = np.fromfile(tmp_path / "ev.out0.f32", dtype=np.float32).reshape(k, n, 5, 4)
    nj = np.fromfile(tmp_path / "ev.out1.f32", dtype=np.float32).reshape(k, n)
    q = np.fromfile(tmp_path / "ev.out2.f32", dtype=np.float32).reshape(k, n, 2)
    for d in range(k):
        ref = sampler.run(noise, draw=d)
        assert event_diff([p[d], nj[d], q[d]], [ref["momenta"], ref["n_jets"], ref["charge"]]).max() <= SOFIE_RTOL
        assert set(np.unique(nj[d])) <= {1.0, 2.0, 3.0}
        absent = np.arange(3)[None, :] >= nj[d][:, None]
        assert np.all(p[d][:, 2:][absent] == 0)  # absent jets are all zero


def test_plain_run_exports_one_weight_file_and_refuses_bayes_samples(runs, tmp_path):
    plain, _, _, _ = runs
    bad = subprocess.run([sys.executable, "-m", "hepgen", "export", str(plain.path), "-o", str(tmp_path / "x"),
                          "--bayes-samples", "2"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "not Bayesian" in bad.stderr and not (tmp_path / "x").exists()
    from hepgen.export.from_run import export

    out = export(plain.path, output=tmp_path / "plain", sofie=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["weights"]["draws"] == [] and manifest["bayesian"] is False
    assert (out / "weights.txt").read_text().split() == ["weights.safetensors"]
    assert manifest["sofie"]["header"] is None


def test_generate_with_the_onnx_backend_writes_the_torch_backends_events(runs, tmp_path):
    import awkward as ak

    from hepgen.io.root import read_events

    _, bayes, out, _ = runs
    files = {}
    for backend, src, extra in (("torch", bayes.path, ["--solver", "midpoint", "--steps", "3"]), ("onnx", out, [])):
        cli = subprocess.run([sys.executable, "-m", "hepgen", "generate", str(src), "--backend", backend, "-n", "300",
                              "--bayes-samples", "2", "-o", str(tmp_path / f"{backend}.root"), "--no-progress", *extra],
                             capture_output=True, text=True, cwd=REPO)
        assert cli.returncode == 0, cli.stderr
        files[backend] = [read_events(tmp_path / f"{backend}.draw{k}.root") for k in range(2)]
    for a, b in zip(files["torch"], files["onnx"]):
        assert b.info["backend"] == "onnxruntime" and b.info["solver"] == "midpoint/3"
        assert len(a) == len(b)  # same events kept (no Delta R_jj boundary case in 300 events)
        for coll in ("Muon", "Jet"):
            for f in ("pt", "eta", "phi"):
                x = ak.to_numpy(ak.flatten(a[coll][f]))
                y = ak.to_numpy(ak.flatten(b[coll][f]))
                assert np.all(np.abs(x - y) <= TORCH_RTOL * np.maximum(np.abs(x), 1.0)), (coll, f)
    bad = subprocess.run([sys.executable, "-m", "hepgen", "generate", str(out), "--backend", "onnx", "-n", "10",
                          "--steps", "5", "-o", str(tmp_path / "x.root")], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "fixed in an ONNX export" in bad.stderr


@pytest.mark.parametrize("sampler, steps, expected_steps", [("ancestral", None, 6), ("ddim", None, 3), ("ancestral", 2, 2)])
def test_the_manifest_records_the_ddpm_sampler_the_graph_runs(runs, tmp_path, sampler, steps, expected_steps):
    """The manifest's sampler and steps are what the graph unrolled: the ancestral chain visits
    every one of the T steps unless told otherwise (it used to record ddim_steps), and the noise
    width follows (D (steps + 1) normal columns for ancestral, D for DDIM, then 3 uniforms)."""
    from hepgen.export.from_run import export

    _, _, _, tmp = runs
    card = card_from_dict({
        "name": "zjd", "seed": 4, "data": {"path": str(tmp / "ref.root")},
        "model": {"family": "ddpm", "network": {"hidden": 8, "layers": 1},
                  "ddpm": {"timesteps": 6, "sampler": sampler, "ddim_steps": 3}},
        "train": {"epochs": 1, "batch_size": 512, "runs_dir": str(tmp_path)},
    })
    run = train(card, progress=False, after=False, run_dir=tmp_path / "ddpm")
    out = export(run, output=tmp_path / "exp", steps=steps, sofie=False)
    manifest = json.loads((out / "manifest.json").read_text())
    d = load_run(run).model.dim
    assert (manifest["generator"]["sampler"], manifest["generator"]["steps"]) == (sampler, expected_steps)
    width = d * (expected_steps + 1) if sampler == "ancestral" else d
    assert manifest["noise_layout"] == ["normal"] * width + ["uniform"] * 3


@pytest.fixture(scope="module")
def ensemble_export(tmp_path_factory):
    """A 2-member repulsive ensemble (function-space kernel), exported with the CLI's default draws."""
    tmp = tmp_path_factory.mktemp("export_ensemble")
    write_events(tmp / "ref.root", zjets_like(1500, seed=11))
    card = card_from_dict({
        "name": "zj", "seed": 2,
        "data": {"path": str(tmp / "ref.root"), "split": [0.8, 0.1, 0.1]},
        "model": {"family": "cfm", "network": {"hidden": 16, "layers": 1}, "cfm": {"solver": "euler", "steps": 2},
                  "ensemble": {"members": 2, "kernel": "function"}},
        "train": {"epochs": 1, "batch_size": 256, "runs_dir": str(tmp / "runs")},
    })
    run = train(card, progress=False, after=False, run_dir=tmp / "ens")
    out = tmp / "export-ens"
    cli = subprocess.run([sys.executable, "-m", "hepgen", "export", str(run), "-o", str(out), "--no-sofie"],
                         capture_output=True, text=True, cwd=REPO)
    assert cli.returncode == 0, cli.stderr
    return load_run(run), out


def test_ensemble_exports_one_graph_with_a_weight_file_per_member(ensemble_export):
    """Members are switched like Bayesian draws: one graph, K weight files (default K = members),
    ONNX Runtime reproduces the torch pipeline of every member."""
    run, out = ensemble_export
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generator"]["draws"] == 2 and len(manifest["weights"]["draws"]) == 2
    # the draws are members, not posterior samples: the manifest says which
    assert manifest["bayesian"] and manifest["generator"]["ensemble"] and not manifest["generator"]["bayesian"]
    sampler = OnnxSampler(out)
    assert len(sampler) == 2
    events = []
    for k in range(2):
        pipe = pipeline(run, k)
        noise = pipe.draw_noise(400, torch.Generator().manual_seed(9))
        got = list(sampler.run(noise.numpy(), draw=k).values())
        assert event_diff(got, torch_outputs(pipe, {"noise": noise.numpy()})).max() <= TORCH_RTOL
        events.append(got)
    assert np.abs(events[0][0] - events[1][0]).max() > 1e-3  # the members differ


def test_an_ensembles_default_file_says_it_holds_member_0(ensemble_export, tmp_path):
    """Without --bayes-samples an ensemble generates member 0 (it has no weight mean); the header says
    so, and a draw's file carries its index."""
    from hepgen.generate import generate
    from hepgen.io.root import read_events

    run, out = ensemble_export
    for tag, source in (("torch", run), ("onnx", OnnxRun(out))):  # the ONNX backend reads the same from its export
        generate(source, 300, output=tmp_path / f"{tag}.root", progress=False)
        generate(source, 300, output=tmp_path / f"{tag}_d.root", bayes_samples=2, progress=False)
        assert read_events(tmp_path / f"{tag}.root").info["bayes_draw"] == "member 0", tag
        assert read_events(tmp_path / f"{tag}_d.draw1.root").info["bayes_draw"] == "1", tag
