"""The ``<event>`` blocks of an LHE file, built for hadron-level objects (muons, jets).

(A sample of the six tt̄ decay products gets a parton-level record instead:
:mod:`hepgen.io.lhe.ttbar_record`; the two share :func:`incoming` and :func:`rwgt_blocks`.)

hepgen's events are final-state objects, not a parton-level hard process, so a record is made
for them (momenta and masses in GeV; every real number is written ``%.17e``, which
round-trips float64):

* every object becomes a final-state line (status 1) with its PDG id from
  :func:`hepgen.io.lhe.pdg.pdg_ids`, (E, px, py, pz) from (pT, eta, phi, m) and M = its mass;
  where the collection has ``given_E`` / ``given_pz`` (:data:`hepgen.events.GIVEN_FIELDS`, kept
  by the readers for pT = 0 along the beam, E < 0, ...), a value that is not NaN is written as
  E / pz instead, and the Z, the incoming partons and the beam check use it too;
* with exactly two muons in an event, an intermediate Z (``23``, status 2) carries their
  summed four-momentum and is the muons' mother;
* two incoming partons (status -1), ``u`` along +z and ``ubar`` along -z, with zero pT:
  ``x1, x2`` from :func:`hepgen.kinematics.beam_fractions` of the final-state sum (beam i:
  ``x_i = (E ± pz) / (2 E_i)``), so E and pz are conserved exactly; an event with ``x1 > 1``
  or ``x2 > 1`` (more energy than a beam) is an :class:`OutputError`. The final state's transverse momentum (non-zero at hadron
  level) is not balanced; Pythia 8 accepts such records (``Beams:frameType = 4``);
* colours: one chain ``u -> gluon jets -> ubar`` (tags 501, 502, ...), colour-consistent
  for Pythia's checks;
* ``XWGTUP`` is the event weight as given, ``SCALUP`` the final-state invariant mass
  sqrt(x1 x2 s), ``AQEDUP = AQCDUP = -1``, ``SPINUP = 9``, ``VTIMUP = 0``;
* weight variations go to ``<rwgt><wgt id=..>`` lines in the order given (none for a NaN:
  the event lacks that id).
"""

from __future__ import annotations

from typing import Mapping
from xml.sax.saxutils import escape

import awkward as ak
import numpy as np

from ...errors import OutputError
from ...events import GIVEN_FIELDS, EventSample
from ...kinematics import beam_fractions, ptetaphim_to_epxpypz
from ...selection import within_beams
from .pdg import pdg_ids

REAL = "%.17e"  # every real number: float64 round trip
HEAD = f"%d 1 {REAL} {REAL} -1 -1\n"  # NUP IDPRUP XWGTUP SCALUP AQEDUP AQCDUP


def incoming(tot: Mapping[str, np.ndarray], beam_energies: tuple[float, float], path) -> tuple[np.ndarray, ...]:
    """(E1, E2, sqrt(s-hat)) ``[N]`` GeV of the two incoming partons (along +z and -z, no pT)
    that make final states of total ``tot`` (``e``, ``px``, ``py``, ``pz`` ``[N]``, GeV):
    :func:`hepgen.kinematics.beam_fractions` times the beam energies. Non-finite momenta or more
    energy than the beams are an :class:`OutputError` naming ``path``."""
    if not all(np.isfinite(v).all() for v in tot.values()):
        raise OutputError(f"{path}: non-finite momenta in the events (NaN or inf)")
    b1, b2 = beam_energies
    sqrt_s = 2 * np.sqrt(b1 * b2)  # 2 E exactly for symmetric beams
    x1, x2 = beam_fractions(tot["e"], tot["pz"], b1, b2)
    if not within_beams(tot["e"], tot["pz"], b1, b2).all():
        raise OutputError(f"{path}: an event has more energy than the beams (x > 1 with beams of {b1:g} and {b2:g} GeV)")
    e1, e2 = x1 * (2 * b1) / 2, x2 * (2 * b2) / 2
    return e1, e2, np.sqrt(np.clip(x1 * x2, 0, None)) * sqrt_s


def rwgt_blocks(weights: Mapping[str, np.ndarray], n: int) -> list[str]:
    """Per event, its ``<rwgt>`` block ("" without variations; no ``<wgt>`` line for a NaN: the
    event lacks that id)."""
    if not weights:
        return [""] * n
    fmts = [f'<wgt id="{escape(k)}">{REAL}</wgt>\n' for k in weights]
    vals = [weights[k].tolist() for k in weights]
    return ["<rwgt>\n" + "".join(f % v[i] for f, v in zip(fmts, vals) if v[i] == v[i]) + "</rwgt>\n"
            for i in range(n)]


def events_text(sample: EventSample, w: np.ndarray, weights: Mapping[str, np.ndarray],
                beam_energies: tuple[float, float], path) -> str:
    """The ``<event>`` blocks of one chunk (vectorised per field, joined per event).

    ``w``: float64 ``[N]`` event weights (XWGTUP); ``weights``: name -> float64 ``[N]``
    variations (``<rwgt>``); ``beam_energies`` (E1 along +z, E2 along -z) in GeV; ``path``
    names the file in errors.
    """
    n = len(sample)
    # flat final-state objects, grouped per event in collection order
    if not sample.collections:
        raise OutputError(f"{path}: the sample has no object collections to write")
    parts = []
    for name, coll in sample.collections.items():
        with np.errstate(over="ignore", invalid="ignore"):  # pT = 0 at a huge eta: E, pz given below
            e, px, py, pz = ptetaphim_to_epxpypz(
                *(ak.values_astype(coll[f], np.float64) for f in ("pt", "eta", "phi", "mass"))
            )
        given_e, given_pz = (ak.values_astype(coll[f], np.float64) if f in coll.fields else None
                             for f in GIVEN_FIELDS)
        if given_e is not None:  # E and pz as the source gave them (NaN: rebuilt above)
            e = ak.where(np.isnan(given_e), e, given_e)
        if given_pz is not None:
            pz = ak.where(np.isnan(given_pz), pz, given_pz)
        parts.append(ak.zip({
            "pdg": pdg_ids(name, coll, path),
            "px": px, "py": py, "pz": pz, "e": e,
            "m": ak.values_astype(coll.mass, np.float64),
            "muon": ak.full_like(coll.pt, name == "Muon", dtype=bool),
        }))
    fs = ak.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    tot = {k: ak.to_numpy(ak.sum(fs[k], axis=1)) for k in ("e", "px", "py", "pz")}
    e1, e2, shat = incoming(tot, beam_energies, path)
    muon_pair = "Muon" in sample.collections
    n_mu = sample.multiplicity("Muon") if muon_pair else np.zeros(n, np.int64)
    row5 = " ".join([REAL] * 5)

    counts = ak.to_numpy(ak.num(fs.pdg, axis=1))
    pdg = ak.to_numpy(ak.flatten(fs.pdg))
    is_mu = ak.to_numpy(ak.flatten(fs.muon))
    cols = {k: ak.to_numpy(ak.flatten(fs[k])) for k in ("px", "py", "pz", "e", "m")}
    lines_mom = [
        row5 % row
        for row in zip(*(cols[f].tolist() for f in ("px", "py", "pz", "e", "m")))
    ]
    # the Z: four-momentum sum of exactly two muons, as written
    z_lines = [None] * n
    if muon_pair:
        mu = fs[fs.muon]
        zp = {f: ak.to_numpy(ak.sum(mu[f], axis=1)) for f in ("px", "py", "pz", "e")}
        zm = np.sqrt(np.clip(zp["e"] ** 2 - zp["px"] ** 2 - zp["py"] ** 2 - zp["pz"] ** 2, 0.0, None))
        z_fmt = f"23 2 1 2 0 0 {row5} 0 9\n"
        z_lines = [
            z_fmt % vals if two else None
            for vals, two in zip(zip(*(zp[f].tolist() for f in ("px", "py", "pz", "e")), zm.tolist()), (n_mu == 2).tolist())
        ]
    head_fmt = HEAD
    in1_fmt = f"2 -1 0 0 501 0 {REAL} {REAL} {REAL} {REAL} {REAL} 0 9\n"
    in2_fmt = f"-2 -1 0 0 0 %d {REAL} {REAL} {REAL} {REAL} {REAL} 0 9\n"
    rwgt = rwgt_blocks(weights, n)
    pdg_l, is_mu_l, counts_l = pdg.tolist(), is_mu.tolist(), counts.tolist()
    w_l, shat_l, e1_l, e2_l = w.tolist(), shat.tolist(), e1.tolist(), e2.tolist()
    out = []
    start = 0
    for i in range(n):
        c = counts_l[i]
        z = z_lines[i]
        out.append("<event>\n")
        out.append(head_fmt % (2 + c + (z is not None), w_l[i], shat_l[i]))
        out.append(in1_fmt % (0.0, 0.0, e1_l[i], e1_l[i], 0.0))
        body = []
        # colour chain: u (col 501) -> gluon jets -> ubar; gluon j: col = previous tag, acol = next
        tag = 501
        for k in range(start, start + c):
            mothers = "3 3" if z is not None and is_mu_l[k] else "1 2"
            if pdg_l[k] == 21:
                body.append(f"21 1 {mothers} {tag} {tag + 1} {lines_mom[k]} 0 9\n")
                tag += 1
            else:
                body.append(f"{pdg_l[k]} 1 {mothers} 0 0 {lines_mom[k]} 0 9\n")
        start += c
        out.append(in2_fmt % (tag, 0.0, 0.0, -e2_l[i], e2_l[i], 0.0))
        if z is not None:
            out.append(z)
        out.extend(body)
        out.append(rwgt[i])
        out.append("</event>\n")
    return "".join(out)
