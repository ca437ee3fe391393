"""The TTree layout hepgen writes and recognises (NanoAOD-style, one tree, default ``Events``)::

    nMuon            int32    [N]          objects per event
    Muon_pt          float32  [N, var]     GeV
    Muon_eta         float32  [N, var]
    Muon_phi         float32  [N, var]     rad
    Muon_mass        float32  [N, var]     GeV
    Muon_charge      int32    [N, var]     when the collection has it
    Muon_pdgId       int32    [N, var]     when the collection has it
    Muon_E           float32  [N, var]     GeV, when the collection has given_E
    Muon_pz          float32  [N, var]     GeV, when the collection has given_pz
    nJet, Jet_pt, ...                      the same for every collection
    weight           float32  [N]          (or genWeight, float64: RootWriter's weight_branch)

``C_E`` / ``C_pz`` hold the energy and pz as a source file gave them where (pt, eta, phi, mass)
cannot rebuild them (:data:`hepgen.events.GIVEN_FIELDS`: pT = 0 along the beam, E < 0, ...),
NaN for every other object; they exist only for collections that carry those fields, so an
ordinary sample has none. Read back, they are ``given_E`` / ``given_pz`` again (a collection
with pt/eta/phi/mass is read as such, never as a Cartesian one).

plus a ``TObjString`` named :data:`INFO_KEY` holding the provenance (JSON, str -> str).
:func:`branch_types` / :func:`chunk_data` give uproot's ``mktree`` types and ``extend``
arrays for a sample (:func:`describe_layout` names the types in errors);
:func:`default_mapping` finds this layout in a tree being read.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping

import awkward as ak
import numpy as np

from ...errors import InputError
from ...events import GIVEN_FIELDS, INT_FIELDS, KINEMATIC_FIELDS, EventSample

INFO_KEY = "hepgen_info"
DEFAULT_CHUNK = 100_000  # events per TTree.extend: few, large baskets
GIVEN_BRANCHES = dict(zip(GIVEN_FIELDS, ("E", "pz")))  # in-memory field -> branch suffix C_<suffix>


def branch_types(sample: EventSample) -> dict[str, object]:
    """uproot ``mktree`` types for a sample: one record type per collection + ``weight``."""
    types: dict[str, object] = {}
    for name, coll in sample.collections.items():
        fields = [f for f in KINEMATIC_FIELDS]
        fields += [f for f in INT_FIELDS if f in coll.fields]
        fields += [GIVEN_BRANCHES[f] for f in GIVEN_FIELDS if f in coll.fields]
        inner = ", ".join(f"{f}: {'int32' if f in INT_FIELDS else 'float32'}" for f in fields)
        types[name] = f"var * {{{inner}}}"
    types["weight"] = "float32"
    return types


def layout_fields(record_type: object) -> list[str]:
    """The field names of a :func:`branch_types` record type (``var * {pt: float32, ...}``)."""
    inner = str(record_type).partition("{")[2].rpartition("}")[0]
    return [part.split(":")[0].strip() for part in inner.split(",") if part.strip()]


def merged_layout(first: Mapping[str, object], later: Mapping[str, object]) -> dict[str, object] | None:
    """``first`` widened by the given E / pz branches of ``later``, or None when the two differ in
    anything else (collections, kinematic or integer fields)."""
    given = set(GIVEN_BRANCHES.values())
    if first.keys() != later.keys():
        return None
    merged: dict[str, object] = {}
    for name, t in first.items():
        a, b = layout_fields(t), layout_fields(later[name])
        if t == "float32" or later[name] == "float32":
            if t != later[name]:
                return None
            merged[name] = t
            continue
        if [f for f in a if f not in given] != [f for f in b if f not in given]:
            return None
        fields = [f for f in a if f not in given] + [f for f in GIVEN_BRANCHES.values() if f in a or f in b]
        merged[name] = "var * {" + ", ".join(f"{f}: {'int32' if f in INT_FIELDS else 'float32'}" for f in fields) + "}"
    return merged


def with_given_fields(sample: EventSample, layout: Mapping[str, object]) -> EventSample:
    """``sample`` with NaN ``given_E`` / ``given_pz`` where ``layout`` has the branches and a
    collection lacks the fields (so that buffered chunks concatenate)."""
    collections = dict(sample.collections)
    for name, coll in sample.collections.items():
        wanted = [f for f, b in GIVEN_BRANCHES.items() if b in layout_fields(layout.get(name, ""))]
        if all(f in coll.fields for f in wanted):
            continue
        fields = {f: coll[f] for f in coll.fields if f not in GIVEN_FIELDS}
        fields.update({f: coll[f] if f in coll.fields else ak.values_astype(coll.pt, np.float64) * np.nan
                       for f in wanted})
        collections[name] = ak.zip(fields, with_name="Momentum4D")
    return replace(sample, collections=collections)


def describe_layout(layout: Mapping[str, object]) -> str:
    return "; ".join(f"{k}: {v}" for k, v in layout.items())


def chunk_data(sample: EventSample, layout: Mapping[str, object]) -> dict[str, object]:
    """The arrays for one ``extend``: plain (no vector behaviour) float32/int32 records. A given
    E / pz branch of the layout that the chunk's collection lacks is NaN (nothing kept)."""
    data: dict[str, object] = {}
    for name in layout:
        if name == "weight":
            continue
        coll = sample.collections[name]
        fields = {}
        for f in KINEMATIC_FIELDS:
            fields[f] = ak.values_astype(coll[f], np.float32)
        for f in INT_FIELDS:
            if f in coll.fields:
                fields[f] = ak.values_astype(coll[f], np.int32)
        for f, b in GIVEN_BRANCHES.items():
            if b in layout_fields(layout[name]):
                fields[b] = ak.values_astype(coll[f] if f in coll.fields else coll.pt * np.nan, np.float32)
        data[name] = ak.zip(fields)
    data["weight"] = np.asarray(sample.weight, dtype=np.float32)
    return data


NEEDED = ("Muon", "Jet")  # the collections hepgen reads from any file; others only from its own
WEIGHT_BRANCHES = ("weight", "genWeight")  # hepgen's, NanoAOD's


def default_mapping(tree, where: str, own: bool) -> dict[str, str]:
    """Detect the layout: collections ``C`` with ``C_pt/_eta/_phi/_mass`` (``nC``, ``C_charge``,
    ``C_pdgId`` when present; in hepgen's own files also ``C_E`` / ``C_pz``, the given energy and
    pz) and the weight (``weight``, else NanoAOD's ``genWeight``).

    From a file hepgen wrote (``own``) every complete collection is read; from any other file
    (a CMS NanoAOD) only :data:`NEEDED`, and the rest (``FsrPhoton`` without a mass, ``GenPart``,
    ...) is ignored. A needed collection with some of its branches is an error naming the
    missing ones. ``where`` names the file and tree in messages.
    """
    names = set(tree.keys())
    colls = sorted({k.split("_", 1)[0] for k in names if "_" in k and not k.startswith("_")})
    mapping: dict[str, str] = {}
    for coll in colls:
        present = [f for f in KINEMATIC_FIELDS if f"{coll}_{f}" in names]
        if not present or not own and coll not in NEEDED:
            continue
        if len(present) < len(KINEMATIC_FIELDS):
            if coll not in NEEDED:
                continue
            lacks = [f"{coll}_{f}" for f in KINEMATIC_FIELDS if f not in present]
            raise InputError(
                f"{where}: collection {coll} needs {coll}_pt/_eta/_phi/_mass, lacks {', '.join(lacks)} "
                "(map its branches with --branches or the card's data.branches)"
            )
        if f"n{coll}" in names:
            mapping[f"n{coll}"] = f"n{coll}"
        for f in KINEMATIC_FIELDS + INT_FIELDS + (tuple(GIVEN_BRANCHES.values()) if own else ()):
            if f"{coll}_{f}" in names:
                mapping[f"{coll}_{f}"] = f"{coll}_{f}"
    for w in WEIGHT_BRANCHES:
        if w in names:
            mapping["weight"] = w
            break
    if not any("_" in k for k in mapping):
        raise InputError(
            f"{where} has no {' or '.join(NEEDED)} collection (branches C_pt, C_eta, C_phi, C_mass); "
            "give a branch mapping (--branches, or the card's data.branches) to read an external ntuple"
        )
    return mapping
