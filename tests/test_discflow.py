"""DiscFlow (``train.discriminator``): classifier weights w_D^a on the generator's per-event loss."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy.stats import spearmanr

from hepgen.cards import DiscriminatorConfig, card_from_dict
from hepgen.discflow import DiscFlow, disc_weights, exponent
from hepgen.processes.toys import TOY_RAMP
from hepgen.runs import Checkpoint, build_for
from hepgen.train import train
from hepgen.trainingdata import prepare_data

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
DISC = {"enabled": True, "alpha": 1.0, "warmup": 1, "every": 1, "events": 1500, "epochs": 4,
        "solver": "euler", "steps": 2}


def _card(tmp: Path, family: str = "cfm", disc=DISC, epochs: int = 3, toy: str = "toy_ring"):
    return card_from_dict({
        "name": "ring", "seed": 3, "process": {"name": toy}, "simulate": {"events": 3000},
        "data": {"split": [0.8, 0.2, 0.0]},
        "model": {"family": family, "network": {"hidden": 16, "layers": 1}, "cfm": {"solver": "rk4", "steps": 4}},
        "train": {"epochs": epochs, "batch_size": 256, "lr": 3e-3, "threads": 1, "runs_dir": str(tmp / "runs"),
                  "discriminator": disc},
    })


def test_weights_are_the_classifier_ratio_to_the_power_a():
    p = torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9], dtype=torch.float64)
    logit = torch.log(p / (1 - p))
    ratio = p / (1 - p)
    for a in (1.0, 0.5, 2.0):
        expect = ratio**a / (ratio**a).mean()
        assert torch.allclose(disc_weights(logit, a, clip=1e6).double(), expect, rtol=1e-6)
    clipped = torch.tensor([9.0, 3.0, 1.0, 1 / 3, 1 / 9]).clamp(1 / 2, 2)  # clip 2: [1/2, 2], then mean 1
    got = disc_weights(torch.log(torch.tensor([9.0, 3.0, 1.0, 1 / 3, 1 / 9])), 1.0, clip=2.0)
    assert torch.allclose(got, clipped / clipped.mean(), rtol=1e-6)


def test_exponent_schedule_warmup_then_linear_ramp():
    cfg = DiscriminatorConfig(enabled=True, alpha=0.8, warmup=2, ramp=4)
    got = [exponent(cfg, e) for e in range(8)]
    assert got == pytest.approx([0, 0, 0.2, 0.4, 0.6, 0.8, 0.8, 0.8])
    assert exponent(DiscriminatorConfig(), 5) == 0.0  # off by default


def test_the_classifier_weight_estimates_data_over_generated_density(tmp_path):
    """A CFM with a zero velocity field generates its noise, N(0, 1) in network coordinates, exactly;
    the training rows are the standardised ramp. So w_D should follow p_ramp(x) / N(x; 0, 1): the
    rank correlation of log w_D with the true log ratio over the training events is asserted > 0.5
    (measured 0.72 with 100 classifier epochs on 1500 + 1500 events, 0.0 with 10: the classifier's
    finite training is the limit, and a weight unrelated to the classifier would give 0)."""
    card = _card(tmp_path, disc={**DISC, "clip": 1e4, "epochs": 100}, toy="toy_ramp")  # no clip here
    _, model = build_for(card)
    data = prepare_data(card, print, model)
    model.attach_coords(data.coords)
    for prm in model.parameters():
        prm.data.zero_()
    disc = DiscFlow(card.train.discriminator, card.seed, data.x_train, data.c_train, None)
    assert disc.weights(0, model) is None  # warm-up: the file weights (none)
    w = disc.weights(1, model)
    assert w.shape == (len(data.x_train),) and float(w.mean()) == pytest.approx(1.0, rel=1e-5)
    assert torch.allclose(w, disc_weights(disc.logit, 1.0, card.train.discriminator.clip))
    x = data.x_train.double()
    phys = data.coords.inverse(x).double().numpy()  # the ramp's own coordinates (a standardisation)
    log_ratio = np.log(TOY_RAMP.density(phys)) + 0.5 * (x**2).sum(-1).numpy() + math.log(2 * math.pi)
    rho = spearmanr(torch.log(w).numpy(), log_ratio).statistic
    assert rho > 0.5, rho


def test_training_with_the_discriminator_resumes_bit_for_bit(tmp_path):
    card = _card(tmp_path)
    full = train(card, progress=False, after=False, run_dir=tmp_path / "full")
    part = train(card, progress=False, after=False, run_dir=tmp_path / "part", max_epochs=2)
    train(resume=part, progress=False, after=False)
    a, b = Checkpoint.load(full / "last.pt"), Checkpoint.load(part / "last.pt")
    assert a.discriminator is not None and torch.equal(a.discriminator["logit"], b.discriminator["logit"])
    assert all(torch.equal(a.model[k], b.model[k]) for k in a.model)
    log = (full / "train.log").read_text()
    assert log.count("discriminator at epoch") == 2  # epochs 2 and 3 (warm-up 1, every epoch)
    plain = train(_card(tmp_path, disc={"enabled": False}), progress=False, after=False, run_dir=tmp_path / "plain")
    c = Checkpoint.load(plain / "last.pt")
    assert c.discriminator is None and not all(torch.equal(a.model[k], c.model[k]) for k in a.model)


def test_a_family_without_a_per_event_loss_is_refused_in_one_line(tmp_path):
    card_path = tmp_path / "gan.yaml"
    card = {"name": "g", "process": {"name": "toy_ring"}, "simulate": {"events": 500}, "model": {"family": "gan"},
            "train": {"epochs": 1, "runs_dir": str(tmp_path / "runs"), "discriminator": {"enabled": True}}}
    card_path.write_text(yaml.safe_dump(card))
    cli = subprocess.run([sys.executable, "-m", "hepgen", "train", str(card_path), "--no-progress"],
                         capture_output=True, text=True, cwd=REPO)
    assert cli.returncode == 2 and len(cli.stderr.strip().splitlines()) == 1, cli.stderr
    assert "no per-event loss" in cli.stderr and "gan" in cli.stderr
    assert not (tmp_path / "runs").exists()


def test_discflow_with_a_nuisance_is_refused_in_one_line():
    """The discriminator's fake events are drawn at nominal nu, the training rows carry every nu:
    the combination is refused before any output."""
    from hepgen.cards import card_from_dict
    from hepgen.discflow import check_discriminator
    from hepgen.errors import CardError
    from hepgen.runs import build_for

    card = card_from_dict({"process": {"name": "toy_ramp"},
                           "model": {"family": "cfm", "nuisance": [{"name": "a", "kind": "parametric", "observable": "x2",
                                                                    "range": [-1.0, 1.0]}]},
                           "train": {"discriminator": {"enabled": True}}})
    _, model = build_for(card)
    with pytest.raises(CardError, match="model.nuisance") as err:
        check_discriminator(card, model)
    assert "\n" not in str(err.value)
