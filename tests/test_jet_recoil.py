"""process.settings.jet_recoil: leading-order mu mu + parton events, the parton set to the dimuon's recoil.

The parton's pT and azimuth are not learned; the inverse computes them from the decoded muons, so
every generated event balances in pT, whatever the network puts in those columns. Checked on
synthetic balanced events (tests.zjets_like with the jet replaced by the recoil), through the
coordinates, a trained and exported run (ONNX Runtime) and the refusals.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import torch

from hepgen.cards import card_from_dict
from hepgen.coords.zjets import RECOIL_COLUMNS, ZJetsCoords, ZJetsInverse
from hepgen.errors import InputError
from hepgen.events import EventSample, make_collection
from hepgen.io.root import read_events, write_events
from hepgen.kinematics import system_pt
from hepgen.train import train
from tests.zjets_like import zjets_like

REPO = Path(__file__).resolve().parents[1]


def balanced(n: int, seed: int) -> EventSample:
    """One massless parton per event carrying minus the dimuon's transverse momentum (pT > 20 GeV)."""
    base = zjets_like(3 * n, seed=seed, fractions=(1.0, 0.0, 0.0))
    mu = base["Muon"]
    px = ak.sum(mu.pt * np.cos(mu.phi), axis=1).to_numpy()
    py = ak.sum(mu.pt * np.sin(mu.phi), axis=1).to_numpy()
    keep = np.flatnonzero(np.hypot(px, py) > 20.0)[:n]
    assert len(keep) == n
    mu, px, py = mu[keep], px[keep], py[keep]
    eta = np.random.default_rng(seed + 1).normal(0, 2, n)
    jets = make_collection(np.hypot(px, py), eta, np.arctan2(-py, -px), np.zeros(n), counts=np.ones(n, dtype=np.int64))
    return EventSample.build({"Muon": mu, "Jet": jets}, info={"source": "tests.test_jet_recoil"})


def imbalance(p) -> np.ndarray:
    """|pT(mu mu + jet)| / pT(jet) of momenta ``[N, 3, 4]`` (pT, eta, phi, m)."""
    p = np.asarray(p, dtype=np.float64)
    return system_pt(*(p[:, k].T for k in range(3))) / p[:, 2, 0]


@pytest.fixture(scope="module")
def sample():
    return balanced(3000, seed=5)


@pytest.fixture(scope="module")
def coords(sample):
    return ZJetsCoords((1,), 20.0, jet_recoil=True).fit(sample)


def test_round_trip_and_the_recoil_columns_are_not_learned(coords, sample):
    p, n = coords.physics(sample)
    x, c = coords.encode(sample, torch.Generator().manual_seed(0))
    _, phi_dimuon = coords.azimuth(p)  # the global azimuth: the dimuon's
    u = (phi_dimuon + math.pi) / (2 * math.pi)
    back = coords.inverse(x, u)
    assert torch.allclose(back[:, :, :3], p[:, :, :3], rtol=0, atol=1e-9)
    assert torch.all(back[:, 2, 3] == 0)  # the parton stays massless
    # the recoil columns hold N(0, 1) fill (like a missing jet's), frozen in the CFM
    cols = list(RECOIL_COLUMNS)
    assert x[:, cols].mean(0).abs().max() < 0.1 and (x[:, cols].std(0) - 1).abs().max() < 0.1
    assert not coords.active_columns()[:, cols].any() and coords.active_columns()[:, [0, 1, 2, 3, 4, 6, 8]].all()
    # and the output does not depend on them
    other = x.clone()
    other[:, cols] = torch.randn(len(x), 2, dtype=x.dtype) * 3
    assert torch.equal(coords.inverse(other, u), back)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-4)])
def test_any_network_point_decodes_to_a_balanced_event(coords, dtype, tol):
    x = torch.randn(20000, coords.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 1.5
    u = torch.rand(len(x), dtype=torch.float64)
    p = ZJetsInverse(coords, dtype)(x.to(dtype), u.to(dtype))
    assert torch.isfinite(p).all()
    assert imbalance(p.double()).max() < tol
    # the parton's pT cut holds by construction, and the muons come out pT-ordered
    assert torch.all(p[:, 2, 0] > 20.0) and torch.all(p[:, 0, 0] >= p[:, 1, 0])


def test_unbalanced_events_and_several_jets_are_refused():
    showered = zjets_like(500, seed=3, fractions=(1.0, 0.0, 0.0))
    with pytest.raises(InputError, match="500 of 500 training events do not balance"):
        ZJetsCoords((1,), 20.0, jet_recoil=True).fit(showered)
    with pytest.raises(InputError, match=r"n_jets: \[1\]"):
        ZJetsCoords((1, 2, 3), 20.0, jet_recoil=True)


def test_a_trained_recoil_run_generates_and_exports_balanced_events(tmp_path, sample):
    pytest.importorskip("onnxruntime")
    write_events(tmp_path / "lo.root", sample)
    card = card_from_dict({
        "name": "recoil", "seed": 3,
        "process": {"n_jets": [1], "jet_eta_max": 10.0, "settings": {"jet_recoil": True}},
        "data": {"path": str(tmp_path / "lo.root"), "split": [0.8, 0.1, 0.1]},
        "model": {"family": "cfm", "network": {"hidden": 16, "layers": 1}, "cfm": {"solver": "euler", "steps": 2}},
        "train": {"epochs": 1, "batch_size": 256, "runs_dir": str(tmp_path / "runs")},
    })
    run = train(card, progress=False, after=False, run_dir=tmp_path / "run")
    for backend, src in (("torch", run), ("onnx", tmp_path / "export")):
        if backend == "onnx":
            cli = subprocess.run([sys.executable, "-m", "hepgen", "export", str(run), "-o", str(src)],
                                 capture_output=True, text=True, cwd=REPO)
            assert cli.returncode == 0, cli.stderr
            assert any("recoil of the dimuon" in note for note in json.loads((src / "manifest.json").read_text())["notes"])
        out = tmp_path / f"{backend}.root"
        cli = subprocess.run([sys.executable, "-m", "hepgen", "generate", str(src), "--backend", backend, "-n", "2000",
                              "-o", str(out), "--no-progress"], capture_output=True, text=True, cwd=REPO)
        assert cli.returncode == 0, cli.stderr
        ev = read_events(out)
        p = np.concatenate([np.stack([ak.to_numpy(ev[c][f]) for f in ("pt", "eta", "phi", "mass")], -1)
                            for c in ("Muon", "Jet")], axis=1)
        assert len(ev) > 1500 and np.all(ak.num(ev["Jet"].pt) == 1)
        assert imbalance(p).max() < 1e-4, backend  # float32 graph: angles to a few ulps
        assert np.all(p[:, 2, 0] > 20.0)
