"""Per-event flags in a TTree: ``EventSample.flags`` (name -> bool ``[N]``) as ``bool`` branches
of the same name (``pass_gen``, ``pass_reco``), listed in the provenance under :data:`FLAGS`
(a JSON list), which the reader follows. A file without the key has no flags.
"""

from __future__ import annotations

import json
import re
from typing import Mapping

import numpy as np

from ...errors import InputError, OutputError

FLAGS = "flag_branches"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*$")


def flag_types(names: list[str], taken: Mapping[str, object], source: str) -> dict[str, str]:
    """uproot ``mktree`` types of the flag branches; a name that is not a plain identifier or
    that clashes with another branch (``taken``) is an :class:`OutputError`."""
    for name in names:
        if not _NAME.match(name) or name in taken or name.split("_", 1)[0] in taken:
            raise OutputError(f"{source}: flag {name!r} cannot be a branch (a plain name, not a collection's)")
    return {name: "bool" for name in names}


def flag_arrays(flags: Mapping[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    """The bool arrays of one ``extend``."""
    return {name: np.asarray(flags[name], dtype=bool) for name in names}


def flags_record(names: list[str]) -> dict[str, str]:
    """The provenance entry naming the flag branches ({} without flags)."""
    return {FLAGS: json.dumps(list(names))} if names else {}


def read_flags(tree, info: Mapping[str, str], entry_start, entry_stop, source) -> dict[str, np.ndarray]:
    """name -> bool ``[N]`` for the entries ``[entry_start, entry_stop)`` of ``tree``."""
    if FLAGS not in info:
        return {}
    try:
        names = json.loads(info[FLAGS])
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise ValueError
    except ValueError:
        raise InputError(f"{source}: malformed {FLAGS!r} in the provenance") from None
    missing = [n for n in names if n not in tree.keys()]
    if missing:
        raise InputError(f"{source}: tree {tree.name!r} lacks flag branch {missing[0]} named in its provenance")
    try:
        arrays = tree.arrays(names, entry_start=entry_start, entry_stop=entry_stop, library="np")
    except Exception as err:
        raise InputError(f"{source}: cannot read the flag branches (truncated or corrupt? {type(err).__name__})") from None
    return {n: np.asarray(arrays[n], dtype=bool) for n in names}
