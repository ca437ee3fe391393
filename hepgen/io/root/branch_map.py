"""Branch mappings: reading any flat ntuple into an EventSample.

A mapping takes hepgen names to file branches (card ``data.branches``, ``--branches`` on the
command line), e.g. for ``uproot-HZZ.root``::

    {"nJet": "NJet", "Jet_px": "Jet_Px", "Jet_py": "Jet_Py", "Jet_pz": "Jet_Pz", "Jet_E": "Jet_E",
     "Muon_px": "Muon_Px", ..., "Muon_charge": "Muon_Charge", "weight": "EventWeight"}

A collection is given either by ``C_pt, C_eta, C_phi, C_mass`` (GeV, rad) or by Cartesian
``C_px, C_py, C_pz, C_E`` (GeV; converted with :func:`hepgen.kinematics.epxpypz_to_ptetaphim`
in float64); with ``C_pt, C_eta, C_phi, C_mass`` a ``C_E`` / ``C_pz`` is read as the given energy
/ pz (``given_E`` / ``given_pz``, :data:`hepgen.events.GIVEN_FIELDS`; NaN: none kept), as
hepgen's own files store them; ``C_charge`` / ``C_pdgId`` are optional, ``nC`` is optional (the counts come from
the jagged branches; when given they must agree). A value is a branch name or an uproot
expression over branches (``"jet_pt / 1000"`` for an ntuple in MeV), or a list of flat
(one value per event) branches, one object each (``Muon_px: [px1, px2]`` for a dimuon
ntuple); every field of such a collection is a list of the same length. Without ``weight``
every event weighs 1. Objects are re-sorted by decreasing pT, except a ``GenPart`` collection,
which keeps the file's order (:func:`hepgen.events.reader_order`).

Types are checked on read (:func:`check_types`): a collection field is a jagged number branch
(a flat one for a list value), ``weight`` and ``nC`` flat, kinematics not bool, ``charge`` and
``pdgId`` integers (a float branch only with integer values). Every mistake is a one-line
:class:`InputError` naming the file, the tree and the branch.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

import awkward as ak
import numpy as np
import yaml

from ...errors import InputError
from ...events import GIVEN_FIELDS, INT_FIELDS, KINEMATIC_FIELDS, EventSample, make_collection, reader_order
from ...kinematics import epxpypz_to_ptetaphim

CARTESIAN_FIELDS = ("px", "py", "pz", "E")


def _is_list(value) -> bool:
    return isinstance(value, (list, tuple))


def plan_collections(mapping: Mapping[str, object], where: str) -> dict[str, dict]:
    """Group a mapping into collections: name -> {'kind': 'polar'|'cartesian', fields...}."""
    plan: dict[str, dict] = {}
    for key, value in mapping.items():
        if not isinstance(key, str) or not (isinstance(value, str) or _is_list(value) and value
                                            and all(isinstance(v, str) for v in value)):
            raise InputError(f"{where}: branch mapping {key!r}: {value!r} is not a branch, an expression "
                             "or a list of flat branches")
        if key == "weight" or key.startswith("n") and "_" not in key:
            if _is_list(value):
                raise InputError(f"{where}: branch mapping {key!r} takes one branch, not a list")
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
            lacks = [f"{coll}_{f}" for f in (KINEMATIC_FIELDS if "pt" in fields or "eta" in fields else CARTESIAN_FIELDS)
                     if f not in fields]
            raise InputError(
                f"{where}: branch mapping for {coll} needs {coll}_pt/_eta/_phi/_mass or "
                f"{coll}_px/_py/_pz/_E (lacks {', '.join(lacks)}; has {', '.join(sorted(fields))})"
            )
        lists = {len(mapping[k]) if _is_list(mapping[k]) else 0 for k in fields.values()}
        if len(lists) > 1:
            raise InputError(f"{where}: branch mapping for {coll} mixes lists of flat branches with other values "
                             "(give every field of a collection as a list of the same length, or none)")
        fields["__kind__"] = "polar" if has_polar else "cartesian"
        fields["__objects__"] = lists.pop()  # 0: jagged branches; k: k flat branches per field
    for key in mapping:
        if key.startswith("n") and "_" not in key and key[1:] not in plan:
            raise InputError(f"{where}: branch mapping has {key!r} but no fields for collection {key[1:]!r}")
    if not plan:
        raise InputError(f"{where}: branch mapping names no collection")
    return plan


def parse_mapping(specs: Sequence[str], where: str = "--branches") -> dict[str, object]:
    """Command-line mapping specs -> one mapping (later keys win).

    A spec is a YAML file holding the mapping (the card's ``data.branches`` format), an inline
    YAML mapping (``'{Muon_pt: mu_pt, weight: w}'``) or ``KEY=VALUE`` (everything after the
    first ``=`` is the value; ``[a, b]`` is a list of flat branches).
    """
    mapping: dict[str, object] = {}
    for spec in specs:
        text = spec.strip()
        if not text.startswith("{") and "=" in text.split("{")[0] and not Path(text).is_file():
            key, value = (s.strip() for s in text.split("=", 1))
            if not key or not value:
                raise InputError(f"{where} {spec!r}: expected KEY=VALUE")
            mapping[key] = _load_yaml(value, f"{where} {spec!r}") if value.startswith("[") else value
            continue
        if text.startswith("{"):
            data = _load_yaml(text, f"{where} {spec!r}")
        else:
            path = Path(text)
            if not path.is_file():
                raise InputError(f"{where} {spec!r}: no such mapping file (give a YAML file, "
                                 "'{KEY: VALUE, ...}' or KEY=VALUE)")
            try:
                data = _load_yaml(path.read_text(), str(path))
            except (OSError, UnicodeDecodeError) as err:
                raise InputError(f"{path}: cannot read the branch mapping ({err})") from None
        if not isinstance(data, dict) or not data:
            raise InputError(f"{where} {spec!r}: a branch mapping is a YAML mapping hepgen name -> branch")
        mapping.update({str(k): (list(map(str, v)) if _is_list(v) else str(v)) for k, v in data.items()})
    plan_collections(mapping, where)
    return mapping


def _load_yaml(text: str, where: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{where}: not valid YAML ({first})") from None


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def branch_columns(tree, mapping: Mapping[str, object], where: str) -> tuple[dict[str, object], dict[str, str]]:
    """hepgen key -> column name (a list of names for a list value) in the arrays read, and the
    uproot aliases for expressions.

    A value that names a branch is read as is; missing branch names are an error here (all
    named at once). Any other value is an uproot expression over branches.
    """
    names = set(tree.keys())
    wanted = [(k, v) for k, vs in mapping.items() for v in (vs if _is_list(vs) else [vs])]
    missing = [f"{k} -> {v}" for k, v in wanted if _IDENT.match(v) and v not in names]
    if missing:
        raise InputError(f"{where} lacks branch{'es' if len(missing) > 1 else ''} {', '.join(missing)}")
    columns: dict[str, object] = {}
    aliases: dict[str, str] = {}

    def column(key: str, value: str) -> str:
        if value in names:
            return value
        aliases[key] = value
        return key

    for k, v in mapping.items():
        if _is_list(v):
            columns[k] = [column(f"hepgen_expr_{k}_{i}", x) for i, x in enumerate(v)]
        else:
            columns[k] = column(f"hepgen_expr_{k}", v)
    return columns, aliases


def column_names(columns: Mapping[str, object]) -> list[str]:
    """Every column to read, sorted, once."""
    return sorted({c for v in columns.values() for c in (v if _is_list(v) else [v])})


_INTS = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
_NUMBERS = _INTS | {"float16", "float32", "float64"}


def _shape(arr: ak.Array) -> tuple[int, str]:
    """(list depth, leaf primitive) of an array's type; strings and records are 'string'/'record'."""
    t, depth = arr.type.content, 0
    while True:
        if isinstance(t, ak.types.OptionType):
            t = t.content
        elif isinstance(t, (ak.types.ListType, ak.types.RegularType)):
            if t.parameter("__array__") in ("string", "bytestring"):
                return depth, "string"
            t, depth = t.content, depth + 1
        elif isinstance(t, ak.types.NumpyType):
            return depth, t.primitive
        else:
            return depth, "record" if isinstance(t, ak.types.RecordType) else str(t)


def _type_error(where: str, key: str, branch: str, arr: ak.Array, expected: str) -> InputError:
    named = branch if branch == key else f"{branch} (for {key})"
    return InputError(f"{where}: branch {named} is {arr.type.content}, expected {expected}")


def check_types(arrays: ak.Array, mapping: Mapping[str, object], columns, plan, where: str) -> None:
    """One-line :class:`InputError` for a branch of the wrong jaggedness or dtype (see the module)."""
    for key, value in mapping.items():
        coll = key.split("_", 1)[0] if "_" in key else None
        fld = key.split("_", 1)[1] if coll else None
        per_object = coll in plan and not plan[coll]["__objects__"]
        for branch, col in zip(value if _is_list(value) else [value], columns[key] if _is_list(value) else [columns[key]]):
            arr = arrays[col]
            depth, leaf = _shape(arr)
            want_depth = 1 if per_object else 0
            if depth != want_depth or leaf not in _NUMBERS | {"bool"}:
                shape = "a jagged number branch (var * number, one value per object)" if per_object else \
                    "a flat number branch (one value per event)"
                raise _type_error(where, key, branch, arr, shape)
            if fld in INT_FIELDS or key.startswith("n") and coll is None and key != "weight":
                if leaf not in _INTS:
                    bad = leaf == "bool"
                    if not bad:
                        values = ak.to_numpy(ak.flatten(arr, axis=None)).astype(np.float64)
                        odd = values[values != np.round(values)]
                        if odd.size:
                            raise InputError(f"{where}: branch {branch} holds non-integer values ({odd[0]:g}); "
                                             f"{key} needs integers")
                    else:
                        raise _type_error(where, key, branch, arr, "integers")
            elif leaf == "bool":
                raise _type_error(where, key, branch, arr, "numbers (float or int), not bool")


def _field(arrays, columns, mapping, key, n_objects):
    """One field as a jagged ``[N, var]`` array (from k flat columns: regular ``[N, k]``)."""
    if not n_objects:
        return arrays[columns[key]]
    stacked = np.stack([ak.to_numpy(arrays[c]) for c in columns[key]], axis=1)
    return ak.from_regular(ak.Array(stacked), axis=1)


def arrays_to_sample(arrays: ak.Array, mapping: Mapping[str, object], columns, plan, info, path,
                     where: str | None = None) -> EventSample:
    """Raw branch arrays (named by file branch) -> EventSample; types checked, re-sorted by pT
    (GenPart in the file's order)."""
    where = where or str(path)
    check_types(arrays, mapping, columns, plan, where)
    n = len(arrays)
    collections = {}
    for coll, fields in plan.items():
        k = fields["__objects__"]
        raw = {f: _field(arrays, columns, mapping, fields[f], k) for f in fields if not f.startswith("__")}
        counts = None
        for f, a in raw.items():
            c = ak.to_numpy(ak.num(a, axis=1))
            if counts is None:
                counts, first = c, f
            elif not np.array_equal(c, counts):
                raise InputError(f"{where}: branches {_branch(mapping, coll, first)} and {_branch(mapping, coll, f)} "
                                 f"disagree in the number of {coll} objects per event")
        get = lambda f: ak.values_astype(raw[f], np.float64)  # noqa: E731
        if fields["__kind__"] == "polar":
            pt, eta, phi, mass = (get(f) for f in KINEMATIC_FIELDS)
        else:
            flat = [ak.to_numpy(ak.flatten(get(f))) for f in ("E", "px", "py", "pz")]
            with np.errstate(invalid="ignore"):
                pt, eta, phi, mass = (ak.unflatten(a, counts) for a in epxpypz_to_ptetaphim(*flat))
        extra = {f: ak.values_astype(raw[f], np.int32) for f in INT_FIELDS if f in fields}
        if fields["__kind__"] == "polar":  # C_E / C_pz beside pt/eta/phi/mass: the given E, pz
            extra.update({g: get(b) for g, b in zip(GIVEN_FIELDS, ("E", "pz")) if b in fields})
        ncount = f"n{coll}"
        if ncount in mapping:
            stored = ak.to_numpy(arrays[columns[ncount]]).astype(np.int64)
            if not np.array_equal(stored, counts):
                raise InputError(f"{where}: counter {mapping[ncount]} disagrees with the length of {coll} branches")
        collections[coll] = reader_order(coll, make_collection(pt, eta, phi, mass, **extra))
    if "weight" in mapping:
        weight = ak.to_numpy(arrays[columns["weight"]]).astype(np.float64)
    else:
        weight = np.ones(n)
    sample = EventSample(collections, weight, dict(info))
    sample.check_finite(str(path))
    return sample


def _branch(mapping, coll: str, fld: str) -> str:
    v = mapping[f"{coll}_{fld}"]
    return str(v[0] if _is_list(v) else v)
