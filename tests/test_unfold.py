"""Unfolding by generation (hepgen/coords/unfold.py, hepgen/processes/zjets_unfold.py,
hepgen/unfold/posterior.py): the coordinates decode what they encode, and a short training on
a real paired sample learns p(particle | reco) (the posterior follows the reco event)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from hepgen.coords.unfold import GEN_NAMES, Multiplicity, UnfoldCoords, level
from hepgen.errors import InputError
from hepgen.events import EventSample
from hepgen.pipeline import FrozenSampler
from hepgen.processes.zjets_unfold import PROCESS, UnfoldPipeline, reco_rows

from zjets_like import zjets_like


def paired_identity(n: int, seed: int) -> EventSample:
    """A paired sample whose reco level is its particle level (every event passes both)."""
    s = zjets_like(n, seed)
    return EventSample.build({"GenMuon": s["Muon"], "GenJet": s["Jet"], "Muon": s["Muon"], "Jet": s["Jet"]},
                             scalars={"pass_gen": np.ones(n, bool), "pass_reco": np.ones(n, bool)})


def test_multiplicity_column_decodes_to_the_encoded_multiplicity_everywhere_in_its_interval():
    mult = Multiplicity((1, 2, 3))
    k = torch.arange(3).repeat_interleave(1001)
    u = torch.linspace(1e-4, 1 - 1e-4, 1001).repeat(3)  # float32 decoding: not on the edges themselves
    col = mult.encode(k, u)
    assert abs(float(col.mean())) < 0.01 and abs(float(col.std()) - 1) < 0.01  # standardised
    np.testing.assert_array_equal(mult(col.float()).argmax(-1).numpy(), k.numpy())
    # outside the training range the outer multiplicities take over, no event lost
    far = mult(torch.tensor([-10.0, 10.0]))
    assert far[0].tolist() == [1, 0, 0] and far[1].tolist() == [0, 0, 1]


class _Fixed(nn.Module):
    """A 'sampler' that returns given coordinates: isolates the pipeline's decoding."""

    def __init__(self, x):
        super().__init__()
        self.register_buffer("x", x)

    def forward(self, z, c):
        return self.x[: len(z)]


def test_pipeline_decodes_the_encoded_particle_level_event_with_the_reco_azimuth():
    """encode (particle level) -> the pipeline's inverse gives the particle-level momenta back
    when the reco leading muon has the particle-level azimuth (here: reco = particle level)."""
    sample = paired_identity(2000, 3)
    coords = UnfoldCoords((1, 2, 3), 20.0, 0.0).fit(sample)  # zjets_like has jet pairs closer than 0.4
    x, c = coords.encode(sample, torch.Generator().manual_seed(0))
    assert x.shape == (2000, coords.dim) and c.shape == (2000, coords.cond_dim)
    sampler = FrozenSampler(_Fixed(x.float()), 4, None, ["normal"] * 4, "fixed")
    pipe = UnfoldPipeline(sampler, coords)
    rows = reco_rows(sample, (1, 2, 3), "test").float()
    p, n_jets, charge = pipe(torch.cat([rows, torch.zeros(len(rows), 4)], dim=-1))
    gen = level(sample, GEN_NAMES)
    np.testing.assert_array_equal(n_jets.numpy().astype(int), gen.n_jets)
    want = np.nan_to_num(np.concatenate([gen.padded("Muon", 2), gen.padded("Jet", 3)], axis=1))
    got = p.double().numpy()
    present = want[..., 0] > 0
    np.testing.assert_allclose(got[..., 0][present], want[..., 0][present], rtol=2e-4)  # pT, float32 decoding
    np.testing.assert_allclose(got[..., 1][present], want[..., 1][present], atol=2e-4)  # eta
    dphi = np.remainder(got[..., 2] - want[..., 2] + np.pi, 2 * np.pi) - np.pi
    assert np.abs(dphi[present]).max() < 2e-4
    assert (got[..., 0][~present] == 0).all()


def test_reco_rows_refuse_events_outside_the_reco_selection_and_non_paired_samples():
    sample = paired_identity(50, 4)
    sample = replace(sample, collections={**sample.collections, "Jet": sample["Jet"][:, :0]})  # no reco jets
    with pytest.raises(InputError, match="outside the reco selection"):
        reco_rows(sample, (1, 2, 3), "f.root")
    plain = zjets_like(20, 1)
    with pytest.raises(InputError, match="not a paired"):
        PROCESS.validation_sample(replace(plain, collections={"GenMuon": plain["Muon"], "GenJet": plain["Jet"]}, scalars={
            "pass_gen": np.ones(20, bool)}), "f.root", print)
