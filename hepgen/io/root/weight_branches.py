"""Weight variations in a TTree, NanoAOD-style.

``EventSample.variations`` (id -> float64 ``[N]``) are stored as float32 branches:

* the first weight group whose ``type`` or ``name`` says scale (``scale_variation``, ...):
  ``LHEScaleWeight`` ``[N, k]`` (with its counter ``nLHEScaleWeight``), in the group's order;
* the first group that says PDF: ``LHEPdfWeight`` ``[N, k]`` (``nLHEPdfWeight``);
* the first group of type ``parton_shower`` (Pythia's shower variations, written by ``hepgen
  simulate`` with ``simulate.psweight``): ``PSWeight`` ``[N, 4]`` (``nPSWeight``), NanoAOD's
  order and meaning (:data:`hepgen.io.variations.PSWEIGHT`: w_var / w_nominal, [ISR up, FSR up,
  ISR down, FSR down], up = mu_R x 0.5);
* every other id: ``LHEWeight_<id>`` ``[N]`` (characters other than letters, digits and ``_``
  become ``_``; a name taken gets ``_2``, ``_3``, ...).

Unlike NanoAOD, the LHE values are the weights themselves, not ratios to the nominal weight. The
groups and descriptions are in the provenance (:data:`hepgen.io.variations.GROUPS`) and the
branch of each id under :data:`BRANCHES` (JSON ``{branch: [id, ...]}``), which the reader
follows. NaN marks an event that lacks an id.
"""

from __future__ import annotations

import json
import re
from typing import Mapping

import awkward as ak
import numpy as np

from ...errors import InputError
from ..variations import PSWEIGHT_TYPE, complete_groups

BRANCHES = "weight_branches"
_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def _branch(attrs: Mapping[str, str]) -> str:
    """The group branch of a weight group ("" = one LHEWeight_<id> branch per weight)."""
    if attrs.get("type") == PSWEIGHT_TYPE:
        return "PSWeight"
    text = f"{attrs.get('type', '')} {attrs.get('name', '')}".lower()
    return "LHEScaleWeight" if "scale" in text else ("LHEPdfWeight" if "pdf" in text else "")


def branch_plan(groups: list[dict], ids: list[str]) -> dict[str, list[str]]:
    """Branch name -> the ids it holds (in order), for the variations ``ids``."""
    plan: dict[str, list[str]] = {}
    for g in complete_groups(groups, ids):
        ws = [str(w["id"]) for w in g["weights"]]
        branch = _branch(g.get("attrs", {}))
        if branch and branch not in plan:
            plan[branch] = ws
            continue
        for wid in ws:
            name, k = "LHEWeight_" + _UNSAFE.sub("_", wid), 2
            while name in plan:
                name, k = f"LHEWeight_{_UNSAFE.sub('_', wid)}_{k}", k + 1
            plan[name] = [wid]
    return plan


def branch_types(plan: Mapping[str, list[str]]) -> dict[str, str]:
    """uproot ``mktree`` types: ``var * float32`` for a group branch, ``float32`` for one id."""
    return {b: ("float32" if b.startswith("LHEWeight_") else "var * float32") for b in plan}


def chunk_arrays(variations: Mapping[str, np.ndarray], plan: Mapping[str, list[str]], n: int) -> dict[str, object]:
    """The float32 arrays of one ``extend``."""
    out: dict[str, object] = {}
    for b, ids in plan.items():
        if b.startswith("LHEWeight_"):
            out[b] = np.asarray(variations[ids[0]], dtype=np.float32)
        else:
            table = np.stack([np.asarray(variations[i], dtype=np.float32) for i in ids], axis=1).reshape(n, len(ids))
            out[b] = ak.unflatten(table.reshape(-1), np.full(n, len(ids)))
    return out


def plan_of(info: Mapping[str, str], source: str) -> dict[str, list[str]]:
    """The stored plan of a file's provenance ({} when it has no variations)."""
    if BRANCHES not in info:
        return {}
    try:
        plan = json.loads(info[BRANCHES])
        if not (isinstance(plan, dict) and all(isinstance(v, list) for v in plan.values())):
            raise ValueError
    except ValueError:
        raise InputError(f"{source}: malformed {BRANCHES!r} in the provenance") from None
    return {str(b): [str(i) for i in ids] for b, ids in plan.items()}


def read_variations(tree, info: Mapping[str, str], entry_start, entry_stop, source) -> dict[str, np.ndarray]:
    """id -> float64 ``[N]`` for the entries ``[entry_start, entry_stop)`` of ``tree``."""
    plan = plan_of(info, source)
    if not plan:
        return {}
    missing = [b for b in plan if b not in tree.keys()]
    if missing:
        raise InputError(f"{source}: tree {tree.name!r} lacks weight branch {missing[0]} named in its provenance")
    try:
        arrays = tree.arrays(list(plan), entry_start=entry_start, entry_stop=entry_stop, library="ak")
    except Exception as err:
        raise InputError(f"{source}: cannot read the weight branches (truncated or corrupt? {type(err).__name__})") from None
    out: dict[str, np.ndarray] = {}
    for b, ids in plan.items():
        col = arrays[b]
        if b.startswith("LHEWeight_"):
            out[ids[0]] = ak.to_numpy(col).astype(np.float64)
            continue
        if len(col) and not np.all(ak.to_numpy(ak.num(col, axis=1)) == len(ids)):
            raise InputError(f"{source}: branch {b} does not hold {len(ids)} weights in every event")
        table = ak.to_numpy(ak.flatten(col)).astype(np.float64).reshape(len(col), len(ids))
        for j, i in enumerate(ids):
            out[i] = table[:, j]
    return out
