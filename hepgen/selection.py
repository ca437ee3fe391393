"""The Z+jets object selection, one implementation with one boundary rule.

Simulation (:mod:`hepgen.simulate.selection`), generation (:mod:`hepgen.processes.zjets`) and
validation (:func:`cut_violations`) all decide with these functions:

- a jet is selected when ``pT > jet_pt_min`` and ``|eta| < jet_eta_max`` (strict);
- two selected jets are separated when ``Delta R > jet_dr_min`` (strict: a pair at exactly
  ``jet_dr_min`` fails), and an event with a pair that is not separated is dropped;
- a final state fits into the beams when its light-cone momentum fractions
  ``x1,2 = (E +- pz) / (2 E_beam1,2)`` are at most 1.

Arrays are numpy; jets come padded ``[N, J]`` with a ``present`` mask ``[N, J]``.
"""

from __future__ import annotations

import numpy as np

from .kinematics import beam_fractions, delta_r


def jet_selected(pt, eta, pt_min: float, eta_max: float):
    """Per jet: pT > pt_min and |eta| < eta_max (NaN fails)."""
    return (pt > pt_min) & (np.abs(eta) < eta_max)


def separated(dr, dr_min: float):
    """Per jet pair: Delta R > dr_min (NaN fails)."""
    return dr > dr_min


def min_pair_dr(eta: np.ndarray, phi: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Smallest Delta R between present jets ``[N]`` (inf with fewer than two)."""
    out = np.full(len(eta), np.inf)
    n_slots = eta.shape[1]
    for a in range(n_slots):
        for b in range(a + 1, n_slots):
            both = present[:, a] & present[:, b]
            dr = delta_r(eta[:, a], phi[:, a], eta[:, b], phi[:, b])
            out = np.where(both, np.minimum(out, dr), out)
    return out


def within_beams(e: np.ndarray, pz: np.ndarray, beam1: float, beam2: float) -> np.ndarray:
    """Per event: finite, and the beam fractions x1, x2 (:func:`hepgen.kinematics.beam_fractions`
    of E, pz summed over the final state; beam energies in GeV) at most 1."""
    with np.errstate(over="ignore", invalid="ignore"):
        x1, x2 = beam_fractions(e, pz, beam1, beam2)
        return np.isfinite(e) & (x1 <= 1) & (x2 <= 1)


def cut_violations(sample, jet_pt_min: float = 20.0, jet_dr_min: float = 0.4) -> dict:
    """Fractions (weighted) of events with a jet at or below ``jet_pt_min`` GeV, with a jet pair
    not separated by more than ``jet_dr_min``, and with either: the events the selection
    (this module's rule, which simulation and generation apply) would have dropped. ``sample``:
    an :class:`~hepgen.events.EventSample` with a ``Jet`` collection."""
    w = sample.weight
    jets = sample.padded("Jet", int(sample.n_jets.max()) if len(sample) else 1)
    pt, eta, phi = jets[..., 0], jets[..., 1], jets[..., 2]
    present = ~np.isnan(pt)
    low_pt = np.any(present & ~(pt > jet_pt_min), axis=1)
    close = ~separated(min_pair_dr(eta, phi, present), jet_dr_min)
    tot = w.sum() if len(w) else 1.0
    return {
        f"jet_pt_below_{jet_pt_min:g}": float(w[low_pt].sum() / tot),
        f"dR_jj_below_{jet_dr_min:g}": float(w[close].sum() / tot),
        "any": float(w[low_pt | close].sum() / tot),
    }
