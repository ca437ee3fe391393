"""Branch mappings: reading any flat ntuple into an EventSample.

A mapping takes hepgen names to file branches (card ``data.branches``), e.g. for
``uproot-HZZ.root``::

    {"nJet": "NJet", "Jet_px": "Jet_Px", "Jet_py": "Jet_Py", "Jet_pz": "Jet_Pz", "Jet_E": "Jet_E",
     "Muon_px": "Muon_Px", ..., "Muon_charge": "Muon_Charge", "weight": "EventWeight"}

A collection is given either by ``C_pt, C_eta, C_phi, C_mass`` (GeV, rad) or by Cartesian
``C_px, C_py, C_pz, C_E`` (GeV; converted with :func:`hepgen.kinematics.epxpypz_to_ptetaphim`
in float64); ``C_charge`` / ``C_pdgId`` are optional, ``nC`` is optional (the counts come from
the jagged branches; when given they must agree). A value is a branch name or an uproot
expression over branches (``"jet_pt / 1000"`` for an ntuple in MeV). Without ``weight`` every
event weighs 1. Objects are re-sorted by decreasing pT. Every mistake is a one-line
:class:`InputError`.
"""

from __future__ import annotations

import re
from typing import Mapping

import awkward as ak
import numpy as np

from ...errors import InputError
from ...events import INT_FIELDS, KINEMATIC_FIELDS, EventSample, make_collection
from ...kinematics import epxpypz_to_ptetaphim

CARTESIAN_FIELDS = ("px", "py", "pz", "E")


def plan_collections(mapping: Mapping[str, str], where: str) -> dict[str, dict]:
    """Group a mapping into collections: name -> {'kind': 'polar'|'cartesian', fields...}."""
    plan: dict[str, dict] = {}
    for key in mapping:
        if key == "weight" or key.startswith("n") and "_" not in key:
            continue
        if "_" not in key:
            raise InputError(f"{where}: branch mapping key {key!r} is not 'weight', 'nC' or 'C_field'")
        coll, fld = key.split("_", 1)
        plan.setdefault(coll, {})[fld] = key
    allowed = set(KINEMATIC_FIELDS) | set(CARTESIAN_FIELDS) | set(INT_FIELDS)
    for coll, fields in plan.items():
        unknown = sorted(set(fields) - allowed)
        if unknown:
            raise InputError(
                f"{where}: branch mapping {coll}_{unknown[0]}: unknown field "
                f"(allowed: {', '.join(KINEMATIC_FIELDS + CARTESIAN_FIELDS + INT_FIELDS)})"
            )
        has_polar = all(f in fields for f in KINEMATIC_FIELDS)
        has_cart = all(f in fields for f in CARTESIAN_FIELDS)
        if not (has_polar or has_cart):
            raise InputError(
                f"{where}: branch mapping for {coll} needs {coll}_pt/_eta/_phi/_mass or "
                f"{coll}_px/_py/_pz/_E (has {', '.join(sorted(fields))})"
            )
        fields["__kind__"] = "polar" if has_polar else "cartesian"
    for key in mapping:
        if key.startswith("n") and "_" not in key and key[1:] not in plan:
            raise InputError(f"{where}: branch mapping has {key!r} but no fields for collection {key[1:]!r}")
    if not plan:
        raise InputError(f"{where}: branch mapping names no collection")
    return plan


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def branch_columns(tree, mapping: Mapping[str, str], path) -> tuple[dict[str, str], dict[str, str]]:
    """hepgen key -> column name in the arrays read, and the uproot aliases for expressions.

    A value that names a branch is read as is; a missing branch name is an error here. Any
    other value is an uproot expression over branches (e.g. ``"jet_pt / 1000"`` for MeV).
    """
    names = set(tree.keys())
    missing = [f"{k} -> {v}" for k, v in mapping.items() if _IDENT.match(v) and v not in names]
    if missing:
        raise InputError(
            f"{path}: tree {tree.name!r} lacks branch {missing[0]}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    columns, aliases = {}, {}
    for k, v in mapping.items():
        if v in names:
            columns[k] = v
        else:
            columns[k] = aliases_key = f"hepgen_expr_{k}"
            aliases[aliases_key] = v
    return columns, aliases


def arrays_to_sample(arrays: ak.Array, mapping: Mapping[str, str], columns, plan, info, path) -> EventSample:
    """Raw branch arrays (named by file branch) -> EventSample; re-sorted by pT."""
    n = len(arrays)
    collections = {}
    for coll, fields in plan.items():
        get = lambda f: arrays[columns[fields[f]]]  # noqa: E731
        if fields["__kind__"] == "polar":
            pt, eta, phi, mass = (ak.values_astype(get(f), np.float64) for f in KINEMATIC_FIELDS)
        else:
            e, px, py, pz = (ak.values_astype(get(f), np.float64) for f in ("E", "px", "py", "pz"))
            counts = ak.num(e, axis=1)
            flat = [ak.to_numpy(ak.flatten(a)) for a in (e, px, py, pz)]
            with np.errstate(invalid="ignore"):
                pt, eta, phi, mass = (ak.unflatten(a, counts) for a in epxpypz_to_ptetaphim(*flat))
        extra = {f: ak.values_astype(get(f), np.int32) for f in INT_FIELDS if f in fields}
        ncount = f"n{coll}"
        if ncount in mapping:
            stored = ak.to_numpy(arrays[columns[ncount]]).astype(np.int64)
            if not np.array_equal(stored, ak.to_numpy(ak.num(pt, axis=1))):
                raise InputError(f"{path}: counter {mapping[ncount]} disagrees with the length of {coll} branches")
        c = make_collection(pt, eta, phi, mass, **extra)
        order = ak.argsort(c.pt, axis=1, ascending=False, stable=True)
        collections[coll] = c[order]
    if "weight" in mapping:
        weight = ak.to_numpy(arrays[columns["weight"]]).astype(np.float64)
    else:
        weight = np.ones(n)
    sample = EventSample(collections, weight, dict(info))
    sample.check_finite(str(path))
    return sample
