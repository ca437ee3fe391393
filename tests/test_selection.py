"""One Z+jets selection with one boundary rule, in simulation, generation and validation.

A jet pair exactly at ``jet_dr_min`` and a jet exactly at ``jet_pt_min`` fail everywhere:
generation drops the event (:func:`hepgen.processes.zjets.acceptance`), validation counts it as
a cut violation (:func:`hepgen.validate.metrics.cut_violations`), and the simulation's rule
(:mod:`hepgen.selection`, used by :mod:`hepgen.simulate.selection`) says the same.
"""

from __future__ import annotations

import numpy as np

from hepgen import selection
from hepgen.cards import card_from_dict
from hepgen.events import EventSample, make_collection
from hepgen.kinematics import delta_r
from hepgen.processes.zjets import acceptance
from hepgen.validate import metrics


def _events(jets):
    """Two central muons and the given jets [(pt, eta, phi), ...] per event -> (p [N, 5, 4], n_jets, sample)."""
    n = len(jets)
    p = np.zeros((n, 5, 4))
    p[:, 0] = [45.0, 0.1, 0.0, 0.1057]
    p[:, 1] = [40.0, -0.2, 3.0, 0.1057]
    for i, ev in enumerate(jets):
        for j, (pt, eta, phi) in enumerate(ev):
            p[i, 2 + j] = [pt, eta, phi, 5.0]
    nj = np.array([len(ev) for ev in jets])
    flat = [x for ev in jets for x in ev]
    jet = make_collection(np.array([f[0] for f in flat]), np.array([f[1] for f in flat]), np.array([f[2] for f in flat]),
                          np.full(len(flat), 5.0), counts=nj)
    mu = make_collection(p[:, :2, 0], p[:, :2, 1], p[:, :2, 2], p[:, :2, 3])
    return p, nj, EventSample.build({"Muon": mu, "Jet": jet})


def test_a_pair_at_the_cut_and_a_jet_at_the_threshold_fail_in_every_stage():
    dr_cut = float(delta_r(0.0, 0.0, 0.4, 0.0))  # the Delta R of the boundary pair, to the bit
    card = card_from_dict({"process": {"jet_dr_min": dr_cut, "jet_pt_min": 20.0}})
    p, nj, sample = _events([
        [(60.0, 0.0, 0.0), (30.0, 0.4, 0.0)],                  # pair exactly at the cut
        [(60.0, 0.0, 0.0), (30.0, 0.4 + 1e-9, 0.0)],           # just outside: kept
        [(60.0, 0.0, 0.0), (20.0, 2.0, 1.0)],                  # a jet exactly at the pT threshold
        [(60.0, 0.0, 0.0)],
    ])
    dr_ok, kin_ok = acceptance(p, nj, card)
    assert dr_ok.tolist() == [False, True, True, True]
    assert kin_ok.tolist() == [True, True, False, True]
    v = metrics.cut_violations(sample, 20.0, dr_cut)
    assert v[f"dR_jj_below_{dr_cut:g}"] == 0.25 and v["jet_pt_below_20"] == 0.25 and v["any"] == 0.5
    assert not selection.separated(dr_cut, dr_cut) and selection.separated(np.nextafter(dr_cut, 1.0), dr_cut)
    assert not selection.jet_selected(20.0, 0.0, 20.0, 5.0) and selection.jet_selected(20.000001, 0.0, 20.0, 5.0)


def test_min_pair_dr_ignores_absent_jets():
    eta = np.array([[0.0, 0.1, np.nan], [0.0, 3.0, 0.2]])
    phi = np.zeros((2, 3))
    present = np.array([[True, False, False], [True, True, True]])
    out = selection.min_pair_dr(eta, phi, present)
    assert out[0] == np.inf and np.isclose(out[1], 0.2)


def test_the_beams_bound_the_final_state():
    e, pz = np.array([6500.0, 6500.0, 13000.0, np.nan]), np.array([0.0, 6500.0, 0.5, 0.0])
    assert selection.within_beams(e, pz, 6500.0, 6500.0).tolist() == [True, True, False, False]
