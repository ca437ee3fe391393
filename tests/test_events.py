"""EventSample, kinematics and named observables against independent formulas."""

import math

import awkward as ak
import numpy as np
import pytest
import torch
import vector

from hepgen import kinematics as kin
from hepgen import observables
from hepgen.errors import HepgenError, InputError
from hepgen.events import EventSample, make_collection


def _sample(seed=0, n=200):
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 4, n)
    jpt = np.sort(rng.uniform(20, 200, (n, 3)), axis=1)[:, ::-1]
    flat = np.concatenate([jpt[i, : counts[i]] for i in range(n)])
    m = counts.sum()
    jets = make_collection(flat, rng.normal(0, 2, m), rng.uniform(-np.pi, np.pi, m), rng.uniform(1, 20, m), counts=counts)
    mpt = np.sort(rng.uniform(10, 80, (n, 2)), axis=1)[:, ::-1]
    muons = make_collection(mpt, rng.normal(0, 1.5, (n, 2)), rng.uniform(-np.pi, np.pi, (n, 2)),
                            np.full((n, 2), kin.MUON_MASS), charge=np.tile([1, -1], (n, 1)))
    return EventSample.build({"Muon": muons, "Jet": jets}, info={"source": "test"})


def test_four_vector_conversions_round_trip_and_agree_with_vector():
    rng = np.random.default_rng(1)
    pt, eta, phi, m = rng.uniform(1, 500, 1000), rng.normal(0, 2.5, 1000), rng.uniform(-np.pi, np.pi, 1000), rng.uniform(0, 50, 1000)
    e, px, py, pz = kin.ptetaphim_to_epxpypz(pt, eta, phi, m)
    ref = vector.array({"pt": pt, "eta": eta, "phi": phi, "mass": m})
    np.testing.assert_allclose(e, ref.E, rtol=1e-12)
    np.testing.assert_allclose(pz, ref.pz, rtol=1e-12)
    back = kin.epxpypz_to_ptetaphim(e, px, py, pz)
    for a, b in zip(back[:3], (pt, eta, phi)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(back[3], m, atol=1e-6 * e.max())


def test_kinematics_accepts_torch_with_same_numbers():
    phi1, phi2 = np.array([3.0, -3.0, 0.5]), np.array([-3.0, 3.0, 0.4])
    expected = np.array([6.0 - 2 * math.pi, 2 * math.pi - 6.0, 0.1])
    np.testing.assert_allclose(kin.delta_phi(phi1, phi2), expected, atol=1e-12)
    got = kin.delta_phi(torch.tensor(phi1), torch.tensor(phi2)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_sample_basics_select_concatenate_padded():
    s = _sample()
    assert len(s) == 200
    assert set(np.unique(s.n_jets)) == {1, 2, 3}
    two = s.select(s.n_jets == 2)
    assert (two.n_jets == 2).all() and len(two) == (s.n_jets == 2).sum()
    both = EventSample.concatenate([s, two])
    assert len(both) == len(s) + len(two)
    pad = s.padded("Jet", 3)
    assert pad.shape == (200, 3, 4)
    assert np.isnan(pad[s.n_jets == 1, 1:, :]).all()
    assert not np.isnan(pad[:, 0, :]).any()
    np.testing.assert_array_equal(pad[:, 0, 0], ak.to_numpy(s["Jet"].pt[:, 0]))


def test_missing_collection_and_nan_are_clear_errors():
    s = _sample()
    with pytest.raises(InputError, match="no collection 'Electron'"):
        s["Electron"]
    bad = make_collection([[np.nan, 1.0]], [[0.0, 0.0]], [[0.0, 0.0]], [[0.0, 0.0]])
    with pytest.raises(InputError, match="non-finite values in Muon_pt"):
        EventSample.build({"Muon": bad}).check_finite()


def test_observables_match_vector_sums():
    s = _sample(3)
    obs = observables.compute(s, ["m_mumu", "pt_mumu", "HT", "dR_j1j2", "dphi_mu1j1", "pt_j3", "n_jets"])
    dimuon = s["Muon"][:, 0] + s["Muon"][:, 1]
    np.testing.assert_allclose(obs["m_mumu"], ak.to_numpy(dimuon.mass), rtol=1e-6)
    np.testing.assert_allclose(obs["pt_mumu"], ak.to_numpy(dimuon.pt), rtol=1e-6)
    np.testing.assert_allclose(obs["HT"], ak.to_numpy(ak.sum(s["Jet"].pt, axis=1)), rtol=1e-12)
    has2 = s.n_jets >= 2
    j = s["Jet"][has2]
    np.testing.assert_allclose(obs["dR_j1j2"][has2], ak.to_numpy(j[:, 0].deltaR(j[:, 1])), rtol=1e-9)
    assert np.isnan(obs["dR_j1j2"][~has2]).all()
    np.testing.assert_allclose(obs["dphi_mu1j1"], ak.to_numpy(s["Muon"][:, 0].deltaphi(s["Jet"][:, 0])), atol=1e-9)
    assert np.isnan(obs["pt_j3"][s.n_jets < 3]).all()
    np.testing.assert_array_equal(obs["n_jets"], s.n_jets)


def test_observable_names_and_labels():
    assert observables.get("pt_j1").axis_label == "$p_{T,j_1}$ [GeV]"
    assert observables.get("dR_j1j2").unit == ""
    names = observables.zjets_default()
    assert len(names) == len(set(names))
    assert {"m_mumu", "dR_mu2j3", "m_j3", "deta_j2j3"} <= set(names)
    with pytest.raises(HepgenError, match="unknown observable 'pt_j9x'"):
        observables.get("pt_j9x")
