"""A third process, defined in this file alone, runs through every command of the CLI.

``dimuon_toy``: a muon pair from a narrow resonance (m = 60 GeV, Breit-Wigner width 2 GeV) with a
recoil that gives the pair a transverse momentum, no jets; data made in code. The process
follows :class:`hepgen.processes.base.Process` with its own coordinates (standardised log pT,
eta and the azimuth of muon 2 measured from muon 1 + pi), its own exportable pipeline (noise ->
muon four-momenta and charges) and its own observable set. Registered here, it trains,
generates, exports (ONNX Runtime equals torch to 1e-4) and validates through ``hepgen``'s
commands without a line of hepgen/ knowing its name.
"""

from __future__ import annotations

import dataclasses
import json
import math

import awkward as ak
import numpy as np
import pytest
import torch
import yaml
from torch import nn

from hepgen import processes
from hepgen.cli import main
from hepgen.coords import Chain, Standardize
from hepgen.events import EventSample, make_collection
from hepgen.export.manifest import GraphSpec, Port
from hepgen.export.runtime import OnnxSampler
from hepgen.io.root import read_events
from hepgen.kinematics import MUON_MASS, wrap_angle, wrap_phi
from hepgen.processes.base import Selection, settings_of
from hepgen.runs import load_run

pytestmark = pytest.mark.usefixtures("one_thread")

MASS, WIDTH = 60.0, 2.0
PT_MIN = 5.0  # both muons above this (the selection; the card's process.settings.pt_min)


@dataclasses.dataclass(frozen=True)
class DimuonSettings:
    """The process's own card keys (``process.settings``)."""

    pt_min: float = dataclasses.field(default=PT_MIN, metadata={"range": {"gt": 0}})  # GeV, both muons


def dimuon_events(n: int, seed: int, pt_min: float = PT_MIN) -> EventSample:
    rng = np.random.default_rng([seed, 77])
    m = MASS + WIDTH / 2 * np.tan(np.pi * (rng.uniform(size=n) - 0.5)).clip(-6, 6)
    pt_pair = rng.exponential(10.0, n)
    # decay in the pair frame, crudely boosted in the transverse plane only
    cos_t, phi_d = rng.uniform(-1, 1, n), rng.uniform(-np.pi, np.pi, n)
    p = m / 2
    sin_t = np.sqrt(1 - cos_t**2)
    px1, py1, pz1 = p * sin_t * np.cos(phi_d) + pt_pair / 2, p * sin_t * np.sin(phi_d), p * cos_t
    px2, py2, pz2 = -p * sin_t * np.cos(phi_d) + pt_pair / 2, -p * sin_t * np.sin(phi_d), -p * cos_t
    rot = rng.uniform(-np.pi, np.pi, n)
    out = []
    for px, py, pz in ((px1, py1, pz1), (px2, py2, pz2)):
        pt = np.hypot(px, py)
        out.append((pt, np.arcsinh(pz / pt), wrap_phi(np.arctan2(py, px) + rot)))
    (pt1, eta1, phi1), (pt2, eta2, phi2) = out
    swap = pt2 > pt1
    first = [np.where(swap, b, a) for a, b in zip(out[0], out[1])]
    second = [np.where(swap, a, b) for a, b in zip(out[0], out[1])]
    keep = (first[0] > pt_min) & (second[0] > pt_min)
    flat = lambda a, b: np.stack([a[keep], b[keep]], 1).reshape(-1)
    k = int(keep.sum())
    charge = np.where(rng.uniform(size=k) < 0.5, 1, -1)
    mu = make_collection(*(flat(a, b) for a, b in zip(first, second)), np.full(2 * k, MUON_MASS),
                         counts=np.full(k, 2), charge=np.stack([charge, -charge], 1).reshape(-1).astype(np.int32))
    jets = make_collection(*(np.zeros(0) for _ in range(4)), counts=np.zeros(k, np.int64))
    return EventSample.build({"Muon": mu, "Jet": jets}, info={"source": "dimuon_toy"})


class DimuonCoords(nn.Module):
    """p (two muons) <-> x ``[N, 5]``: log pT1, eta1, log pT2, eta2, wrap(phi2 - phi1 - pi), standardised."""

    dim, cond_dim = 5, 0

    def __init__(self):
        super().__init__()
        self.chain = Chain(("standardize", Standardize(5)))

    @staticmethod
    def _raw(sample: EventSample) -> torch.Tensor:
        p = torch.from_numpy(sample.padded("Muon", 2))
        return torch.stack([p[:, 0, 0].log(), p[:, 0, 1], p[:, 1, 0].log(), p[:, 1, 1],
                            wrap_phi(p[:, 1, 2] - p[:, 0, 2] - math.pi)], -1)

    @torch.no_grad()
    def fit(self, sample):
        self.chain.step("standardize").fit(self._raw(sample))
        return self

    def active_columns(self):
        return None

    def encode(self, sample, generator=None):
        x, _ = self.chain(self._raw(sample))
        return x, torch.zeros(len(x), 0, dtype=x.dtype)


class DimuonPipeline(nn.Module):
    """noise ``[N, m + 2]`` -> (p ``[N, 2, 4]``, charge ``[N, 2]``): the last two columns are
    uniforms for the global azimuth and the leading muon's charge."""

    def __init__(self, sampler, coords: DimuonCoords):
        super().__init__()
        self.sampler = sampler.module
        std = coords.chain.step("standardize")
        self.register_buffer("mean", std.mean.float().clone())
        self.register_buffer("std", std.std.float().clone())
        self.m = sampler.noise_dim
        self.noise_dim = sampler.noise_dim + 2
        self.noise_layout = list(sampler.noise_layout) + ["uniform", "uniform"]
        self._draw = sampler.draw_noise

    def draw_noise(self, n, generator=None):
        return torch.cat([self._draw(n, generator).float(), torch.rand(n, 2, generator=generator)], -1)

    def record(self):
        return {"process_note": "dimuon toy"}

    def forward(self, noise):
        z, u_phi, u_q = noise[:, :self.m], noise[:, self.m], noise[:, self.m + 1]
        y = self.sampler(z, noise[:, :0]) * self.std + self.mean
        phi1 = u_phi * (2 * math.pi) - math.pi
        phi2 = wrap_angle(phi1 + y[:, 4] + math.pi)
        mm = torch.full_like(phi1, MUON_MASS)
        mu1 = torch.stack([torch.exp(y[:, 0]), y[:, 1], phi1, mm], -1)
        mu2 = torch.stack([torch.exp(y[:, 2]), y[:, 3], phi2, mm], -1)
        swap = (mu1[:, 0] < mu2[:, 0]).unsqueeze(-1)
        a, b = torch.where(swap, mu2, mu1), torch.where(swap, mu1, mu2)
        q1 = torch.where(u_q < 0.5, torch.ones_like(u_q), -torch.ones_like(u_q)).unsqueeze(-1)
        return torch.stack([a, b], 1), torch.cat([q1, -q1], -1)


class DimuonProcess:
    name = "dimuon_toy"
    settings_class = DimuonSettings
    writes_events = True
    observables = "dimuon_toy"

    def load_data(self, card, log):
        return dimuon_events(card.simulate.events, card.seed, settings_of(self, card).pt_min)

    def validation_reference(self, card, log, simulate=True):
        return None  # validated against the run's held-out split

    def coords(self, card):
        return DimuonCoords()

    def pipeline(self, run, sampler, draw):
        return DimuonPipeline(sampler, run.coords)

    def select(self, out, card):
        low = (out[0][:, :, 0] <= settings_of(self, card).pt_min).any(axis=1)
        return Selection(~low, {"pt_mu": low})

    def to_events(self, out, info):
        p, q = (t.detach().double().numpy() for t in out)
        n = len(p)
        mu = make_collection(*(p[:, :, k].reshape(-1) for k in range(4)), counts=np.full(n, 2),
                             charge=np.rint(q).astype(np.int32).reshape(-1))
        jets = make_collection(*(np.zeros(0) for _ in range(4)), counts=np.zeros(n, np.int64))
        return EventSample.build({"Muon": mu, "Jet": jets}, np.ones(n), info)

    def export_spec(self, run, pipe, sampler, draw_pipes):
        spec = GraphSpec(inputs=(Port("noise", (pipe.noise_dim,), "family noise, then U[0,1) azimuth and charge"),),
                         outputs=(Port("momenta", (2, 4), "mu1, mu2 (pT-ordered)", "pt GeV, eta, phi rad, mass GeV"),
                                  Port("charge", (2,), "charges of mu1, mu2")),
                         noise_layout=tuple(pipe.noise_layout), objects=("mu1", "mu2"),
                         notes=(f"Selection: drop events with a muon of pT <= {PT_MIN} GeV.",))
        return spec, {"process": self.name, "record": pipe.record(), "record_per_draw": [p.record() for p in draw_pipes]}

    def after_training(self, run, tools, log):
        tools.generate(run, run.card.generate.events, output=run.path / "generated.root", force=True, log=log)
        if run.card.train.validate:
            tools.validate(run.path, log)


@pytest.fixture
def dimuon_process():
    process = processes.register(DimuonProcess())
    yield process
    processes.unregister(process.name)


def _hepgen(*argv) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in argv])
    assert exit_.value.code == 0, f"hepgen {' '.join(map(str, argv))} exited with {exit_.value.code}"


def _m_mumu(sample: EventSample) -> np.ndarray:
    p = sample.padded("Muon", 2)
    pt, eta, dphi = p[:, :, 0], p[:, :, 1], p[:, 0, 2] - p[:, 1, 2]
    return np.sqrt(2 * pt[:, 0] * pt[:, 1] * (np.cosh(eta[:, 0] - eta[:, 1]) - np.cos(dphi)))


def test_a_process_defined_outside_hepgen_trains_generates_exports_and_validates(dimuon_process, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dimuon.yaml").write_text(yaml.safe_dump({"process": "dimuon_toy", "sets": {"muons": {
        "pt_mu1": {"bins": 20, "range": [5, 80]}, "eta_mu1": {"bins": 20, "range": [-4, 4]},
        "pt_mu2": {"bins": 20, "range": [5, 60]}, "m_mumu": {"bins": 20, "range": [40, 80]}}}}))
    card = {"name": "dimuon", "seed": 3, "process": {"name": "dimuon_toy", "n_jets": [0], "settings": {"pt_min": PT_MIN}},
            "simulate": {"events": 6000},
            "model": {"family": "cfm", "network": {"hidden": 64, "layers": 2}, "cfm": {"solver": "midpoint", "steps": 8}},
            "train": {"epochs": 60, "batch_size": 128, "threads": 1, "runs_dir": "runs"},
            "generate": {"events": 4000, "chunk": 4000},
            "validate": {"observables": "dimuon.yaml", "classifier_epochs": 3, "classifier_runs": 1, "min_bin_events": 20}}
    (tmp_path / "dimuon_card.yaml").write_text(yaml.safe_dump(card))

    _hepgen("train", "dimuon_card.yaml", "--no-progress")
    (run_dir,) = (tmp_path / "runs").iterdir()
    run = load_run(run_dir)
    assert run.process is dimuon_process

    # generated after training, and again through `hepgen generate`: the resonance is learned
    _hepgen("generate", run_dir, "-n", 3000, "-o", "more.root", "--no-progress")
    gen = read_events(tmp_path / "more.root")
    assert gen.info["process_note"] == "dimuon toy" and 2800 < len(gen) <= 3000
    assert np.all(ak.to_numpy(gen["Muon"].pt) > PT_MIN)
    m = _m_mumu(gen)
    truth = _m_mumu(dimuon_events(20_000, 99))
    # the median of 3000 Breit-Wigner masses is known to ~0.06 GeV. Muons drawn from the right
    # marginals but without their correlations give a median of 41 GeV and 7 % of the events
    # within 3 GeV of the peak (truth: 76 %; this training: 60 epochs, 65 %, median 59.8 GeV)
    core_gen, core_truth = np.mean(np.abs(m - MASS) < 3), np.mean(np.abs(truth - MASS) < 3)
    assert abs(np.median(m) - np.median(truth)) < 1.5
    assert abs(core_gen - core_truth) < 0.2

    # exported, run by ONNX Runtime: the same events as torch to 1e-4
    _hepgen("export", run_dir, "-o", "exp", "--no-sofie")
    onnx = OnnxSampler(tmp_path / "exp")
    pipe = run.pipeline()
    noise = pipe.draw_noise(500, torch.Generator().manual_seed(4))
    with torch.no_grad():
        p_torch, q_torch = (t.numpy() for t in pipe(noise))
    outs = onnx.run(noise.numpy())
    rel = np.abs(outs["momenta"] - p_torch) / np.maximum(np.abs(p_torch), 1.0)
    assert rel.max() <= 1e-4 and np.array_equal(outs["charge"], q_torch)

    # validated after training against the process's data; the report names its observables
    metrics = json.loads((run_dir / "validation" / "metrics.json").read_text())
    assert set(metrics["observables"]) == {"pt_mu1", "eta_mu1", "pt_mu2", "m_mumu"}
    assert metrics["observables"]["m_mumu"]["ndf"] > 5


def test_an_unknown_process_is_a_card_error_naming_the_known_ones(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"process": {"name": "ttbar_dreams"}}))
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(tmp_path / "c.yaml")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "ttbar_dreams" in err and "zjets" in err and "toy_ring" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("settings, says", [
    ({"pt_mn": 5.0}, "unknown key 'process.settings.pt_mn'; allowed here: pt_min"),
    ({"pt_min": -1.0}, "process.settings.pt_min = -1.0 is out of range"),
    ({"pt_min": "low"}, "process.settings.pt_min = 'low' is not a number"),
])
def test_a_process_checks_its_own_card_keys(dimuon_process, tmp_path, capsys, settings, says):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"process": {"name": "dimuon_toy", "settings": settings},
                                                     "train": {"runs_dir": str(tmp_path / "runs")}}))
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(tmp_path / "c.yaml")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and says in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("process, settings, says", [
    ("toy_ring", {"mass": 91}, "the toy_ring process has no settings of its own"),
    ("zjets", {"mass": 91}, "mass"),  # zjets has settings (mass_coordinate), but not this one
    ("zjets", {"mass_coordinate": "linear"}, "mass_coordinate"),
])
def test_process_settings_a_process_does_not_have_are_refused(tmp_path, capsys, process, settings, says):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"process": {"name": process, "settings": settings},
                                                     "train": {"runs_dir": str(tmp_path / "runs")}}))
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(tmp_path / "c.yaml")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and says in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()
