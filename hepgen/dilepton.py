"""The dileptonic tt̄ final state: six particles in one fixed, documented order.

pp -> t tbar -> (b W+)(bbar W-) -> b l+ nu  bbar l- nubar, with l = e or mu. hepgen keeps the
six decay products as one collection ``GenPart`` (NanoAOD GenPart style: ``pt, eta, phi,
mass, pdgId``) in this order, the order of :data:`ROLES`::

    index  role    PDG ids
    0      b       5
    1      l+      -11, -13
    2      nu      12, 14
    3      bbar    -5
    4      l-      11, 13
    5      nubar   -12, -14

so particles 0-2 are the top's decay products, 3-5 the antitop's, 1-2 the W+'s and 4-5 the
W-'s (the truth assignment the validation uses). Unlike the other collections, ``GenPart`` is
NOT pT-ordered: readers keep its order, and :func:`assign` rebuilds it from PDG ids wherever the
particles come from (a hepgen ROOT file, an LHE file of any generator, whose readers put the
final-state b's in ``Jet`` and the leptons in ``Electron`` / ``Muon`` / ``Neutrino``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import awkward as ak
import numpy as np

from .errors import InputError
from .events import GENPART, EventSample, make_collection

COLLECTION = GENPART  # kept in this order by the readers (hepgen.events.RECORD_ORDER)
ROLES = ("b", "l+", "nu", "bbar", "l-", "nubar")
ROLE_PDG = {
    "b": (5,),
    "l+": (-11, -13),
    "nu": (12, 14),
    "bbar": (-5,),
    "l-": (11, 13),
    "nubar": (-12, -14),
}
N_PARTICLES = len(ROLES)
TOP, ANTITOP = (0, 1, 2), (3, 4, 5)
W_PLUS, W_MINUS = (1, 2), (4, 5)


@dataclass(frozen=True)
class TTbarSettings:
    """The tt̄ process's own card keys (``process.settings`` of cards/ttbar_*.yaml)."""

    # top and W line shapes: "narrow" forces both widths to NARROW_WIDTH (on-shell: m_t = 173.0,
    # m_W = 80.385 GeV); "breit_wigner" keeps Pythia's widths (off-shell in Pythia's sense, docs/ttbar.md)
    widths: Literal["narrow", "breit_wigner"] = "breit_wigner"
    leptons: tuple[Literal["e", "mu"], ...] = ("e", "mu")  # the W decays kept: W -> e nu and/or mu nu
    # network coordinates (hepgen.coords.ttbar): each particle's pT, eta, phi ("particles") or the
    # resonance-aware decay chain with m_t and m_W as columns ("decay")
    coordinates: Literal["particles", "decay"] = "decay"
    # the reference line shape of the decay scheme's mass columns: a Breit-Wigner, or one whose tails are
    # bent onto the training sample's (Pythia's W is skewed; hepgen/coords/lineshape.py, docs/ttbar.md)
    line_shape: Literal["breit_wigner", "fitted"] = "breit_wigner"


NARROW_WIDTH = 1e-6  # GeV: the forced top and W widths of widths: narrow


def role_of(pdg: np.ndarray) -> np.ndarray:
    """int ``[...]``: the role index (0..5) of each PDG id, -1 for a particle that has none."""
    pdg = np.asarray(pdg)
    out = np.full(pdg.shape, -1, dtype=np.int64)
    for k, role in enumerate(ROLES):
        out[np.isin(pdg, ROLE_PDG[role])] = k
    return out


def assign(sample: EventSample, source: str = "sample") -> tuple[np.ndarray, np.ndarray]:
    """(p ``[N, 6, 4]`` float64 (pt GeV, eta, phi rad, mass GeV), pdg ``[N, 6]`` int64) in
    :data:`ROLES` order, from every object of every collection of ``sample`` by its ``pdgId``.

    Each event must hold exactly the six decay products, one per role; anything else (a
    collection without PDG ids, a missing or extra particle, a tau) is one :class:`InputError`
    line naming ``source`` and the first offending event."""
    n = len(sample)
    parts = []
    for name, coll in sample.collections.items():
        if len(coll) and ak.max(ak.num(coll, axis=1), initial=0) == 0:
            continue
        if "pdgId" not in coll.fields:
            raise InputError(f"{source}: collection {name!r} has no PDG ids; a tt̄ sample needs the six decay "
                             f"products with pdgId ({', '.join(ROLES)})")
        parts.append(coll)
    if not parts:
        raise InputError(f"{source}: no particles; a tt̄ sample needs the six decay products ({', '.join(ROLES)})")
    counts = sum(ak.to_numpy(ak.num(c, axis=1)) for c in parts)
    fields = ("pt", "eta", "phi", "mass")
    flat = {f: np.concatenate([ak.to_numpy(ak.flatten(c[f])).astype(np.float64) for c in parts]) for f in fields}
    pdg = np.concatenate([ak.to_numpy(ak.flatten(c["pdgId"])).astype(np.int64) for c in parts])
    event = np.concatenate([np.repeat(np.arange(n), ak.to_numpy(ak.num(c, axis=1))) for c in parts])
    role = role_of(pdg)
    bad_count = np.flatnonzero(counts != N_PARTICLES)
    if len(bad_count):
        i = int(bad_count[0])
        raise InputError(f"{source}: event {i} has {int(counts[i])} particles, a dileptonic tt̄ event has "
                         f"{N_PARTICLES} ({', '.join(ROLES)}); {len(bad_count)} events differ")
    if (role < 0).any():
        j = int(np.flatnonzero(role < 0)[0])
        raise InputError(f"{source}: event {int(event[j])} has a particle with PDG id {int(pdg[j])}, which is no "
                         f"decay product of dileptonic tt̄ ({', '.join(f'{r} {ROLE_PDG[r]}' for r in ROLES)})")
    seen = np.zeros((n, N_PARTICLES), dtype=np.int64)
    np.add.at(seen, (event, role), 1)
    if (seen != 1).any():
        i, k = (int(v) for v in np.argwhere(seen != 1)[0])
        raise InputError(f"{source}: event {i} has {int(seen[i, k])} particles of role {ROLES[k]} "
                         f"(PDG {ROLE_PDG[ROLES[k]]}); each role appears once")
    p = np.empty((n, N_PARTICLES, 4))
    ids = np.empty((n, N_PARTICLES), dtype=np.int64)
    p[event, role] = np.stack([flat[f] for f in fields], axis=-1)
    ids[event, role] = pdg
    return p, ids


def to_sample(p: np.ndarray, pdg: np.ndarray, weight=None, info=None, variations=None) -> EventSample:
    """An EventSample with the one collection ``GenPart`` from ``p`` ``[N, 6, 4]`` (pt, eta,
    phi, mass) and ``pdg`` ``[N, 6]`` in :data:`ROLES` order."""
    n = len(p)
    flat = np.asarray(p, dtype=np.float64).reshape(-1, 4)
    coll = make_collection(flat[:, 0], flat[:, 1], flat[:, 2], flat[:, 3], counts=np.full(n, N_PARTICLES),
                           pdgId=np.asarray(pdg).reshape(-1).astype(np.int32))
    return EventSample.build({COLLECTION: coll}, weight, info, variations)
