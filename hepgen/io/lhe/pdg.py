"""PDG ids <-> hepgen object collections, for LHE files in both directions.

Reading (:func:`collection_for_pdg`): a final-state particle goes to a collection by its
PDG id: ``|11| Electron``, ``|13| Muon``, ``|15| Tau``, ``22 Photon``, ``|12|,|14|,|16|
Neutrino``, quarks ``|1..5|`` and ``21`` -> ``Jet``, ``|6| Top``, ``23, |24|, 25 Boson``,
anything else ``Other``; collections are ordered as :data:`COLLECTION_ORDER`.

Writing (:func:`pdg_ids`): ``Muon`` -> ``13``/``-13`` from its charge (``charge -1 -> 13``;
without a charge field the leading muon is 13 and the next -13), ``Electron``/``Tau``
likewise, ``Photon`` -> 22, ``Jet`` -> 21 (a gluon) whatever flavour a pdgId field says, any
other collection with a ``pdgId`` field -> that field.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from ...errors import OutputError

CHARGED_LEPTONS = {"Electron": 11, "Muon": 13, "Tau": 15}
FIXED_PDG = {"Jet": 21, "Photon": 22}
COLLECTION_ORDER = ("Muon", "Electron", "Tau", "Photon", "Neutrino", "Jet", "Top", "Boson", "Other")


def collection_for_pdg(pdg: int) -> str:
    """Collection name of a final-state particle with PDG id ``pdg`` (see module docstring)."""
    a = abs(pdg)
    if a == 11:
        return "Electron"
    if a == 13:
        return "Muon"
    if a == 15:
        return "Tau"
    if a == 22:
        return "Photon"
    if a in (12, 14, 16):
        return "Neutrino"
    if 1 <= a <= 5 or a == 21:
        return "Jet"
    if a == 6:
        return "Top"
    if a in (23, 24, 25):
        return "Boson"
    return "Other"


def collection_rank(name: str) -> int:
    """Sort key of a collection name read from a file (its place in :data:`COLLECTION_ORDER`)."""
    return COLLECTION_ORDER.index(name)


def pdg_ids(name: str, coll: ak.Array, path) -> ak.Array:
    """PDG ids int64 ``[N, var]`` to write for collection ``name`` (see module docstring);
    :class:`OutputError` naming ``path`` when the collection has none."""
    if name in FIXED_PDG:  # jets are hadron-level objects: written as gluons, whatever their flavour
        return ak.values_astype(ak.zeros_like(coll.pt), np.int64) + FIXED_PDG[name]
    if "pdgId" in coll.fields:
        return ak.values_astype(coll.pdgId, np.int64)
    if name in CHARGED_LEPTONS:
        base = CHARGED_LEPTONS[name]
        if "charge" in coll.fields:
            charge = ak.values_astype(coll.charge, np.int64)
            return ak.where(charge < 0, base, -base)
        idx = ak.local_index(coll.pt, axis=1)
        return ak.where(idx % 2 == 0, base, -base)
    raise OutputError(f"{path}: collection {name!r} has no pdgId field and no known PDG id")
