"""The L-GATr backbone of CFM (``model.network.backbone: lgatr``): symmetry, the generator
contract, ONNX Runtime parity, a short training, bad cards, and a run through the CLI.

Tiny L-GATr (1 block, 4 vector / 8 scalar channels) on ZJetsCoords fitted on zjets_like events;
float64 unless it says otherwise.
"""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("lgatr")

from hepgen.cards import BayesConfig, CFMConfig, LGATrConfig, ModelConfig, NetworkConfig  # noqa: E402
from hepgen.cli import main  # noqa: E402
from hepgen.coords.zjets import ZJetsCoords  # noqa: E402
from hepgen.errors import CardError  # noqa: E402
from hepgen.models import build_model  # noqa: E402
from hepgen.nn.bayesian import set_draw  # noqa: E402
from tests.zjets_like import zjets_like  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

SYMMETRY_F64 = 1e-10  # float64 outputs that a symmetry leaves unchanged, relative to max |v|
BROKEN = 1e-4  # outputs that a broken symmetry must change differ by more than this, relative
ONNX_RTOL = 1e-4  # ONNX Runtime vs torch, float32, relative to max |x|
DIFFERENT = 1e-6
N = 48


@pytest.fixture(scope="module")
def zjets():
    sample = zjets_like(900, seed=3)
    coords = ZJetsCoords().fit(sample)
    x, c = coords.encode(sample, torch.Generator().manual_seed(0))
    return coords, x, c


def tiny_cfg(bayes: bool = False, layers: str = "last", family: str = "cfm", **lgatr) -> ModelConfig:
    return ModelConfig(family=family, network=NetworkConfig(backbone="lgatr"), cfm=CFMConfig(steps=3),
                       bayes=BayesConfig(enabled=bayes, layers=layers, init_log_sigma=-3.0),
                       lgatr=LGATrConfig(**{"blocks": 1, "vectors": 4, "scalars": 8, "heads": 2, **lgatr}))


def build(coords, seed=0, bayes=False, **lgatr):
    torch.manual_seed(seed)
    model = build_model(tiny_cfg(bayes, **lgatr), coords.dim, coords.cond_dim)
    model.set_active_columns(coords.active_columns())
    model.attach_coords(coords)
    return model.double()


def randomise_head(model, std=0.3, seed=7):
    """The output head starts near 0; random weights make the outputs' changes visible."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = model.field.net.out
        w = w.weight_mu if hasattr(w, "weight_mu") else w.weight
        w.copy_(torch.randn(w.shape, generator=g, dtype=w.dtype) * std)


def field_inputs(model, x, c, t=0.4):
    field = model.field
    m = field.mask(c).to(x.dtype)
    xm = x * m
    cond = torch.cat([field.embed(torch.full_like(x[:, :1], t)), c], -1)
    present = torch.index_select(m, 1, field.net.first)
    return field.net, field.net.momenta(xm), xm, cond, present


def rotation_z(a):
    r = torch.eye(4, dtype=torch.float64)
    r[1, 1], r[1, 2], r[2, 1], r[2, 2] = math.cos(a), -math.sin(a), math.sin(a), math.cos(a)
    return r


def rotation_x(a):
    r = torch.eye(4, dtype=torch.float64)
    r[2, 2], r[2, 3], r[3, 2], r[3, 3] = math.cos(a), -math.sin(a), math.sin(a), math.cos(a)
    return r


def boost_z(y):
    b = torch.eye(4, dtype=torch.float64)
    b[0, 0] = b[3, 3] = math.cosh(y)
    b[0, 3] = b[3, 0] = math.sinh(y)
    return b


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


# --------------------------------------------------------------------------------------
# symmetry


def test_velocity_is_invariant_under_rotations_about_the_beam_and_not_under_boosts(zjets):
    """What holds exactly (float64 rounding): the outputs are Lorentz invariants of the momenta
    and the spurions together (any transformation applied to both leaves them unchanged); with
    the card's spurions fixed (a lightlike beam (1, 0, 0, +-1) and the time direction), a
    rotation of all momenta about the beam axis leaves them unchanged, while a boost along the
    beam or a rotation about another axis changes them. Without spurions the boost is a
    symmetry too."""
    coords, x, c = zjets
    model = build(coords)
    randomise_head(model)
    net, p, xm, cond, present = field_inputs(model, x[:N], c[:N])
    s = net.spurions.double()
    assert s.shape == (3, 4)
    with torch.no_grad():
        v = net.tokens_forward(p, xm, cond, present)
        for a in (0.3, 2.0, -1.1):
            assert rel(net.tokens_forward(p @ rotation_z(a).T, xm, cond, present), v) < SYMMETRY_F64
        for lam in (boost_z(0.6), rotation_x(0.5), boost_z(-0.3) @ rotation_x(1.2)):
            assert rel(net.tokens_forward(p @ lam.T, xm, cond, present, s @ lam.T), v) < SYMMETRY_F64
            assert rel(net.tokens_forward(p @ lam.T, xm, cond, present), v) > BROKEN
    bare = build(coords, beam="none", time_reference=False)
    randomise_head(bare)
    net, p, xm, cond, present = field_inputs(bare, x[:N], c[:N])
    assert net.spurions.shape == (0, 4)
    with torch.no_grad():
        v = net.tokens_forward(p, xm, cond, present)
        assert rel(net.tokens_forward(p @ boost_z(0.6).T, xm, cond, present), v) < SYMMETRY_F64


def test_absent_jets_do_not_reach_the_present_particles(zjets):
    """Absent jets are out of the attention: their columns (any values) change neither the present
    columns' velocity nor, in sampling, anything but themselves (they stay at their noise)."""
    coords, x, c = zjets
    model = build(coords)
    randomise_head(model)
    model.eval()
    one_jet = c[:, 0] == 1
    xs, cs = x[one_jet][:N], c[one_jet][:N]
    t = torch.full_like(xs[:, :1], 0.5)
    other = xs.clone()
    other[:, 9:] = torch.randn_like(other[:, 9:]) * 3
    with torch.no_grad():
        v, w = model.field(xs, t, cs), model.field(other, t, cs)
    assert torch.equal(v, w) and (v[:, 9:] == 0).all()
    noise = torch.randn(N, coords.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = model.sample(noise, cs)
    assert torch.equal(out[:, 9:], noise[:, 9:])


# --------------------------------------------------------------------------------------
# the contract, as tests/test_models_contract.py states it for the families


@pytest.mark.parametrize("bayes", [False, True], ids=["plain", "bayes-last"])
def test_generator_contract(zjets, bayes):
    coords, x, c = zjets
    x, c = x[:N], c[:N]
    model = build(coords, bayes=bayes)
    model.train()
    loss = model.loss(x, c)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    frozen = []
    for name, p in model.named_parameters():
        if not p.requires_grad:  # lgatr freezes the vector tail that no output reads (out_v_channels 0)
            frozen.append(name)
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert frozen and all(name.endswith("weight_v") for name in frozen), frozen

    twin, other = build(coords, bayes=bayes), build(coords, seed=5, bayes=bayes)
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        assert torch.equal(a, b), name
    assert any(not torch.equal(a, o) for a, o in zip(model.parameters(), other.parameters()))
    torch.manual_seed(11)
    l1 = model.loss(x, c)
    torch.manual_seed(11)
    assert l1.item() == twin.loss(x, c).item()

    randomise_head(model)
    model.eval()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    other.load_state_dict(torch.load(buf))
    other.eval()
    if bayes:
        set_draw(model, 1)
        set_draw(other, 1)
    for opts in ({"solver": "rk4", "steps": 3}, {"solver": "euler", "steps": 4}):
        noise = torch.randn(N, coords.dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        out = model.sample(noise, c, **opts)
        assert out.shape == (N, coords.dim) and torch.isfinite(out).all()
        assert torch.equal(out, model.sample(noise, c, **opts))
        assert torch.equal(out, other.sample(noise, c, **opts)), "state_dict round trip changed the samples"
        assert ((model.sample(noise * 0.5, c, **opts) - out).abs().amax(1) > DIFFERENT).all()
        assert (model.sample(noise, c.flip(0), **opts) - out).abs().max() > DIFFERENT, "condition ignored"
    if bayes:
        set_draw(model, 2)
        assert (model.sample(noise, c) - out).abs().max() > DIFFERENT, "posterior draws 1 and 2 agree"


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")
@pytest.mark.filterwarnings("ignore:.*axis name.*:UserWarning")
def test_sampler_exports_to_onnx_runtime(zjets, tmp_path):
    """The unrolled CFM sampler with the L-GATr field (the coordinates' decoding to momenta
    inside) exports; ONNX Runtime on another batch size reproduces torch in float32."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    coords, _, c = zjets
    model = build(coords).float()
    randomise_head(model, 0.1)
    sampler = model.sampler(solver="midpoint", steps=1).eval()  # 2 field calls: a quick export
    c = c.float()
    path = tmp_path / "lgatr.onnx"
    batch = torch.export.Dim("batch")
    with torch.no_grad():
        torch.onnx.export(sampler, (torch.randn(5, coords.dim), c[:5]), str(path), dynamo=True,
                          input_names=["noise", "c"], output_names=["x"], dynamic_shapes=({0: batch}, {0: batch}),
                          verbose=False)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert not ops & {"RandomNormal", "RandomUniform", "Loop", "If", "Scan"}
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    noise = torch.randn(300, coords.dim, generator=torch.Generator().manual_seed(4))
    got = session.run(None, {"noise": noise.numpy(), "c": c[:300].numpy()})[0]
    with torch.no_grad():
        want = sampler(noise, c[:300]).numpy()
    assert np.abs(got - want).max() <= ONNX_RTOL * np.abs(want).max()


def test_short_training_lowers_the_loss(zjets):
    """400 Adam steps of 64 events: the flow-matching loss on fixed held-out events, times and
    noise falls by more than 10 % (measured 1.975 -> 1.574; the untrained field is ~0)."""
    coords, x, c = zjets
    model = build(coords)
    held_x, held_c, train_x, train_c = x[:200], c[:200], x[200:], c[200:]

    def held_loss():
        torch.manual_seed(99)
        with torch.no_grad():
            return model.loss(held_x, held_c).item()

    before = held_loss()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], 3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(400):
        idx = torch.randint(0, len(train_x), (64,), generator=g)
        loss = model.loss(train_x[idx], train_c[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = held_loss()
    print(f"held-out loss {before:.3f} -> {after:.3f}")
    assert after < 0.9 * before


# --------------------------------------------------------------------------------------
# bad cards


def test_bad_combinations_are_one_line_card_errors(zjets):
    coords, _, _ = zjets
    with pytest.raises(CardError, match="backbone lgatr does not apply to model.family inn .*; lgatr serves cfm, didi, student$"):
        build_model(tiny_cfg(family="inn"), coords.dim, coords.cond_dim)
    with pytest.raises(CardError, match="Z\\+jets layout"):
        build_model(tiny_cfg(), 3, 2)
    with pytest.raises(CardError, match="bayes.layers last"):
        build_model(tiny_cfg(bayes=True, layers="all"), coords.dim, coords.cond_dim)
    with pytest.raises(CardError, match="mlp backbone"):
        build_model(dataclasses.replace(tiny_cfg(), network=NetworkConfig(backbone="lgatr", fourier=2)),
                    coords.dim, coords.cond_dim)
    model = build_model(tiny_cfg(), coords.dim, coords.cond_dim)
    with pytest.raises(CardError, match="four-momenta"):
        model.attach_coords(torch.nn.Identity())
    with pytest.raises(RuntimeError, match="attach_coords"):
        model.loss(torch.zeros(2, coords.dim), torch.eye(3)[:2])


def test_didi_uses_the_same_field(zjets):
    """DiDi reuses CFM's velocity field: with backbone lgatr it trains without code of its own."""
    coords, x, c = zjets
    torch.manual_seed(0)
    model = build_model(tiny_cfg(family="didi"), coords.dim, coords.cond_dim).double()
    model.attach_coords(coords)
    rows = torch.cat([x[:N], x[N:2 * N]], -1)
    model.fit_data(rows)
    loss = model.loss(rows, c[:N])
    loss.backward()
    assert torch.isfinite(loss) and model.field.net.out.weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------
# through the CLI


def _card(tmp_path, **model):
    return {"name": "lgatr_tiny", "seed": 3, "process": {"name": "zjets"},
            "data": {"path": str(tmp_path / "z.root"), "split": [0.7, 0.2, 0.1]},
            "model": {"family": "cfm", "network": {"backbone": "lgatr"}, "cfm": {"steps": 2},
                      "lgatr": {"blocks": 1, "vectors": 4, "scalars": 8, "heads": 2}, **model},
            "train": {"epochs": 1, "batch_size": 128, "threads": 1, "validate": False,
                      "runs_dir": str(tmp_path / "runs")},
            "generate": {"events": 100}}


def test_train_and_generate_through_the_cli(tmp_path):
    """`hepgen train` (1 epoch; afterwards the run generates from load_run, which must attach the
    coordinates), then `hepgen generate` on the run."""
    from hepgen.io.root import read_events, write_events

    write_events(tmp_path / "z.root", zjets_like(700, seed=2))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(_card(tmp_path)))
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(tmp_path / "c.yaml"), "--no-progress"])
    assert exit_.value.code == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert (run / "generated.root").is_file()
    with pytest.raises(SystemExit) as exit_:
        main(["generate", str(run), "-n", "50", "-o", str(tmp_path / "g.root"), "--no-progress"])
    assert exit_.value.code == 0
    events = read_events(tmp_path / "g.root")
    assert len(events) <= 50 and len(events) > 0


def test_lgatr_with_another_family_exits_2_with_one_line_and_no_run(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(_card(tmp_path, family="inn")))
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(tmp_path / "c.yaml")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "backbone lgatr does not apply to model.family inn" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()
