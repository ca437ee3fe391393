"""Same card + same seed -> the same events, bit for bit, across refactors.

The digests below were recorded on the CI machine (2 cores, torch 2.13.0 CPU) from the code
before the process seam (hepgen/processes/, hepgen/pipeline.py, hepgen/coords/) was built, at
commit d348431. A refactor that changes a single bit of the trained weights, of the generated
events or of the simulated reference sample fails here. A deliberate change of behaviour
(a new default, a new coordinate) records new digests in the same commit and says why.
"""

from __future__ import annotations

import hashlib

import awkward as ak
import numpy as np
import pytest
import torch

from hepgen.cards import card_from_dict
from hepgen.io.root import read_events, write_events
from hepgen.pipeline import pipeline
from hepgen.runs import load_run
from hepgen.train import train
from hepgen.workflow import finish_run
from tests.zjets_like import zjets_like

pytestmark = pytest.mark.usefixtures("one_thread")

TOY_WEIGHTS = "3123e950f8e80444"
TOY_EVENTS = "6ad3e4a512d55d78"
ZJETS_WEIGHTS = "b4fcf148c548ae24"
ZJETS_EVENTS = "46a6922ed91ee44d"
SIMULATED_EVENTS = "373f763b158b40ee"
FAMILIES = {  # toy_ramp, one epoch: (weights, samples)
    "ddpm": ("7a7faac914adec37", "e9ab4e0f58f9b34f"),
    "inn": ("9649f547f3b3256d", "fcc1379121df3225"),
    "jetgpt": ("012173be83345424", "e3e56d902659e9f9"),
    "gan": ("542aeb7435a8f38b", "72a5278b4f798117"),
}


def _digest(arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _weights(model) -> str:
    return _digest(t.detach().cpu().numpy() for t in model.state_dict().values())


def _events(sample) -> str:
    parts = []
    for coll in ("Muon", "Jet"):
        for f in ("pt", "eta", "phi", "mass"):
            parts.append(ak.to_numpy(ak.flatten(sample[coll][f])))
        parts.append(sample.multiplicity(coll))
    parts.append(ak.to_numpy(ak.flatten(sample["Muon"].charge)))
    return _digest(parts)


def test_toy_run_is_bit_identical(tmp_path):
    card = card_from_dict({
        "name": "ring", "seed": 5, "process": {"name": "toy_ring"}, "simulate": {"events": 2000},
        "model": {"family": "cfm", "network": {"hidden": 16, "layers": 1}, "cfm": {"solver": "midpoint", "steps": 4}},
        "train": {"epochs": 2, "batch_size": 128, "threads": 1, "validate": False, "runs_dir": str(tmp_path)},
    })
    run = load_run(train(card, progress=False, after=False, run_dir=tmp_path / "ring"))
    pipe = pipeline(run)
    with torch.no_grad():
        x = pipe(pipe.draw_noise(1000, torch.Generator().manual_seed(9)))
    assert (_weights(run.model), _digest([x.numpy()])) == (TOY_WEIGHTS, TOY_EVENTS)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_is_bit_identical(family, tmp_path):
    card = card_from_dict({
        "name": "ramp", "seed": 6, "process": {"name": "toy_ramp"}, "simulate": {"events": 1000},
        "model": {"family": family, "network": {"hidden": 16, "layers": 1}},
        "train": {"epochs": 1, "batch_size": 128, "threads": 1, "validate": False, "runs_dir": str(tmp_path)},
    })
    run = load_run(train(card, progress=False, after=False, run_dir=tmp_path / "r"))
    pipe = pipeline(run)
    with torch.no_grad():
        x = pipe(pipe.draw_noise(500, torch.Generator().manual_seed(9)))
    assert (_weights(run.model), _digest([x.numpy()])) == FAMILIES[family]


def test_zjets_run_is_bit_identical(tmp_path):
    write_events(tmp_path / "ref.root", zjets_like(1500, seed=11))
    card = card_from_dict({
        "name": "zj", "seed": 2,
        "data": {"path": str(tmp_path / "ref.root"), "split": [0.8, 0.1, 0.1]},
        "model": {"family": "cfm", "network": {"hidden": 16, "layers": 1, "fourier": 2, "fourier_columns": [10, 11]},
                  "cfm": {"solver": "euler", "steps": 2}},
        "train": {"epochs": 2, "batch_size": 256, "threads": 1, "validate": False, "runs_dir": str(tmp_path / "runs")},
        "generate": {"events": 3000, "chunk": 1000, "calibration_events": 500},
    })
    path = train(card, progress=False, run_dir=tmp_path / "run", after=finish_run)
    run = load_run(path)
    assert (_weights(run.model), _events(read_events(path / "generated.root"))) == (ZJETS_WEIGHTS, ZJETS_EVENTS)


@pytest.mark.slow
def test_simulation_is_bit_identical(tmp_path):
    from hepgen.simulate import produce

    card = card_from_dict({"simulate": {"events": 150, "batch": 150}})
    out = produce(card, events=150, seed=21, output=tmp_path / "sim.root", jobs=1, quiet=True)
    assert _events(read_events(out)) == SIMULATED_EVENTS
