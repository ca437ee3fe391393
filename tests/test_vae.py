"""The beta-VAE (hepgen/models/vae.py): its loss terms, its sampler, what it learns, the training
loop, the export of a Z+jets run and its card errors.

Float64 on tiny networks unless it says otherwise; tolerances are named or stated next to the check.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hepgen.cards import INNConfig, NetworkConfig, VAEConfig, card_from_dict, card_to_dict
from hepgen.errors import HepgenError
from hepgen.models import build_model
from hepgen.models.vae import soft_clamp
from tests.test_models_contract import COND, DIM, DIFFERENT, EXACT_F64, _export_and_compare, _randomise_outputs, \
    build, data, noise_for, tiny_cfg
from tests.toolchain import needs_cpp, sofie_outputs

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")

FLOW = {"vae": VAEConfig(prior="flow"), "inn": INNConfig(blocks=2, bins=4, bound=4.0)}


def randomised(seed=0, **sections):
    """A tiny VAE whose output layers (encoder, decoder and flow prior) have random weights."""
    model = build("vae", seed=seed, **sections)
    _randomise_outputs(model, 0.3)
    return model


# --------------------------------------------------------------------------------------
# the loss


def test_analytic_kl_matches_a_monte_carlo_estimate():
    """KL(q || N(0, 1)) in closed form against the mean of log q(z) - log N(z) over 200 000 draws
    of z ~ q per event (tolerance: 5 standard errors of that mean)."""
    model = randomised()
    x, c = data(n=4)
    with torch.no_grad():
        _, kl = model.elbo_terms(x, c)
        mu, log_sig = model.encode(x, c)
    assert (kl > 0.05).all()  # a posterior visibly away from the prior
    g = torch.Generator().manual_seed(3)
    for i in range(4):
        eps = torch.randn(200_000, model.latent, generator=g, dtype=torch.float64)
        z = mu[i] + log_sig[i].exp() * eps
        log_ratio = (-0.5 * eps**2 - log_sig[i]).sum(-1) + 0.5 * (z**2).sum(-1)
        se = log_ratio.std().item() / math.sqrt(len(log_ratio))
        assert abs(log_ratio.mean().item() - kl[i].item()) < 5 * se, i


def test_reconstruction_term_is_the_gaussian_nll_of_the_reparametrised_draw():
    model = randomised()
    x, c = data()
    eps = torch.randn(len(x), model.latent, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    with torch.no_grad():
        nll, _ = model.elbo_terms(x, c, eps)
        mu_q, log_sig_q = model.encode(x, c)
        h = model.decoder.net(mu_q + log_sig_q.exp() * eps, c)
    mu, sigma = h[:, :DIM], soft_clamp(h[:, DIM:]).exp()
    want = -torch.distributions.Normal(mu, sigma).log_prob(x).sum(-1)
    torch.testing.assert_close(nll, want, rtol=0, atol=1e-10)


def test_beta_scales_the_kl_term_exactly():
    """Same weights, same random stream: loss(beta) - loss(0) = beta * mean KL, and loss(0) is
    the reconstruction term alone."""
    x, c = data()
    losses = {}
    for beta in (0.0, 1.0, 2.5):
        model = build("vae", vae=VAEConfig(beta=beta))
        _randomise_outputs(model, 0.3)
        torch.manual_seed(8)
        losses[beta] = model.loss(x, c)
    torch.manual_seed(8)
    nll, kl = model.elbo_terms(x, c)
    assert kl.mean() > 0.05
    torch.testing.assert_close(losses[0.0], nll.mean(), rtol=0, atol=EXACT_F64)
    for beta in (1.0, 2.5):
        torch.testing.assert_close(losses[beta] - losses[0.0], beta * kl.mean(), rtol=0, atol=EXACT_F64)


def test_flow_prior_kl_is_log_q_minus_the_flows_log_density():
    model = randomised(**FLOW)
    x, c = data()
    eps = torch.randn(len(x), model.latent, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with torch.no_grad():
        _, kl = model.elbo_terms(x, c, eps)
        mu, log_sig = model.encode(x, c)
        z = mu + log_sig.exp() * eps
        log_q = torch.distributions.Normal(mu, log_sig.exp()).log_prob(z).sum(-1)
        want = log_q - model.prior.log_prob(z, c)
    torch.testing.assert_close(kl, want, rtol=0, atol=1e-10)


# --------------------------------------------------------------------------------------
# the sampler


@pytest.mark.parametrize("prior", ["gaussian", "flow"])
def test_sampler_is_mu_plus_sigma_eps_by_hand(prior):
    """x = mu(z, c) + sigma(z, c) eps with noise [z noise | eps]; z = the flow's inverse pass for
    the flow prior; the fixed decoder noise uses decoder_sigma."""
    model = randomised(**(FLOW if prior == "flow" else {}))
    model.eval()
    _, c = data()
    noise = noise_for(model, len(c), {})
    assert noise.shape == (len(c), model.latent + DIM) and model.noise_layout() == ["normal"] * (model.latent + DIM)
    with torch.no_grad():
        z = noise[:, :DIM]
        if prior == "flow":
            for block in reversed(model.prior.blocks):
                z = block.inverse(z, c)
            assert (z - noise[:, :DIM]).abs().max() > DIFFERENT
        h = model.decoder.net(z, c)
    want = h[:, :DIM] + soft_clamp(h[:, DIM:]).exp() * noise[:, DIM:]
    torch.testing.assert_close(model.sample(noise, c), want, rtol=0, atol=EXACT_F64)

    fixed = randomised(vae=dataclasses.replace(model.cfg.vae, decoder_noise="fixed", decoder_sigma=0.3),
                       inn=model.cfg.inn)
    with torch.no_grad():
        z = noise[:, :DIM] if fixed.prior is None else fixed.sampler().prior(noise[:, :DIM], c)
        want = fixed.decoder.net(z, c) + 0.3 * noise[:, DIM:]
    torch.testing.assert_close(fixed.sample(noise, c), want, rtol=0, atol=EXACT_F64)


def test_latent_size_sets_the_noise_width():
    model = build("vae", vae=VAEConfig(latent=5))
    assert model.latent == 5 and model.noise_dim() == 5 + DIM
    _, c = data()
    assert model.sample(noise_for(model, len(c), {}), c).shape == (len(c), DIM)


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")
@pytest.mark.filterwarnings("ignore:.*axis name.*:UserWarning")
def test_flow_prior_contract_and_onnx_parity(tmp_path):
    """The flow prior: gradients reach every parameter (prior included, which stays plain under a
    Bayesian decoder); the sampler exports with ONNX Runtime parity and SOFIE parses it."""
    model = build("vae", bayes=True, **FLOW)
    x, c = data()
    model.train()
    model.loss(x, c).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    names = [n for n, _ in model.named_parameters() if "logsig2" in n]
    assert names and all(n.startswith("decoder.") for n in names)
    from hepgen.nn.bayesian import materialize

    torch.manual_seed(0)
    flat = build_model(tiny_cfg("vae", True, **FLOW), DIM, COND)
    _randomise_outputs(flat, 0.1)
    _export_and_compare(materialize(flat, 1), {}, tmp_path, "vae")


# --------------------------------------------------------------------------------------
# what it learns


def _fit(model, sample, steps, lr=3e-3, seed=1):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    empty = torch.zeros(256, 0)
    model.train()
    for _ in range(steps):
        loss = model.loss(sample(256, gen), empty)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    n = 4000
    return model.sample(model.draw_noise(n, torch.Generator().manual_seed(2)), torch.zeros(n, 0))


CORR = 0.8
MEAN, STD = torch.tensor([1.0, -0.5]), torch.tensor([0.5, 1.5])


def correlated(n, gen):
    """A shifted, scaled 2-D Gaussian with correlation 0.8: a decoder with a diagonal sigma must
    use its latent to get the correlation (a collapsed latent gives 0)."""
    u = torch.randn(n, 2, generator=gen)
    v = torch.stack([u[:, 0], CORR * u[:, 0] + math.sqrt(1 - CORR**2) * u[:, 1]], dim=1)
    return MEAN + STD * v


@pytest.mark.parametrize("prior", ["gaussian", "flow"])
def test_vae_learns_a_correlated_shifted_scaled_gaussian(prior):
    """600 Adam steps of 256 events: mean within 0.15 sigma, widths within 15 %, correlation within
    0.1 of 0.8 (statistical errors over 4000 samples: ~2 % and ~0.01); an untrained model gives
    mean 0, width 1, correlation 0."""
    torch.manual_seed(0)
    net = NetworkConfig(hidden=32, layers=2)
    sections = {"vae": VAEConfig(latent=2, prior=prior), "inn": INNConfig(blocks=2, bins=6, bound=4.0)}
    model = build_model(dataclasses.replace(tiny_cfg("vae"), network=net, **sections), 2, 0)
    x = _fit(model, correlated, 600)
    assert ((x.mean(0) - MEAN).abs() < 0.15 * STD).all(), x.mean(0)
    assert ((x.std(0) / STD - 1).abs() < 0.15).all(), x.std(0)
    corr = torch.corrcoef(x.T)[0, 1].item()
    assert abs(corr - CORR) < 0.1, corr


# --------------------------------------------------------------------------------------
# with the training loop and the CLI


def toy_card(tmp_path, **model):
    return card_from_dict({
        "name": "tinyvae", "seed": 5,
        "process": {"name": "toy_ring"},
        "simulate": {"events": 1200},
        "data": {"split": [0.7, 0.2, 0.1]},
        "model": {"family": "vae", "network": {"hidden": 16, "layers": 1},
                  "bayes": {"enabled": True, "draws": 2}, "vae": {"prior": "flow", "latent": 2},
                  "inn": {"blocks": 2, "bins": 4}, **model},
        "train": {"epochs": 2, "batch_size": 128, "lr": 1e-3, "threads": 1, "schedule": "onecycle",
                  "runs_dir": str(tmp_path / "runs")},
        "generate": {"events": 200},
    })


def _cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "hepgen", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_hepgen_train_and_resume_reach_the_same_parameters(tmp_path):
    """``hepgen train`` end to end on the toy (train, generate, the toy report); a run stopped after
    one epoch and resumed ends with the same parameters, bit for bit."""
    from hepgen.cards import dump_card
    from hepgen.train import train

    card = tmp_path / "card.yaml"
    card.write_text(dump_card(toy_card(tmp_path)))
    r = _cli("train", card, "--no-progress")
    assert r.returncode == 0, r.stderr
    (straight,) = (tmp_path / "runs").iterdir()
    assert (straight / "generated.npz").is_file()
    assert "training vae (Bayesian) on toy_ring" in (straight / "train.log").read_text()
    first = train(toy_card(tmp_path), progress=False, after=False, max_epochs=1, run_dir=tmp_path / "b")
    one = torch.load(first / "last.pt", weights_only=False)["model"]
    resumed = train(resume=first, progress=False, after=False)
    a, b = (torch.load(r / "last.pt", weights_only=False)["model"] for r in (straight, resumed))
    assert a.keys() == b.keys() and any(k.startswith("prior.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert not all(torch.equal(one[k], a[k]) for k in a)  # the interruption was in the middle
    hist = json.loads((resumed / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2] and all(np.isfinite(h["val_loss"]) for h in hist)


def test_bad_settings_are_one_line_errors_and_write_nothing(tmp_path):
    """Through the CLI: exit 2, one line, no run folder; the other combinations in the library."""
    from hepgen.cards import dump_card

    card = tmp_path / "card.yaml"
    card.write_text(dump_card(toy_card(tmp_path)))
    r = _cli("train", card, "--no-progress", "--set", "model.vae.latent=1")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines == ["hepgen: error: model.vae.prior flow needs model.vae.latent >= 2 (the INN's coupling blocks "
                     "split the latent space); it is 1"], r.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    for overrides, message in [
        (["model.network.backbone=transformer"], "backbone transformer does not apply to model.family vae"),
        (["model.vae.prior=normal"], "model.vae.prior"),
        (["model.vae.beta=-1"], "model.vae.beta"),
        (["model.vae.decoder_sigma=0"], "model.vae.decoder_sigma"),
        (["model.vae.depth=3"], "depth"),
    ]:
        with pytest.raises(HepgenError, match=message) as err:
            bad = card_from_dict(card_to_dict(toy_card(tmp_path)), overrides=overrides)
            build_model(bad.model, 2, 0)
        assert "\n" not in str(err.value)


# --------------------------------------------------------------------------------------
# a Z+jets run exports: ONNX Runtime equals torch, SOFIE C++ equals ONNX Runtime


@pytest.fixture(scope="module")
def zjets_export(tmp_path_factory):
    from hepgen.export.from_run import export
    from hepgen.io.root import write_events
    from hepgen.runs import load_run
    from hepgen.train import train
    from tests.zjets_like import zjets_like

    tmp = tmp_path_factory.mktemp("vae_export")
    write_events(tmp / "ref.root", zjets_like(1500, seed=11))
    card = card_from_dict({
        "name": "zjvae", "seed": 2,
        "data": {"path": str(tmp / "ref.root"), "split": [0.8, 0.1, 0.1]},
        "model": {"family": "vae", "network": {"hidden": 16, "layers": 1}, "bayes": {"enabled": True, "draws": 2}},
        "train": {"epochs": 1, "batch_size": 256, "threads": 1, "runs_dir": str(tmp / "runs")},
    })
    run = train(card, progress=False, after=False, run_dir=tmp / "run")
    out = export(run, output=tmp / "export", bayes_samples=2)  # checks ONNX Runtime against torch itself
    return load_run(run), out


def test_zjets_vae_export_matches_torch_for_every_draw(zjets_export):
    from hepgen.export.bundle import TORCH_RTOL, event_diff, torch_outputs
    from hepgen.export.runtime import OnnxSampler
    from hepgen.pipeline import pipeline

    run, out = zjets_export
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generator"]["family"] == "vae"
    d = run.model.dim
    assert manifest["noise_layout"][:2 * d] == ["normal"] * (2 * d)  # [z noise | eps], then the process's columns
    sampler = OnnxSampler(out)
    for k in range(2):
        pipe = pipeline(run, k)
        noise = pipe.draw_noise(400, torch.Generator().manual_seed(9))
        got = list(sampler.run(noise.numpy(), draw=k).values())
        assert event_diff(got, torch_outputs(pipe, {"noise": noise.numpy()})).max() <= TORCH_RTOL


@needs_cpp
def test_sofie_cpp_runs_the_zjets_vae(zjets_export, tmp_path):
    """SOFIE's generated C++ equals ONNX Runtime to 1e-5 (relative; values below 1 absolutely)
    for both weight files."""
    from hepgen.export.bundle import event_diff
    from hepgen.export.runtime import OnnxSampler

    _, out = zjets_export
    sampler = OnnxSampler(out)
    noise = sampler.draw_noise(500, seed=3)
    p = sofie_outputs(out, noise, tmp_path, (5, 4))
    for k in range(len(sampler)):
        assert event_diff([p[k]], [sampler.run(noise, draw=k)["momenta"]]).max() <= 1e-5
