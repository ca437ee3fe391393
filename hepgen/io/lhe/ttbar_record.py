"""The ``<event>`` blocks of a dileptonic tt̄ sample: a parton-level record of the hard process.

A sample whose objects are the six tt̄ decay products (:mod:`hepgen.dilepton`: a ``GenPart``
collection, or the reader's ``Jet`` / ``Electron`` / ``Muon`` / ``Neutrino`` whose PDG ids make
exactly the six roles; :func:`ttbar_particles`) is written as the record a LO generator writes
for g g -> t tbar -> b W+ bbar W- -> b l+ nu bbar l- nubar (momenta and masses in GeV, every
real number ``%.17e``)::

    line  PDG     status  mothers  colour  momentum
    1     21      -1      0 0      501 502  x1 (E1 along +z), x2 from beam_fractions
    2     21      -1      0 0      503 501  x2 (E2 along -z)
    3     6        2      1 2      503 0    b + l+ + nu
    4     -6       2      1 2      0 502    bbar + l- + nubar
    5     24       2      3 3      0 0      l+ + nu
    6     -24      2      4 4      0 0      l- + nubar
    7     5        1      3 3      503 0    b: carries the top's colour
    8     -11/-13  1      5 5      0 0      l+
    9     12/14    1      5 5      0 0      nu
    10    -5       1      4 4      0 502    bbar: the antitop's anticolour
    11    11/13    1      6 6      0 0      l-
    12    -12/-14  1      6 6      0 0      nubar

The incoming partons are always two gluons: the samples do not say which initial state made
an event, and g g -> t tbar is about 90 % of tt̄ at 13 TeV; the colour flow is that of g g ->
t tbar. ``x1, x2`` follow from the final-state sum (:func:`hepgen.kinematics.beam_fractions`,
as for the Z+jets record), so E and pz are conserved exactly; the final state of a sample
without ISR balances in pT, so all of (E, p) is. The t, tbar, W+ and W- lines carry the sums
of their decay products and M = their invariant mass. The final-state masses are the sample's
(b 4.8 GeV, leptons, neutrinos 0); E and pz follow from (pt, eta, phi, m) (given_E /
given_pz fields are not used). Head, weights and ``<rwgt>`` are as for every hepgen record
(:mod:`.event_record`). Read back with :func:`hepgen.io.lhe.read_lhe`, :func:`hepgen.dilepton.assign`
gives the written four-vectors (to float64 precision).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ...dilepton import ANTITOP, TOP, W_MINUS, W_PLUS, assign
from ...errors import InputError, OutputError
from ...events import GENPART, EventSample
from ...kinematics import epxpypz_to_ptetaphim, ptetaphim_to_epxpypz
from .event_record import HEAD, REAL, incoming, rwgt_blocks

# the fixed lines: (PDG id, status, mother1, mother2, colour, anticolour); PDG 0: the sample's id
_INTERMEDIATE = ((6, 2, 1, 2, 503, 0), (-6, 2, 1, 2, 0, 502), (24, 2, 3, 3, 0, 0), (-24, 2, 4, 4, 0, 0))
_FINAL = ((1, 3, 3, 503, 0), (1, 5, 5, 0, 0), (1, 5, 5, 0, 0), (1, 4, 4, 0, 502), (1, 6, 6, 0, 0), (1, 6, 6, 0, 0))
_SYSTEMS = (TOP, ANTITOP, W_PLUS, W_MINUS)  # the final-state particles each intermediate line sums


def ttbar_particles(sample: EventSample, path) -> tuple[np.ndarray, np.ndarray] | None:
    """(p ``[N, 6, 4]`` (pt, eta, phi, m), pdg ``[N, 6]``) of a sample of the six tt̄ decay products
    (see the module docstring), None for any other sample. A ``GenPart`` collection that is not
    the six is an :class:`OutputError` naming ``path``."""
    colls = sample.collections
    if GENPART in colls:
        try:
            return assign(sample, str(path))
        except InputError as err:
            raise OutputError(str(err)) from None
    if not colls or not all("pdgId" in c.fields for c in colls.values()):
        return None
    try:
        return assign(sample, str(path))
    except InputError:  # other objects (Z+jets read from LHE, ...): the hadron-level record
        return None


def ttbar_events_text(p: np.ndarray, pdg: np.ndarray, w: np.ndarray, weights: Mapping[str, np.ndarray],
                      beam_energies: tuple[float, float], path) -> str:
    """The ``<event>`` blocks of ``p`` ``[N, 6, 4]`` and ``pdg`` ``[N, 6]`` (:data:`hepgen.dilepton.ROLES`
    order); ``w``, ``weights``, ``beam_energies`` and ``path`` as for
    :func:`hepgen.io.lhe.event_record.events_text`."""
    n = len(p)
    with np.errstate(over="ignore", invalid="ignore"):
        e, px, py, pz = ptetaphim_to_epxpypz(p[..., 0], p[..., 1], p[..., 2], p[..., 3])
    mom = np.stack([px, py, pz, e], axis=-1)  # [N, 6, 4]: px, py, pz, E
    tot = {k: mom[:, :, j].sum(axis=1) for j, k in enumerate(("px", "py", "pz", "e"))}
    e1, e2, shat = incoming(tot, beam_energies, path)
    zero = np.zeros(n)
    rows = [np.stack([zero, zero, e1, e1, zero], axis=-1), np.stack([zero, zero, -e2, e2, zero], axis=-1)]
    for parts in _SYSTEMS:
        s = mom[:, list(parts)].sum(axis=1)
        mass = epxpypz_to_ptetaphim(s[:, 3], s[:, 0], s[:, 1], s[:, 2])[3]
        rows.append(np.concatenate([s, mass[:, None]], axis=-1))
    rows += [np.concatenate([mom[:, k], p[:, k, 3:4]], axis=-1) for k in range(6)]
    table = np.stack(rows, axis=1).reshape(-1)  # [N * 12 * 5]: px py pz E M per line

    row5 = " ".join([REAL] * 5)
    fixed = ([f"21 -1 0 0 501 502 {row5} 0 9\n", f"21 -1 0 0 503 501 {row5} 0 9\n"]
             + [f"{i} {s} {m1} {m2} {c} {a} {row5} 0 9\n" for i, s, m1, m2, c, a in _INTERMEDIATE]
             + [f"%d {s} {m1} {m2} {c} {a} {row5} 0 9\n" for s, m1, m2, c, a in _FINAL])
    template = "<event>\n" + HEAD + "".join(fixed)
    rwgt = rwgt_blocks(weights, n)
    values = table.tolist()
    ids = pdg.tolist()
    w_l, shat_l = w.tolist(), shat.tolist()
    out = []
    per_event = 12 * 5
    for i in range(n):
        v = values[i * per_event:(i + 1) * per_event]
        args = [12, w_l[i], shat_l[i], *v[:30]]
        for k in range(6):
            args += [ids[i][k], *v[30 + 5 * k:35 + 5 * k]]
        out.append(template % tuple(args))
        out.append(rwgt[i])
        out.append("</event>\n")
    return "".join(out)
