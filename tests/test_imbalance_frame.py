"""process.settings.frame: imbalance: the event's pT imbalance and the dimuon system are learned,
the dimuon's pT is the imbalance minus the present jets' (hepgen.coords.imbalance).

Checked on synthetic Z+jets events (tests.zjets_like): the exact round trip in float64 and
float32, the imbalance columns against hepgen.kinematics.system_pt, that absent jet slots leave
the event alone while present jets move the dimuon, that any network point decodes and encodes
back to itself, a trained run generating the same events through torch and ONNX Runtime, and
the card refusals.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import torch

from hepgen.cards import card_from_dict
from hepgen.coords.imbalance import BALANCE_COLUMN, IMBALANCE_SCALE, PERP_COLUMN, BalanceFrame, ImbalanceFrame
from hepgen.coords.zjets import ZJetsCoords
from hepgen.errors import InputError
from hepgen.io.root import read_events, write_events
from hepgen.kinematics import system_pt
from hepgen.train import train
from tests.test_coords import separated
from tests.zjets_like import zjets_like

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sample():
    return separated(zjets_like(600, seed=7))


@pytest.fixture(scope="module")
def coords(sample):
    return ZJetsCoords((1, 2, 3), 20.0, jet_dr_min=0.4, frame="imbalance").fit(sample)


def _decode(coords, x, p, n, dtype):
    u = (p[:, 2, 2] + np.pi) / (2 * np.pi)  # jet 1's azimuth is the global one
    return coords.inverse(x.to(dtype), u.to(dtype), n.to(dtype)).double()


def _present(p, n):
    return torch.arange(p.shape[1])[None, :] < 2 + n[:, None]


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-9), (torch.float32, 2e-4)])
def test_round_trip(coords, sample, dtype, tol):
    p, n = coords.physics(sample)
    x, _ = coords(p, n)
    q = _decode(coords, x, p, n, dtype)
    keep = _present(p, n)
    d = (q - p)[keep]
    dphi = torch.remainder(d[:, 2] + math.pi, 2 * math.pi) - math.pi
    assert (d[:, 0].abs() / p[keep][:, 0]).max() < tol
    assert d[:, 1].abs().max() < tol * 10 and dphi.abs().max() < tol * 10
    assert torch.all(q[~keep] == q[~keep])  # absent slots decode to finite fill values (masked later)


def test_the_imbalance_columns_are_the_events_pt_balance(sample):
    frame = ImbalanceFrame(3, 0.4)
    p = ZJetsCoords((1, 2, 3), 20.0).physics(sample)[0]
    raw, phi_ref = frame(p)
    pt_all = system_pt(*(p[:, k].T.numpy() for k in range(p.shape[1])))  # absent jets: pT 0
    s = IMBALANCE_SCALE
    i_par, i_perp = (s * np.sinh(raw[:, c].numpy() / s) for c in (0, PERP_COLUMN))
    assert np.allclose(np.hypot(i_par, i_perp), pt_all, rtol=1e-9, atol=1e-9)
    assert torch.equal(phi_ref, p[:, 2, 2])
    # the columns are compressed: 100 GeV of imbalance is 30 GeV of column, 1 GeV stays 1 GeV
    assert np.isclose(s * np.arcsinh(100.0 / s), 29.98, atol=0.01) and np.abs(raw[:, 0].numpy()).max() < np.abs(i_par).max()


def test_a_state_of_the_first_frame_version_loads_with_plain_components(sample):
    p = ZJetsCoords((1, 2, 3), 20.0).physics(sample)[0]
    old = {k: v for k, v in ImbalanceFrame(3, 0.4).state_dict().items() if k != "imbalance_scale"}
    frame = ImbalanceFrame(3, 0.4)
    frame.load_state_dict(old)
    raw, _ = frame(p)
    pt_all = system_pt(*(p[:, k].T.numpy() for k in range(p.shape[1])))
    assert float(frame.imbalance_scale) == 0.0
    assert np.allclose(np.hypot(raw[:, 0].numpy(), raw[:, PERP_COLUMN].numpy()), pt_all, rtol=1e-9, atol=1e-9)
    back = frame.inverse(raw, p[:, 2, 2], ZJetsCoords((1, 2, 3), 20.0).physics(sample)[1])
    present = _present(p, ZJetsCoords((1, 2, 3), 20.0).physics(sample)[1])
    assert torch.allclose(back[present][:, 0], p[present][:, 0], rtol=1e-9)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-9), (torch.float32, 5e-4)])
def test_the_balance_frame_learns_the_imbalance_along_jet_1_in_place_of_its_pt(sample, dtype, tol):
    """frame: balance: column 5 is the event's pT vector sum (muons and present jets, from
    hepgen.kinematics.system_pt's components) along jet 1, compressed; the muon columns and the
    other jets' are the default frame's; the coordinates decode back to the event (float32: jet 1's
    pT is a difference, so a looser bound), and moving a present jet 2 moves jet 1's pT by its
    component along jet 1, an absent one nothing."""
    muon = ZJetsCoords((1, 2, 3), 20.0, jet_dr_min=0.4).fit(sample)
    coords = ZJetsCoords((1, 2, 3), 20.0, jet_dr_min=0.4, frame="balance").fit(sample)
    p, n = coords.physics(sample)
    raw, _ = coords.azimuth(p)
    raw_muon, _ = muon.azimuth(p)
    px = (p[..., 0] * torch.cos(p[..., 2])).sum(1)  # absent jets: pT 0
    py = (p[..., 0] * torch.sin(p[..., 2])).sum(1)
    pt_all = system_pt(*(p[:, k].T.numpy() for k in range(p.shape[1])))
    assert np.allclose(np.hypot(px.numpy(), py.numpy()), pt_all, rtol=1e-9, atol=1e-9)
    i_par = px * torch.cos(p[:, 2, 2]) + py * torch.sin(p[:, 2, 2])
    s = IMBALANCE_SCALE
    assert torch.allclose(raw[:, BALANCE_COLUMN], s * torch.asinh(i_par / s), atol=1e-9)
    keep = [c for c in range(raw.shape[1]) if c != BALANCE_COLUMN]
    assert torch.equal(raw[:, keep], raw_muon[:, keep])
    x, _ = coords(p, n)
    u = (p[:, 0, 2] + np.pi) / (2 * np.pi)  # the leading muon's azimuth is the global one
    q = coords.inverse(x.to(dtype), u.to(dtype), n.to(dtype)).double()
    present = _present(p, n)
    assert ((q - p)[present][:, 0].abs() / p[present][:, 0]).max() < tol
    frame = BalanceFrame(3, True, 0.4)
    frame.load_state_dict(coords.azimuth.state_dict())
    moved = raw.clone()
    moved[:, 9] = moved[:, 9] + 5.0  # jet 2's pT + 5 GeV
    a, b = frame.inverse(raw, p[:, 0, 2], n), frame.inverse(moved, p[:, 0, 2], n)
    along = 5.0 * torch.cos(a[:, 3, 2] - a[:, 2, 2])
    two = n >= 2
    assert torch.allclose(b[two][:, 2, 0], a[two][:, 2, 0] - along[two], atol=1e-9)
    assert torch.equal(b[~two][:, 2, 0], a[~two][:, 2, 0])


def test_absent_jets_leave_the_event_and_present_jets_move_the_dimuon(coords, sample):
    p, n = coords.physics(sample)
    x, _ = coords(p, n)
    base = _decode(coords, x, p, n, torch.float64)
    moved = x.clone()
    one = n == 1
    moved[:, 9:] = torch.where(one[:, None], moved[:, 9:] + 1.5, moved[:, 9:])  # jets 2, 3 of 1-jet events
    q = _decode(coords, moved, p, n, torch.float64)
    assert torch.equal(q[one][:, :3], base[one][:, :3])  # muons and jet 1 unchanged
    two = n >= 2
    moved = x.clone()
    moved[:, 9] = moved[:, 9] + 0.5  # jet 2's pT
    q = _decode(coords, moved, p, n, torch.float64)
    dimuon = lambda e: (e[:, :2, 0] * torch.cos(e[:, :2, 2]), e[:, :2, 0] * torch.sin(e[:, :2, 2]))  # noqa: E731
    (ax, ay), (bx, by) = dimuon(base[two]), dimuon(q[two])
    assert torch.all((ax.sum(-1) - bx.sum(-1)).abs() + (ay.sum(-1) - by.sum(-1)).abs() > 1e-3)


def test_any_raw_point_decodes_and_encodes_back_to_itself():
    """The frame is a bijection on its raw columns (angles in their principal ranges), up to the
    label of the decay muons: a point whose first decay muon is the softer one decodes to the event
    of the mirrored angles (-atanh cos theta, phi + pi)."""
    g = torch.Generator().manual_seed(4)
    n = torch.tensor([1.0, 2.0, 3.0]).repeat(300)
    size = (len(n),)
    angle = lambda: (torch.rand(size, generator=g, dtype=torch.float64) * 2 - 1) * math.pi  # noqa: E731
    normal = lambda scale: torch.randn(size, generator=g, dtype=torch.float64) * scale  # noqa: E731
    jet_pt = lambda: 20.0 + 40.0 * torch.rand(size, generator=g, dtype=torch.float64).exp()  # noqa: E731
    mass = lambda: 1.0 + 9.0 * torch.rand(size, generator=g, dtype=torch.float64)  # noqa: E731
    cols = [normal(15.0), normal(1.5), 70.0 + 40.0 * torch.rand(size, generator=g, dtype=torch.float64), normal(1.0),
            angle(), jet_pt(), normal(2.0), normal(15.0), mass()]
    for _ in range(2):  # jets 2, 3: pT, sheared Delta eta, Delta phi from jet 1 (offset), mass
        cols += [jet_pt(), normal(1.0), angle(), mass()]
    raw = torch.stack(cols, -1)
    frame = ImbalanceFrame(3, 0.4)
    phi_ref = angle()
    p = frame.inverse(raw, phi_ref, n)
    p = torch.where(_present(p, n)[..., None], p, torch.zeros_like(p))
    back, phi_back = frame(p)
    assert torch.allclose(phi_back, phi_ref, atol=1e-12)
    active = torch.arange(raw.shape[1])[None, :] < 5 + 4 * n[:, None]
    same = [c for c in range(raw.shape[1]) if c not in (3, 4)]
    assert torch.allclose(back[:, same][active[:, same]], raw[:, same][active[:, same]], atol=1e-8)
    mirrored = (back[:, 3] + raw[:, 3]).abs() < 1e-8
    assert 0.2 < mirrored.double().mean() < 0.8  # both labels occur
    expect_acos = torch.where(mirrored, -raw[:, 3], raw[:, 3])
    expect_phi = torch.where(mirrored, torch.remainder(raw[:, 4] + 2 * math.pi, 2 * math.pi) - math.pi, raw[:, 4])
    assert torch.allclose(back[:, 3], expect_acos, atol=1e-8)
    dphi = torch.remainder(back[:, 4] - expect_phi + math.pi, 2 * math.pi) - math.pi
    assert dphi.abs().max() < 1e-8


def test_the_frame_is_a_card_setting_with_refusals():
    with pytest.raises(InputError, match="jet_recoil"):
        ZJetsCoords((1,), 20.0, jet_recoil=True, frame="imbalance")
    with pytest.raises(InputError, match="frame"):
        ZJetsCoords((1, 2, 3), 20.0, frame="jets")
    coords = ZJetsCoords((1, 2, 3), 20.0, frame="imbalance")
    with pytest.raises(InputError, match="frame: muon"):
        coords.momenta(torch.zeros(2, coords.dim))


def test_a_trained_imbalance_run_generates_the_same_events_in_torch_and_onnx(tmp_path):
    pytest.importorskip("onnxruntime")
    write_events(tmp_path / "ref.root", separated(zjets_like(1500, seed=11)))
    card = card_from_dict({
        "name": "imb", "seed": 4, "process": {"settings": {"frame": "imbalance", "mass_sampling": "marginal"}},
        "data": {"path": str(tmp_path / "ref.root"), "split": [0.8, 0.1, 0.1]},
        "model": {"family": "cfm", "network": {"hidden": 16, "layers": 1}, "cfm": {"solver": "euler", "steps": 2}},
        "train": {"epochs": 1, "batch_size": 256, "runs_dir": str(tmp_path / "runs")},
    })
    run = train(card, progress=False, after=False, run_dir=tmp_path / "run")
    cli = subprocess.run([sys.executable, "-m", "hepgen", "export", str(run), "-o", str(tmp_path / "export")],
                         capture_output=True, text=True, cwd=REPO)
    assert cli.returncode == 0, cli.stderr
    events = {}
    for backend, src in (("torch", run), ("onnx", tmp_path / "export")):
        out = tmp_path / f"{backend}.root"
        cli = subprocess.run([sys.executable, "-m", "hepgen", "generate", str(src), "--backend", backend, "-n", "500",
                              "-o", str(out), "--no-progress"], capture_output=True, text=True, cwd=REPO)
        assert cli.returncode == 0, cli.stderr
        events[backend] = read_events(out)
    a, b = events["torch"], events["onnx"]
    assert len(a) == len(b) > 400
    assert np.array_equal(a.n_jets, b.n_jets) and set(np.unique(a.n_jets)) == {1, 2, 3}
    for coll in ("Muon", "Jet"):
        for f in ("pt", "eta", "phi"):
            x, y = (ak.to_numpy(ak.flatten(e[coll][f])) for e in (a, b))
            assert np.all(np.abs(x - y) <= 1e-3 * np.maximum(np.abs(x), 1.0)), (coll, f)
    assert np.all(ak.to_numpy(ak.min(a["Jet"].pt, axis=1)) > 20.0)
