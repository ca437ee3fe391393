"""ONNX export: torch -> ONNX Runtime -> SOFIE C++ parity, per-draw weight files, graph checks.

Every family x {plain, Bayesian} is exported (tiny networks, 2 solver steps) through a stand-in
pipeline built like the Z+jets one (tests/_export_toy.py). Tolerances (relative, absolute below
|value| = 1, per event over every output):

- ONNX Runtime vs torch float32: <= 1e-4 (TORCH_RTOL) for all events; JetGPT's mixture choice
  compares a uniform with cumulative weights, so an event whose uniform sits within float
  rounding of an edge may pick another component: at most 1% of events may differ there.
- SOFIE C++ vs ONNX Runtime: <= 1e-5 for every event (JetGPT: the same 1% allowance for
  mixture-edge ties).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _export_toy import FAMILIES, spec_for, toy_model, toy_modules  # noqa: E402

from hepgen.errors import OutputError  # noqa: E402
from hepgen.export.bundle import TORCH_RTOL, event_diff, torch_outputs, write_export  # noqa: E402
from hepgen.export.graph import ExportError, to_onnx  # noqa: E402
from hepgen.export.runtime import OnnxPipeline, OnnxSampler, draw_noise_torch  # noqa: E402
from hepgen.export.weights import read_weights  # noqa: E402
from tests.toolchain import build_sofie, needs_cpp, onnxruntime_root  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DRAWS = 2
SOFIE_RTOL = 1e-5
BOUNDARY_FRACTION = {"jetgpt": 0.01}  # events allowed beyond TORCH_RTOL (mixture-edge ties)
CASES = [(f, b) for f in FAMILIES for b in (False, True)]

_cache: dict = {}


def _export(tmp_path_factory, family: str, bayesian: bool):
    """(export dir, default module, draw modules) for one family/flavour, exported once per session."""
    key = (family, bayesian)
    if key not in _cache:
        model = toy_model(family, bayesian)
        default, draws = toy_modules(model, bayesian, DRAWS)
        out = tmp_path_factory.mktemp("exports") / f"{family}-{'bayes' if bayesian else 'plain'}"
        write_export(out, default, draws, DRAWS if bayesian else 0, spec_for(model),
                     generator={"family": family}, physics={}, provenance={"test": "yes"})
        _cache[key] = (out, default, draws, spec_for(model))
    return _cache[key]


@pytest.fixture(params=CASES, ids=[f"{f}-{'bayes' if b else 'plain'}" for f, b in CASES])
def case(request, tmp_path_factory):
    return _export(tmp_path_factory, *request.param)


def _noise(spec, n, seed):
    return spec.example(n, np.random.default_rng(seed))["noise"]


def test_torch_and_onnxruntime_agree_for_every_weight_file(case):
    out, default, draws, spec = case
    noise = _noise(spec, 300, seed=11)
    sampler = OnnxSampler(out)
    modules = draws if draws is not None else [default]
    assert len(sampler) == len(modules)
    family = json.loads((out / "manifest.json").read_text())["generator"]["family"]
    allowed = BOUNDARY_FRACTION.get(family, 0.0)
    for k, module in enumerate(modules):
        got = list(sampler.run(noise, draw=k).values())
        diff = event_diff(got, torch_outputs(module, {"noise": noise}))
        assert np.mean(diff > TORCH_RTOL) <= allowed, (k, float(diff.max()))
        assert np.all(np.isfinite(got[0]))
    # the default weight file (posterior means if Bayesian) reproduces the default module
    got = list(OnnxSampler(out, draws="default").run(noise).values())
    assert np.mean(event_diff(got, torch_outputs(default, {"noise": noise})) > TORCH_RTOL) <= allowed


@pytest.mark.parametrize("family", FAMILIES)
def test_draws_share_one_layout_and_give_different_events(family, tmp_path_factory):
    out, _, _, spec = _export(tmp_path_factory, family, True)
    manifest = json.loads((out / "manifest.json").read_text())
    files = manifest["weights"]["draws"]
    assert files == [f"draws/draw_{k:03d}.safetensors" for k in range(DRAWS)]
    headers = []
    for f in [manifest["weights"]["default"], *files]:
        blob = (out / f).read_bytes()
        n = int.from_bytes(blob[:8], "little")
        head = json.loads(blob[8:8 + n])
        head.pop("__metadata__")
        headers.append((n, head, len(blob)))
    assert all(h == headers[0] for h in headers), "weight files must have identical layout"
    noise = _noise(spec, 200, seed=5)
    sampler = OnnxSampler(out)
    p0, p1 = (sampler.run(noise, draw=k)["momenta"] for k in range(2))
    assert np.median(np.abs(p0 - p1)[..., 0]) > 1e-3  # pT differs between draws


def test_graph_passes_checker_and_is_self_describing(tmp_path_factory):
    out, _, _, _ = _export(tmp_path_factory, "cfm", True)
    model = onnx.load(str(out / "generator.onnx"))  # loads the external data from weights.safetensors
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    assert inferred.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 2
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        assert dims[0].dim_param and all(d.HasField("dim_value") for d in dims[1:])
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"Loop", "If", "Scan", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike"}
    assert len(model.functions) == 0
    raw = onnx.load(str(out / "generator.onnx"), load_external_data=False)
    for t in raw.graph.initializer:  # only float tensors are external
        assert (t.data_location == onnx.TensorProto.EXTERNAL) == (t.data_type == onnx.TensorProto.FLOAT)
    meta = {p.key: p.value for p in raw.metadata_props}
    assert meta["hepgen.bayesian_draws"] == str(DRAWS)
    assert meta["hepgen.objects"] == "mu1 j1"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"][0]["shape"] == ["batch", len(manifest["noise_layout"])]
    assert [o["name"] for o in manifest["outputs"]] == ["momenta", "n_jets"]
    assert (out / "noise_layout.txt").read_text().split() == manifest["noise_layout"]
    assert (out / "weights.txt").read_text().split() == manifest["weights"]["draws"]
    tensors = {t["key"] for t in manifest["weights"]["tensors"]}
    assert set(read_weights(out / "draws/draw_001.safetensors")[0]) == tensors


def test_onnxruntime_sessions_run_single_threaded_without_spinning(tmp_path_factory):
    out, _, _, _ = _export(tmp_path_factory, "cfm", False)
    so = OnnxSampler(out).sessions[0].get_session_options()
    assert so.intra_op_num_threads == 1 and so.inter_op_num_threads == 1
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_onnx_pipeline_draws_the_torch_pipelines_noise(tmp_path_factory):
    for family in FAMILIES:
        model = toy_model(family, False)
        layout = list(spec_for(model).noise_layout)
        g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
        ref = torch.cat([model.draw_noise(50, g1), torch.rand(50, 2, generator=g1)], dim=1)
        assert torch.equal(draw_noise_torch(layout, 50, g2), ref), family
    out, default, _, spec = _export(tmp_path_factory, "cfm", False)
    pipe = OnnxPipeline(out)
    noise = pipe.draw_noise(64, torch.Generator().manual_seed(1))
    p, n_jets = pipe(noise)
    assert p.shape == (64, 2, 4) and n_jets.shape == (64,)
    with torch.no_grad():
        ref_p, _ = default(noise)
    assert torch.allclose(p, ref_p, rtol=TORCH_RTOL, atol=TORCH_RTOL)


# ------------------------------------------------------------------------------------------
# SOFIE C++




@needs_cpp
@pytest.mark.slow
@pytest.mark.parametrize("family,bayesian", [("cfm", False), ("cfm", True), ("ddpm", True), ("inn", True),
                                             ("jetgpt", True)])
def test_sofie_cpp_matches_onnxruntime_for_every_weight_file(family, bayesian, tmp_path_factory, tmp_path):
    out, _, _, spec = _export(tmp_path_factory, family, bayesian)
    build = build_sofie(out, tmp_path / "build")
    n = 257  # not a multiple of the batch: the last batch is short
    noise = _noise(spec, n, seed=3)
    noise.tofile(tmp_path / "noise.f32")
    run = subprocess.run([str(build / "generate_events"), str(out), "-o", str(tmp_path / "ev"), "-n", str(n),
                          "--batch", "100", "--noise", str(tmp_path / "noise.f32")],
                         check=True, capture_output=True, text=True)
    assert "events/s" in run.stdout
    sampler = OnnxSampler(out)
    k = len(sampler)
    p = np.fromfile(tmp_path / "ev.out0.f32", dtype=np.float32).reshape(k, n, 2, 4)
    nj = np.fromfile(tmp_path / "ev.out1.f32", dtype=np.float32).reshape(k, n)
    for d in range(k):
        ref = sampler.run(noise, draw=d)
        diff = event_diff([p[d], nj[d]], [ref["momenta"], ref["n_jets"]])
        assert np.mean(diff > SOFIE_RTOL) <= BOUNDARY_FRACTION.get(family, 0.0), (d, float(diff.max()))
    if k > 1:  # the same compiled binary switches draw by weight file alone
        assert np.abs(p[0] - p[1]).max() > 1e-3
        one = subprocess.run([str(build / "generate_events"), str(out), "-o", str(tmp_path / "one"), "-n", str(n),
                              "--batch", "100", "--noise", str(tmp_path / "noise.f32"),
                              "--weights", str(out / "draws/draw_001.safetensors")],
                             check=True, capture_output=True)
        assert one.returncode == 0
        p1 = np.fromfile(tmp_path / "one.out0.f32", dtype=np.float32).reshape(n, 2, 4)
        assert np.array_equal(p1, p[1])


@needs_cpp
def test_sofie_cpp_reports_a_bad_weight_file(tmp_path_factory, tmp_path):
    out, _, _, _ = _export(tmp_path_factory, "cfm", False)
    build = build_sofie(out, tmp_path / "build")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes((out / "weights.safetensors").read_bytes()[:100])
    run = subprocess.run([str(build / "generate_events"), str(out), "-o", str(tmp_path / "ev"), "-n", "10",
                          "--weights", str(bad)], capture_output=True, text=True)
    assert run.returncode != 0 and "error" in run.stderr


class _MergesBatch(torch.nn.Module):
    """Reshapes the batch axis into another (SOFIE 0.1.0 cannot size that: 'stoi')."""

    def forward(self, noise):
        h = torch.stack([noise, 2 * noise, 3 * noise], dim=-1)  # [N, 6, 3]
        return (h.reshape(-1, 3) * 2.0).reshape(-1, 1, 18)


def test_a_graph_sofie_cannot_generate_is_refused_with_a_hint(tmp_path):
    from hepgen.export.bundle import GraphSpec
    from hepgen.export.manifest import Port

    spec = GraphSpec(inputs=(Port("noise", (6,), "noise"),), outputs=(Port("p", (1, 18), "p"),),
                     noise_layout=("normal",) * 6, objects=("a",), columns=tuple("abcdefghijklmnopqr"))
    with pytest.raises(ExportError, match="SOFIE cannot generate.*--no-sofie"):
        write_export(tmp_path / "e", _MergesBatch(), None, 0, spec, generator={}, physics={}, provenance={})
    assert not (tmp_path / "e").exists()
    out = write_export(tmp_path / "e", _MergesBatch(), None, 0, spec, generator={}, physics={}, provenance={},
                       with_sofie=False)
    assert json.loads((out / "manifest.json").read_text())["sofie"]["header"] is None


# ------------------------------------------------------------------------------------------
# ONNX Runtime C++: the vendored API headers + the wheel's library (tests/toolchain.py)


def test_onnxruntime_cpp_matches_python_bit_for_bit(tmp_path_factory, tmp_path):
    """export/onnxruntime built with CMake runs every weight file of a Bayesian export and gives
    the Python ONNX Runtime session's events exactly (same graph, same single-threaded options)."""
    out, _, _, spec = _export(tmp_path_factory, "cfm", True)
    root = onnxruntime_root(tmp_path)
    assert shutil.which("cmake"), "cmake is needed to build export/onnxruntime (.ci/run installs it)"
    build = tmp_path / "build"
    for cmd in (["cmake", "-S", str(REPO / "export/onnxruntime"), "-B", str(build), f"-DONNXRUNTIME_ROOT={root}"],
                ["cmake", "--build", str(build)]):
        run = subprocess.run(cmd, capture_output=True, text=True)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    n = 150
    noise = _noise(spec, n, seed=8)
    noise.tofile(tmp_path / "noise.f32")
    run = subprocess.run([str(build / "generate_events"), str(out), "-o", str(tmp_path / "ev"), "-n", str(n),
                          "--batch", "64", "--noise", str(tmp_path / "noise.f32")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    sampler = OnnxSampler(out)
    assert len(sampler) == DRAWS
    p = np.fromfile(tmp_path / "ev.out0.f32", dtype=np.float32).reshape(len(sampler), n, 2, 4)
    for d in range(len(sampler)):
        want = np.concatenate([sampler.run(noise[i:i + 64], draw=d)["momenta"] for i in range(0, n, 64)])
        assert np.array_equal(p[d], want), f"weight file {d}: C++ and Python ONNX Runtime differ"
    assert not np.array_equal(p[0], p[1]), "two weight files gave the same events"


# ------------------------------------------------------------------------------------------
# refusals


class _Strided(torch.nn.Module):
    def forward(self, noise):
        return noise[:, 1::3] * 2.0


class _Random(torch.nn.Module):
    def forward(self, noise):
        return noise + torch.randn_like(noise)


def test_graphs_sofie_would_get_wrong_or_cannot_run_are_refused():
    with pytest.raises(ExportError, match="strided Slice"):
        to_onnx(_Strided(), {"noise": torch.randn(4, 6)}, ["y"])
    with pytest.raises(ExportError, match="random"):
        to_onnx(_Random(), {"noise": torch.randn(4, 6)}, ["y"])


class _Hidden(torch.nn.Module):
    """Its output depends on a plain tensor attribute: the exporter bakes it in as a constant."""

    def __init__(self, scale):
        super().__init__()
        self.lin = torch.nn.Linear(3, 3)
        self.scale = torch.tensor(scale)

    def forward(self, noise):
        return (self.lin(noise) * self.scale).unsqueeze(1)


def test_a_draw_the_graph_cannot_express_fails_and_leaves_nothing(tmp_path):
    from hepgen.export.bundle import GraphSpec
    from hepgen.export.manifest import Port

    spec = GraphSpec(inputs=(Port("noise", (3,), "noise"),), outputs=(Port("p", (1, 3), "p"),),
                     noise_layout=("normal",) * 3, objects=("a",), columns=("x", "y", "z"))
    torch.manual_seed(0)
    default = _Hidden(1.0)
    other = _Hidden(2.0)
    other.lin.load_state_dict(default.lin.state_dict())
    out = tmp_path / "exp"
    with pytest.raises(ExportError, match="differs from torch"):
        write_export(out, default, [default, other], 2, spec, generator={}, physics={}, provenance={}, with_sofie=False)
    assert not out.exists() and not list(tmp_path.iterdir())
    write_export(out, default, None, 0, spec, generator={}, physics={}, provenance={}, with_sofie=False)
    with pytest.raises(OutputError, match="exists"):
        write_export(out, default, None, 0, spec, generator={}, physics={}, provenance={}, with_sofie=False)


def test_cli_export_of_a_missing_run_is_one_line_error(tmp_path):
    run = subprocess.run([sys.executable, "-m", "hepgen", "export", str(tmp_path / "nope")],
                         capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 2
    assert run.stderr.startswith("hepgen: error:") and len(run.stderr.strip().splitlines()) == 1
