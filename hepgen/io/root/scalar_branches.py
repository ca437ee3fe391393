"""Per-event scalars in a TTree: ``EventSample.scalars`` (name -> bool or int64 ``[N]``) as
``bool`` / ``int64`` branches of the same name (``pass_gen``, ``pass_reco``, ``event``,
``sample``), listed in the provenance under :data:`SCALARS` (a JSON list), which the reader
follows. A file without the key has no scalars.
"""

from __future__ import annotations

import json
import re
from typing import Mapping

import numpy as np

from ...errors import InputError, OutputError
from ...events import scalar_array

SCALARS = "scalar_branches"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*$")


def scalar_types(scalars: Mapping[str, np.ndarray], taken: Mapping[str, object], source: str) -> dict[str, str]:
    """uproot ``mktree`` types of the scalar branches; a name that is not a plain identifier or
    that clashes with another branch (``taken``) is an :class:`OutputError`."""
    for name in scalars:
        if not _NAME.match(name) or name in taken or name.split("_", 1)[0] in taken:
            raise OutputError(f"{source}: scalar {name!r} cannot be a branch (a plain name, not a collection's)")
    return {name: "bool" if np.asarray(v).dtype == bool else "int64" for name, v in scalars.items()}


def scalar_arrays(scalars: Mapping[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    """The arrays of one ``extend``."""
    return {name: scalar_array(scalars[name]) for name in names}


def scalars_record(names: list[str]) -> dict[str, str]:
    """The provenance entry naming the scalar branches ({} without scalars)."""
    return {SCALARS: json.dumps(list(names))} if names else {}


def read_scalars(tree, info: Mapping[str, str], entry_start, entry_stop, source) -> dict[str, np.ndarray]:
    """name -> bool or int64 ``[N]`` for the entries ``[entry_start, entry_stop)`` of ``tree``."""
    if SCALARS not in info:
        return {}
    try:
        names = json.loads(info[SCALARS])
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise ValueError
    except ValueError:
        raise InputError(f"{source}: malformed {SCALARS!r} in the provenance") from None
    missing = [n for n in names if n not in tree.keys()]
    if missing:
        raise InputError(f"{source}: tree {tree.name!r} lacks scalar branch {missing[0]} named in its provenance")
    try:
        arrays = tree.arrays(names, entry_start=entry_start, entry_stop=entry_stop, library="np")
    except Exception as err:
        raise InputError(f"{source}: cannot read the scalar branches (truncated or corrupt? {type(err).__name__})") from None
    try:
        return {n: scalar_array(arrays[n]) for n in names}
    except ValueError as err:
        raise InputError(f"{source}: a scalar branch is not bool or integer ({err})") from None
