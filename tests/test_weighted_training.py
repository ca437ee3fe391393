"""Weighted training (``data.weights: file``): the file's event weights weight each event's loss.

A weighted sample must train to the weighted density, every family must either weight its loss
per event or refuse in one line, and bad weights (all zero, NaN, no weight branch) must end in
one line, exit 2, and no run folder.
"""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import torch

from hepgen.cards import card_from_dict, card_to_dict, dump_card
from hepgen.errors import CardError, InputError
from hepgen.io.root import read_events, write_events
from hepgen.models import FAMILIES, build_model, family_class
from hepgen.train import train, validation_loss
from hepgen.workflow import finish_run
from tests.zjets_like import zjets_like

ROOT = Path(__file__).resolve().parents[1]
TILT = 0.5  # weights exp(TILT * eta of the leading muon): shifts a N(0, 1.2) eta by TILT * 1.2² = 0.72


def lead_eta(sample) -> np.ndarray:
    return ak.to_numpy(sample["Muon"].eta[:, 0]).astype(np.float64)


def weighted_file(path: Path, n: int, seed: int, weight=None, branch: str = "genWeight") -> Path:
    """zjets_like events (one jet) with weights exp(TILT * eta_mu1), or ``weight(sample)``."""
    sample = zjets_like(n, seed=seed, fractions=(1.0, 0.0, 0.0))
    w = np.exp(TILT * lead_eta(sample)) if weight is None else weight(sample)
    write_events(path, dataclasses.replace(sample, weight=np.asarray(w, dtype=np.float64)), weight_branch=branch)
    return path


def card(tmp: Path, data: Path, family: str = "cfm", epochs: int = 1, weight_power: float = 0.0, **data_kw):
    return card_from_dict({
        "name": "weighted", "seed": 3,
        "process": {"name": "zjets", "n_jets": [1]},
        "data": {"path": str(data), "weights": "file", **data_kw},
        "model": {"family": family, "network": {"hidden": 32, "layers": 2}, "cfm": {"solver": "midpoint", "steps": 8}},
        "train": {"epochs": epochs, "batch_size": 128, "lr": 3e-3, "threads": 1, "validate": False,
                  "runs_dir": str(tmp / "runs"), "weight_power": weight_power},
        "generate": {"events": 3000},
    })


def no_runs(tmp: Path) -> bool:
    return not (tmp / "runs").exists() or not any((tmp / "runs").iterdir())


@pytest.mark.parametrize("power", [0.0, 1.0])
def test_weighted_sample_trains_to_the_weighted_density(power, tmp_path):
    """train.weight_power 0 (every event drawn equally, loss x w) and 1 (drawn in proportion to w,
    unit loss weights): 4000 events with eta_mu1 ~ N(0, 1.2), weighted by exp(0.5 eta_mu1): inside the muon
    acceptance |eta| < 2.4 the weighted mean of eta_mu1 is ~0.56, the unweighted one ~0. A CFM
    trained with data.weights: file must generate mean eta_mu1 within 0.15 of the weighted truth
    (hence at least 0.35 from the unweighted one). The tolerance: the effective sample size is
    ~2300 of 3200 training events (~2900 of the 4000 in the truth), so the weighted truth's
    statistical error is ~0.022, the model's (trained on ESS ~2300) ~0.025 and that of the ~2900
    generated events ~0.022 (together ~0.04; 0.15 is ~4 sigma), which leaves room for the bias of
    a 2x32 network after 12 epochs (measured: 0.572 vs 0.558). A loss that ignored the weights
    lands near 0 and fails, and so does a loop that, at power 1, shuffles instead of drawing by w."""
    torch.set_num_threads(1)
    data = weighted_file(tmp_path / "w.root", 4000, seed=21)
    run = train(card(tmp_path, data, epochs=12, weight_power=power), progress=False, run_dir=tmp_path / "run", after=finish_run)
    ref = read_events(data)
    eta, w = lead_eta(ref), ref.weight
    inside = np.abs(eta) < 2.4  # the generated events pass the muon acceptance
    weighted_truth = np.average(eta[inside], weights=w[inside])
    unweighted_truth = eta[inside].mean()
    assert weighted_truth - unweighted_truth > 0.5  # the test's premise: the two differ clearly
    gen = lead_eta(read_events(run / "generated.root"))
    assert len(gen) > 2000
    print("generated", gen.mean(), "weighted truth", weighted_truth, "unweighted truth", unweighted_truth)
    assert abs(gen.mean() - weighted_truth) < 0.15, (gen.mean(), weighted_truth, unweighted_truth)
    assert abs(gen.mean() - unweighted_truth) > 0.35
    log = (run / "train.log").read_text()
    assert "effective sample size" in log and "0 negative" in log


def test_multiplicity_fractions_follow_the_loss_weights(tmp_path):
    """The generator draws the jet multiplicity with the fitted fractions. With data.weights: file
    they are the weighted ones (a biased sample's 3-jet events weigh 1/4 here: their raw fraction
    is ~4x too high), with data.weights: none the raw counts, whatever weights the file holds."""
    from hepgen.trainingdata import prepare_data

    sample = zjets_like(3000, seed=5, fractions=(0.4, 0.3, 0.3))
    w = np.where(sample.n_jets == 3, 0.25, 1.0)
    path = tmp_path / "biased.root"
    write_events(path, dataclasses.replace(sample, weight=w), weight_branch="genWeight")
    base = card_to_dict(card(tmp_path, path))
    base["process"]["n_jets"] = [1, 2, 3]
    for weights in ("file", "none"):
        base["data"]["weights"] = weights
        data = prepare_data(card_from_dict(base), log=lambda _: None)
        train_nj = sample.n_jets[data.split["train"]]
        tw = w[data.split["train"]] if weights == "file" else np.ones(len(train_nj))
        want = np.array([tw[train_nj == k].sum() for k in (1, 2, 3)]) / tw.sum()
        counts = data.coords.mult_counts.numpy()
        assert np.allclose(counts / counts.sum(), want, rtol=1e-12), (weights, counts / counts.sum(), want)
    raw3 = np.mean(train_nj == 3)
    assert raw3 > 0.25 and want[2] == pytest.approx(raw3)  # "none": the raw 3-jet fraction, ~4x the weighted one


@pytest.mark.parametrize("power", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("balanced", [False, True])
def test_weight_power_moves_weight_into_the_draw_and_keeps_the_expected_loss(power, balanced):
    """For any per-event loss L: sum_i q_i l_i L_i (q: the draw probabilities, l: the loss weights
    of train.weight_power p) equals sum_i b_i w_i L_i / sum_i b_i, the expected weighted loss of
    p = 0 under the balance draw b; exact up to float32 rounding, with negative weights too. At
    p = 1 with positive weights the draw is proportional to w and every loss weight is the same."""
    from hepgen.trainingdata import importance_draw

    g = torch.Generator().manual_seed(11)
    n = 5000
    w = torch.exp(2.0 * torch.randn(n, generator=g))  # spread over ~4 decades, like a biased pT-hat sample
    w[:50] *= -1
    w = w / w.mean()
    b = torch.rand(n, generator=g) + 0.5 if balanced else None
    L = torch.rand(n, generator=g, dtype=torch.float64)
    draw, loss_w = importance_draw(b, w, power)
    q = (torch.ones(n, dtype=torch.float64) if draw is None else draw.double())
    q = q / q.sum()
    bb = torch.ones(n, dtype=torch.float64) if b is None else b.double()
    want = float((bb * w.double() * L).sum() / bb.sum())
    assert float((q * loss_w.double() * L).sum()) == pytest.approx(want, rel=1e-5)
    if power == 0.0:
        assert torch.equal(loss_w, w) and (draw is None) == (b is None)
    if power == 1.0:
        pos = w[50:].double()
        assert torch.allclose(q[50:] / q[50:].sum(), (bb[50:] * pos) / (bb[50:] * pos).sum(), rtol=1e-5)
        assert torch.allclose(loss_w.abs(), loss_w.abs()[0].expand(n), rtol=1e-5)


def test_weight_power_without_weights_or_with_discflow_is_one_line():
    from hepgen.discflow import check_discriminator
    from hepgen.runs import build_for
    from hepgen.trainingdata import importance_draw

    with pytest.raises(CardError, match="train.weight_power") as err:
        importance_draw(None, None, 0.5)
    assert "\n" not in str(err.value)
    flow = card_from_dict({"process": {"name": "toy_ring"}, "model": {"family": "cfm"},
                           "train": {"weight_power": 1.0, "discriminator": {"enabled": True}}})
    with pytest.raises(CardError, match="weight_power") as err:
        check_discriminator(flow, build_for(flow)[1])
    assert "\n" not in str(err.value)


def _toy_batch(n=64, dim=3, cond=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    c = torch.nn.functional.one_hot(torch.randint(0, cond, (n,), generator=g), cond).float()
    return x, c


def _loss(model, x, c, w=None, seed=7):
    torch.manual_seed(seed)
    return model.loss(x, c) if w is None else model.loss(x, c, w)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_weights_its_loss_per_event_or_refuses(family):
    """Contract, per family, on the same noise (seeded): weight 1 everywhere gives the unweighted
    loss; the loss is linear in the weights (L(w1 + w2) = L(w1) + L(w2), which fails when the
    weights are ignored or enter non-linearly); events of weight 0 do not count (changing their x
    leaves the loss unchanged; not for didi, whose batch pairing couples events). A family whose
    loss has no per-event form refuses in one line."""
    torch.set_num_threads(1)
    cfg = card_from_dict({"model": {"family": family, "network": {"hidden": 16, "layers": 1}}}).model
    dim = 3
    model = build_model(cfg, dim, 2)
    model.train()
    x, c = _toy_batch(dim=2 * dim if family == "didi" else dim)
    n = len(x)
    if family_class(family).event_weights == "none":
        with pytest.raises(CardError) as err:
            _loss(model, x, c, torch.ones(n))
        assert "\n" not in str(err.value) and "weighted" in str(err.value)
        return
    w1 = torch.rand(n, generator=torch.Generator().manual_seed(1)) * 2
    w2 = torch.rand(n, generator=torch.Generator().manual_seed(2)) - 0.3
    plain = _loss(model, x, c)
    torch.testing.assert_close(_loss(model, x, c, torch.ones(n)), plain, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(_loss(model, x, c, w1 + w2), _loss(model, x, c, w1) + _loss(model, x, c, w2),
                               rtol=1e-4, atol=1e-5)
    assert not torch.isclose(_loss(model, x, c, w1), _loss(model, x, c, w2))
    if family != "didi":
        zero = torch.arange(n) % 2 == 0
        w = torch.where(zero, 0.0, w1)
        moved = torch.where(zero[:, None], x + 3.0, x)
        torch.testing.assert_close(_loss(model, moved, c, w), _loss(model, x, c, w), rtol=1e-5, atol=1e-6)


def test_weighted_validation_loss_is_sum_w_loss_over_sum_w():
    """INN (a deterministic loss: -log p): weights 2 everywhere give the unweighted validation loss;
    weight 1 on the first 40 events and 0 on the rest gives the loss of those 40 alone."""
    torch.set_num_threads(1)
    cfg = card_from_dict({"model": {"family": "inn", "network": {"hidden": 16, "layers": 1}}}).model
    model = build_model(cfg, 3, 2)
    x, c = _toy_batch(n=100)
    plain = validation_loss(model, x, c, 32, seed=1)
    assert validation_loss(model, x, c, 32, 1, torch.full((100,), 2.0)) == pytest.approx(plain, rel=1e-6)
    first = (torch.arange(100) < 40).float()
    assert validation_loss(model, x, c, 32, 1, first) == pytest.approx(validation_loss(model, x[:40], c[:40], 32, 1), rel=1e-6)


def test_gan_refuses_weighted_training_before_any_output(tmp_path):
    data = weighted_file(tmp_path / "w.root", 300, seed=1)
    with pytest.raises(CardError, match="model.family gan cannot train on weighted events"):
        train(card(tmp_path, data, family="gan"), progress=False, after=False)
    assert no_runs(tmp_path)


def test_vae_refuses_negative_weights_and_takes_positive_ones(tmp_path):
    signed = weighted_file(tmp_path / "s.root", 300, seed=1, weight=lambda s: np.where(lead_eta(s) > 1.0, -0.5, 1.0))
    with pytest.raises(CardError, match="negative weights, which model.family vae cannot take"):
        train(card(tmp_path, signed, family="vae"), progress=False, after=False)
    assert no_runs(tmp_path)
    # a likelihood family takes the same signed weights
    run = train(card(tmp_path, signed, family="inn"), progress=False, after=False, run_dir=tmp_path / "inn")
    assert "negative" in (run / "train.log").read_text() and (run / "best.pt").is_file()


def _rewrite(src: Path, dst: Path, weight: np.ndarray | None) -> Path:
    """The Muon and Jet collections of ``src`` (written by hepgen) into ``dst`` with uproot, with a
    ``weight`` branch of ``weight`` (None: no weight branch). hepgen's writer refuses NaN weights."""
    import uproot
    with uproot.open(src) as f:
        arrays = f["Events"].arrays(library="ak")
    colls = {}
    for name in ("Muon", "Jet"):
        colls[name] = ak.zip({k[len(name) + 1:]: arrays[k] for k in arrays.fields if k.startswith(name + "_")})
    if weight is not None:
        colls["weight"] = np.asarray(weight, dtype=np.float64)
    with uproot.recreate(dst) as out:
        out.mktree("Events", {k: (v.type if k != "weight" else np.float64) for k, v in colls.items()})
        out["Events"].extend(colls)
    return dst


def _plain_file(tmp: Path) -> Path:
    return write_events(tmp / "plain.root", zjets_like(300, seed=1, fractions=(1.0, 0.0, 0.0)))


BAD = {
    "zero": (lambda tmp: weighted_file(tmp / "w.root", 300, 1, lambda s: np.zeros(len(s))), InputError,
             "all 300 event weights are zero"),
    "nan": (lambda tmp: _rewrite(_plain_file(tmp), tmp / "nan.root", np.where(np.arange(300) == 5, np.nan, 1.0)),
            InputError, "non-finite event weights"),
    "negative_sum": (lambda tmp: weighted_file(tmp / "w.root", 300, 1, lambda s: -np.ones(len(s))), InputError,
                     "the training events' weights sum to"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_weights_are_one_line_and_leave_nothing(case, tmp_path):
    make, kind, message = BAD[case]
    with pytest.raises(kind) as err:
        train(card(tmp_path, make(tmp_path)), progress=False, after=False)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert no_runs(tmp_path)


def test_toy_has_no_weights_to_train_on(tmp_path):
    cfg = card_from_dict({**card_to_dict(card(tmp_path, tmp_path / "x.root")),
                          "process": {"name": "toy_ring"}, "simulate": {"events": 300}})
    with pytest.raises(CardError, match="process toy_ring makes its events in code"):
        train(cfg, progress=False, after=False)
    assert no_runs(tmp_path)


def test_cli_missing_weight_branch_is_one_line_exit_2_and_no_run_folder(tmp_path):
    """A ROOT file without weight / genWeight (the reader would give every event weight 1)."""
    data = _rewrite(_plain_file(tmp_path), tmp_path / "no_weight.root", None)
    cfg_path = tmp_path / "card.yaml"
    cfg_path.write_text(dump_card(card(tmp_path, data)))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "hepgen", "train", str(cfg_path), "--no-progress"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hepgen: error: "), r.stderr
    assert "has no event weight branch (weight or genWeight)" in lines[0]
    assert no_runs(tmp_path)
