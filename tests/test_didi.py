"""Direct Diffusion (model.family didi) maps a source sample onto a target sample.

``shift_toy``, a process defined in this file alone: one collection ``Part`` of two particles
whose pT and eta are Gaussian, with means and widths from the card's ``process.settings``
(simulated in code into the card's ``simulate.output``), phi uniform, mass fixed. The source
(settings SOURCE) and the target (TARGET) differ in every learned column, in mean and width.
The pipeline maps source events (``[N, 2, 4]``) through the coordinates and the DiDi sampler
and carries each source particle's phi and mass through, so event i of a mapped file shows
which source event it came from.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from hepgen import processes
from hepgen.cards import BayesConfig, CFMConfig, ModelConfig, NetworkConfig, card_from_dict
from hepgen.cli import main
from hepgen.coords import Chain, Standardize
from hepgen.errors import CardError, HepgenError, InputError
from hepgen.events import EventSample, make_collection
from hepgen.export.bundle import TORCH_RTOL, event_diff, torch_outputs
from hepgen.export.manifest import GraphSpec, Port
from hepgen.export.runtime import OnnxSampler
from hepgen.io.root import read_events, write_events
from hepgen.models import build_model
from hepgen.models.didi import ot_pairing
from hepgen.nn.bayesian import set_draw
from hepgen.processes.base import Selection, settings_of
from hepgen.runs import build_for, load_run
from hepgen.sources import complete, read_source
from hepgen.train import train
from tests.toolchain import needs_cpp, sofie_outputs

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
SOFIE_RTOL = 1e-5
COLUMNS = ("pt1", "eta1", "pt2", "eta2")


@dataclasses.dataclass(frozen=True)
class ShiftSettings:
    """Means and widths of (pT1, eta1, pT2, eta2) of the simulated sample."""

    means: tuple[float, ...] = (50.0, 0.0, 30.0, 0.0)
    widths: tuple[float, ...] = (4.0, 1.0, 3.0, 1.0)


SOURCE = {"means": [50.0, 0.0, 30.0, 0.0], "widths": [4.0, 1.0, 3.0, 1.0]}
TARGET = {"means": [56.0, 0.4, 34.0, -0.8], "widths": [6.0, 0.7, 2.0, 1.4]}  # every column: >= 0.5 sigma shift, >= 30 % width


def toy_events(n: int, seed: int, means, widths, particles: int = 2) -> EventSample:
    rng = np.random.default_rng([seed, 5])
    cols = rng.normal(means, widths, size=(n, 4))
    pt, eta = cols[:, [0, 2]], cols[:, [1, 3]]
    if particles > 2:
        pt, eta = np.concatenate([pt, pt[:, :1]], 1), np.concatenate([eta, eta[:, :1]], 1)
    phi = rng.uniform(-np.pi, np.pi, (n, particles))
    part = make_collection(pt.reshape(-1), eta.reshape(-1), phi.reshape(-1), np.full(n * particles, 10.0),
                           counts=np.full(n, particles))
    return EventSample.build({"Part": part}, info={"seed": str(seed)})


def raw_columns(p: torch.Tensor) -> torch.Tensor:
    """``[N, 2, 4]`` -> (pT1, eta1, pT2, eta2) ``[N, 4]``."""
    return torch.stack([p[:, 0, 0], p[:, 0, 1], p[:, 1, 0], p[:, 1, 1]], -1)


class ShiftCoords(nn.Module):
    dim, cond_dim = 4, 0

    def __init__(self):
        super().__init__()
        self.chain = Chain(("standardize", Standardize(4)))

    @torch.no_grad()
    def fit(self, sample):
        self.chain.step("standardize").fit(raw_columns(torch.from_numpy(sample.padded("Part", 2))))
        return self

    def active_columns(self):
        return None

    def encode(self, sample, generator=None):
        x, _ = self.chain(raw_columns(torch.from_numpy(sample.padded("Part", 2))))
        return x, torch.zeros(len(x), 0, dtype=x.dtype)


class ShiftPipeline(nn.Module):
    """``[N, 8 + m]`` (the source event [2, 4] flattened, then the sampler's m fill-noise columns)
    -> mapped ``[N, 2, 4]``: (pT, eta) through coords and the sampler, phi and mass carried."""

    def __init__(self, sampler, coords: ShiftCoords):
        super().__init__()
        self.sampler = sampler.module
        std = coords.chain.step("standardize")
        self.register_buffer("mean", std.mean.float().clone())
        self.register_buffer("std", std.std.float().clone())
        extra = [k for k in sampler.noise_layout if k != "source"]
        self.noise_dim = 8 + len(extra)
        self.noise_layout = ["source"] * 8 + extra
        self._draw = sampler.draw_noise

    def draw_noise(self, n, generator=None):
        return self._draw(n, generator)

    def record(self):
        return {"process_note": "shift toy"}

    def forward(self, inputs):
        source = inputs[:, :8].reshape(-1, 2, 4)
        z = (raw_columns(source) - self.mean) / self.std
        y = self.sampler(torch.cat([z, inputs[:, 8:]], dim=-1), z[:, :0]) * self.std + self.mean
        p1 = torch.stack([y[:, 0], y[:, 1], source[:, 0, 2], source[:, 0, 3]], -1)
        p2 = torch.stack([y[:, 2], y[:, 3], source[:, 1, 2], source[:, 1, 3]], -1)
        return torch.stack([p1, p2], 1)


class ShiftProcess:
    name = "shift_toy"
    settings_class = ShiftSettings
    writes_events = True
    observables = None

    def load_data(self, card, log):
        path = Path(card.data.path)
        if not path.exists() and Path(card.simulate.output) == path:
            s = settings_of(self, card)
            write_events(path, toy_events(card.simulate.events, card.seed, s.means, s.widths))
        return read_events(path)

    def validation_reference(self, card, log, simulate=True):
        return None

    def coords(self, card):
        return ShiftCoords()

    def pipeline(self, run, sampler, draw):
        return ShiftPipeline(sampler, run.coords)

    def source_input(self, sample, card):
        if "Part" not in sample.collections:
            raise InputError(f"the source has no 'Part' collection (it has {', '.join(sample.collections)})")
        counts = sample.multiplicity("Part")
        if (counts != 2).any():
            i = int(np.flatnonzero(counts != 2)[0])
            raise InputError(f"source event {i} has {counts[i]} particles; the run was trained on 2")
        return torch.from_numpy(sample.padded("Part", 2)).float().reshape(len(sample), 8)

    def select(self, out, card):
        return Selection(np.ones(len(out[0]), bool), {})

    def to_events(self, out, info):
        p = out[0].detach().double().numpy()
        n = len(p)
        part = make_collection(*(p[:, :, k].reshape(-1) for k in range(4)), counts=np.full(n, 2))
        return EventSample.build({"Part": part}, np.ones(n), info)

    def export_spec(self, run, pipe, sampler, draw_pipes):
        spec = GraphSpec(inputs=(Port("source", (len(pipe.noise_layout),),
                                      "source events: p1, p2 x (pt, eta, phi, mass), then the fill noise"),),
                         outputs=(Port("momenta", (2, 4), "mapped p1, p2", "pt GeV, eta, phi rad, mass GeV"),),
                         noise_layout=tuple(pipe.noise_layout), objects=("p1", "p2"))
        return spec, {"process": self.name, "record": pipe.record(), "record_per_draw": [p.record() for p in draw_pipes]}

    def after_training(self, run, tools, log):
        pass


@pytest.fixture(scope="module")
def shift_process():
    process = processes.register(ShiftProcess())
    yield process
    processes.unregister(process.name)


@pytest.mark.parametrize("bayes", [False, True])
def test_didi_contract(bayes):
    """Loss on [target | source] rows; gradients reach every parameter; seeded; sampling is a
    deterministic map of the source coordinates; Bayesian draws differ; no noise to draw."""
    cfg = ModelConfig(family="didi", network=NetworkConfig(hidden=16, layers=1), cfm=CFMConfig(steps=3),
                      bayes=BayesConfig(enabled=bayes, init_log_sigma=-3.0))
    torch.manual_seed(0)
    model = build_model(cfg, 3, 2).double()
    assert model.maps_samples and model.noise_layout() == ["source"] * 3 + ["normal"] * 3
    g = torch.Generator().manual_seed(1)
    x, c = torch.randn(64, 6, generator=g, dtype=torch.float64), torch.randn(64, 2, generator=g, dtype=torch.float64)
    loss = model.loss(x, c)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    torch.manual_seed(3)
    l1 = model.loss(x, c).item()
    torch.manual_seed(3)
    assert model.loss(x, c).item() == l1
    with pytest.raises(HepgenError, match="6 columns; got 3"):
        model.loss(x[:, :3], c)
    model.eval()
    if bayes:
        set_draw(model, 1)
    src, z = x[:, 3:], torch.randn(64, 3, generator=g, dtype=torch.float64)
    out = model.sample(torch.cat([src, z], -1), c)
    assert out.shape == (64, 3) and torch.equal(out, model.sample(torch.cat([src, z], -1), c))
    assert ((model.sample(torch.cat([src + 0.5, z], -1), c) - out).abs().amax(1) > 1e-6).all()
    assert torch.equal(model.sample(torch.cat([src, z + 1], -1), c), out)  # no fill column: the noise is not read
    if bayes:
        set_draw(model, 2)
        assert (model.sample(torch.cat([src, z], -1), c) - out).abs().max() > 1e-6


def test_didi_fills_the_columns_a_source_lacks_with_noise():
    """A source column that is constant over the training sources (an on-shell mass) is marked
    fill: training and sampling start it from the noise column, the others from the source."""
    cfg = ModelConfig(family="didi", network=NetworkConfig(hidden=16, layers=1), cfm=CFMConfig(steps=3))
    torch.manual_seed(0)
    model = build_model(cfg, 3, 0).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 6, generator=g, dtype=torch.float64)
    x[:, 4] = 0.7  # source column 1: the same value in every event
    model.fit_data(x)
    assert model.fill.tolist() == [0.0, 1.0, 0.0]
    model.eval()
    c = torch.zeros(200, 0, dtype=torch.float64)
    inp = torch.cat([x[:, 3:], torch.randn(200, 3, generator=g, dtype=torch.float64)], -1)
    out = model.sample(inp, c)
    moved = inp.clone()
    moved[:, 4] += 1.0  # the fill column's noise: read
    assert ((model.sample(moved, c) - out).abs().amax(1) > 1e-6).all()
    moved = inp.clone()
    moved[:, 3] += 1.0  # a filled column's source value: ignored
    assert torch.equal(model.sample(moved, c), out)
    with pytest.raises(HepgenError, match="give --source FILE"):
        model.draw_noise(4)


def _card(tmp: Path, **model):
    cfg = {"family": "didi", "network": {"hidden": 64, "layers": 2}, "cfm": {"solver": "midpoint", "steps": 6}}
    cfg.update(model)
    return {"name": "shift", "seed": 4, "process": {"name": "shift_toy", "settings": TARGET},
            "simulate": {"events": 5000, "output": str(tmp / "target.root")},
            "data": {"path": str(tmp / "target.root"), "source": str(tmp / "source.root"), "split": [0.7, 0.1, 0.2]},
            "model": cfg, "train": {"epochs": 40, "batch_size": 256, "lr": 3e-3, "threads": 1, "validate": False}}


@pytest.fixture(scope="module")
def files(shift_process, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("didi")
    write_events(tmp / "source.root", toy_events(5000, 1, **SOURCE))
    write_events(tmp / "heldout_source.root", toy_events(3000, 2, **SOURCE))
    write_events(tmp / "target.root", toy_events(5000, 3, **TARGET))
    return tmp


@pytest.fixture(scope="module")
def plain_run(files):
    return load_run(train(card_from_dict(_card(files)), progress=False, after=False, run_dir=files / "plain"))


@pytest.fixture(scope="module")
def bayes_run(files):
    card = _card(files, bayes={"enabled": True, "draws": 2, "init_log_sigma": -6.0})
    card["train"]["epochs"] = 3
    return load_run(train(card_from_dict(card), progress=False, after=False, run_dir=files / "bayes"))


def _hepgen(*argv) -> int:
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in argv])
    return exit_.value.code


def _columns(sample: EventSample) -> np.ndarray:
    return raw_columns(torch.from_numpy(sample.padded("Part", 2))).numpy()


def _close(got: np.ndarray, means, widths) -> np.ndarray:
    """Per column: mean within 0.12 sigma and std within 12 % of (means, widths). With 3000 events
    the statistical errors are 0.018 sigma and 1.3 %; the rest is left to the learned map."""
    means, widths = np.asarray(means), np.asarray(widths)
    return (np.abs(got.mean(0) - means) < 0.12 * widths) & (np.abs(got.std(0) / widths - 1) < 0.12)


def test_didi_maps_held_out_source_events_onto_the_target(plain_run, files):
    out = files / "mapped.root"
    assert _hepgen("generate", plain_run.path, "--source", files / "heldout_source.root", "-o", out, "--no-progress") == 0
    mapped, source = read_events(out), read_events(files / "heldout_source.root")
    assert len(mapped) == len(source) == 3000  # every source event
    got = _columns(mapped)
    assert _close(got, **TARGET).all(), (got.mean(0), got.std(0))
    assert not _close(_columns(source), **TARGET).any()  # the job is real: the source is not the target
    # event i is the image of source event i (phi and mass are carried through)
    np.testing.assert_array_equal(mapped.padded("Part", 2)[:, :, 2:], source.padded("Part", 2)[:, :, 2:].astype(np.float32))
    assert mapped.info["source_file"] == str(files / "heldout_source.root") and mapped.info["source_seed"] == "2"
    # deterministic: the same source gives the same events; -n limits, in source order
    assert _hepgen("generate", plain_run.path, "--source", files / "heldout_source.root", "-n", 700,
                   "-o", files / "again.root", "--no-progress") == 0
    again = read_events(files / "again.root")
    np.testing.assert_array_equal(again.padded("Part", 2), mapped.padded("Part", 2)[:700])
    info = json.loads((plain_run.path / "data.json").read_text())
    assert info["source"] == str(files / "source.root") and info["source_events"] == "5000"
    with np.load(plain_run.path / "split.npz") as split:
        assert len(split["source_train"]) == 3500 and len(split["source_test"]) == 1000


def test_ot_coupling_pairs_each_batch_at_minimal_cost_and_trains(files):
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g) + 1
    idx = ot_pairing(x0, x1)
    cost = lambda perm: float(((x0[list(perm)] - x1) ** 2).sum())
    best = min(cost(p) for p in itertools.permutations(range(6)))
    assert sorted(idx.tolist()) == list(range(6)) and cost(idx.tolist()) == pytest.approx(best, rel=1e-12)
    # in blocks of 3: each block paired at its own minimal cost, never across blocks
    idx = ot_pairing(x0, x1, block=3).tolist()
    assert sorted(idx[:3]) == [0, 1, 2] and sorted(idx[3:]) == [3, 4, 5]
    for s in (0, 3):
        part = lambda perm: float(((x0[list(perm)] - x1[s:s + 3]) ** 2).sum())  # noqa: E731
        assert part(idx[s:s + 3]) == pytest.approx(min(part(p) for p in itertools.permutations(range(s, s + 3))), rel=1e-12)

    card = _card(files, didi={"coupling": "ot"})
    card["train"]["epochs"] = 12
    run = load_run(train(card_from_dict(card), progress=False, after=False, run_dir=files / "ot"))
    src = read_source(files / "heldout_source.root", run.process, run.card)
    pipe = run.pipeline()
    with torch.no_grad():
        got = raw_columns(pipe(complete(src.x, pipe.noise_layout))).numpy()
    assert _close(got, **TARGET).all(), (got.mean(0), got.std(0))


def test_bayesian_didi_draws_differ(bayes_run, files):
    out = files / "bayes.root"
    assert _hepgen("generate", bayes_run.path, "--source", files / "heldout_source.root", "-n", 500,
                   "--bayes-samples", 2, "-o", out, "--no-progress") == 0
    d0, d1 = (read_events(files / f"bayes.draw{k}.root").padded("Part", 2) for k in (0, 1))
    assert np.abs(d0 - d1)[:, :, :2].max() > 1e-3 and np.array_equal(d0[:, :, 2:], d1[:, :, 2:])


def test_resumed_didi_training_is_bit_identical(files):
    card = card_from_dict(_card(files) | {"train": {"epochs": 2, "batch_size": 512, "threads": 1, "validate": False}})
    whole = train(card, progress=False, after=False, run_dir=files / "whole")
    part = train(card, progress=False, after=False, run_dir=files / "part", max_epochs=1)
    part = train(resume=part, progress=False, after=False)
    a, b = (torch.load(p / "last.pt", weights_only=False)["model"] for p in (whole, part))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("change, says", [
    ({"data": {"source": ""}}, "maps source events onto the data; name the source sample in data.source"),
    ({"model": {"family": "cfm"}}, "starts from noise, not from source events"),
    ({"data": {"source_card": "SRC"}}, "its simulate.output"),
])
def test_bad_didi_cards_are_one_line_card_errors(files, change, says, tmp_path):
    card = _card(files)
    (tmp_path / "src.yaml").write_text(yaml.safe_dump({"simulate": {"output": str(tmp_path / "elsewhere.root")}}))
    for section, keys in change.items():
        card[section] = card[section] | {k: str(tmp_path / "src.yaml") if v == "SRC" else v for k, v in keys.items()}
    card["train"]["runs_dir"] = str(tmp_path / "runs")
    with pytest.raises(CardError, match=says):
        train(card_from_dict(card), progress=False, after=False)
    assert not (tmp_path / "runs").exists()


def test_a_source_card_simulates_the_missing_source(files, tmp_path):
    src = {"seed": 8, "process": {"name": "shift_toy", "settings": SOURCE},
           "simulate": {"events": 600, "output": str(tmp_path / "made_source.root")}}
    (tmp_path / "src.yaml").write_text(yaml.safe_dump(src))
    card = _card(files)
    card["data"] = card["data"] | {"source": str(tmp_path / "made_source.root"), "source_card": str(tmp_path / "src.yaml")}
    card["train"] = card["train"] | {"epochs": 1}
    run = train(card_from_dict(card), progress=False, after=False, run_dir=tmp_path / "run")
    made = read_events(tmp_path / "made_source.root")
    assert len(made) == 600 and abs(_columns(made)[:, 0].mean() - SOURCE["means"][0]) < 1.0
    assert json.loads((run / "data.json").read_text())["source_events"] == "600"


def test_generate_refuses_a_missing_or_unwanted_or_wrong_source(plain_run, files, tmp_path, capsys):
    write_events(tmp_path / "three.root", toy_events(50, 5, **SOURCE, particles=3))
    noise_card = _card(files, family="cfm")
    noise_card["data"]["source"] = ""
    noise_card["train"]["epochs"] = 1
    noise_run = train(card_from_dict(noise_card), progress=False, after=False, run_dir=tmp_path / "noise")
    write_events(tmp_path / "lepton.root", EventSample.build({"Muon": toy_events(20, 1, **SOURCE)["Part"]}))
    cases = [((plain_run.path,), "maps source events; give --source FILE"),
             ((noise_run, "--source", files / "heldout_source.root"), "starts from noise"),
             ((plain_run.path, "--source", tmp_path / "three.root"), "source event 0 has 3 particles; the run was trained on 2"),
             ((plain_run.path, "--source", tmp_path / "lepton.root"), "no 'Part' collection"),
             ((plain_run.path, "--source", tmp_path / "absent.root"), "no such file")]
    capsys.readouterr()
    for args, says in cases:
        out = tmp_path / "out.root"
        assert _hepgen("generate", *args, "-o", out, "--no-progress") == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()
    with pytest.raises(HepgenError, match="give --source FILE"):
        plain_run.pipeline().draw_noise(3)
    assert build_for(plain_run.card)[1].noise_layout() == ["source"] * 4 + ["normal"] * 4


@pytest.fixture(scope="module")
def didi_export(bayes_run, files):
    out = files / "exp"
    assert _hepgen("export", bayes_run.path, "-o", out, "--bayes-samples", 2) == 0  # parity checked on data.source
    rows = read_source(files / "heldout_source.root", bayes_run.process, bayes_run.card, max_events=400).x
    src = complete(rows, bayes_run.pipeline().noise_layout, torch.Generator().manual_seed(0)).numpy()
    sampler = OnnxSampler(out)
    return out, src, [sampler.run(src, draw=k)["momenta"] for k in range(2)]


def test_export_feeds_source_events_and_onnx_runtime_matches_torch(bayes_run, files, didi_export, tmp_path):
    out, src, ort = didi_export
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(p["name"], p["shape"]) for p in manifest["inputs"]] == [("source", ["batch", 12])]
    assert manifest["checks"]["inputs"] == "given" and manifest["provenance"]["check_source_file"] == str(files / "source.root")
    assert manifest["noise_layout"] == ["source"] * 8 + ["normal"] * 4 and len(manifest["weights"]["draws"]) == 2
    for k in range(2):
        assert event_diff([ort[k]], torch_outputs(bayes_run.pipeline(k), {"source": src})).max() <= TORCH_RTOL
    assert np.abs(ort[0] - ort[1]).max() > 1e-3

    # generate --backend onnx --source: the torch backend's events
    assert _hepgen("generate", out, "--backend", "onnx", "--source", files / "heldout_source.root", "-n", 400,
                   "-o", tmp_path / "onnx.root", "--no-progress") == 0
    assert _hepgen("generate", bayes_run.path, "--source", files / "heldout_source.root", "-n", 400,
                   "-o", tmp_path / "torch.root", "--no-progress") == 0
    a, b = (read_events(tmp_path / f).padded("Part", 2) for f in ("onnx.root", "torch.root"))
    assert event_diff([a], [b]).max() <= TORCH_RTOL


@needs_cpp
def test_sofie_cpp_maps_the_same_source_events(didi_export, tmp_path):
    out, src, ort = didi_export
    p = sofie_outputs(out, src, tmp_path, (2, 4))
    for k in range(2):
        assert event_diff([p[k]], [ort[k]]).max() <= SOFIE_RTOL
    refused = subprocess.run([str(tmp_path / "build" / "generate_events"), str(out), "-o", str(tmp_path / "x"), "-n", "5"],
                             capture_output=True, text=True)
    assert refused.returncode != 0 and "maps source events" in refused.stderr
