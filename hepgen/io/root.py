"""ROOT files: NanoAOD-style TTrees and TH1D histograms, through uproot.

Layout written by :class:`RootWriter` (one TTree, default name ``Events``)::

    nMuon            int32    [N]          objects per event
    Muon_pt          float32  [N, var]     GeV
    Muon_eta         float32  [N, var]
    Muon_phi         float32  [N, var]     rad
    Muon_mass        float32  [N, var]     GeV
    Muon_charge      int32    [N, var]     when the collection has it
    Muon_pdgId       int32    [N, var]     when the collection has it
    nJet, Jet_pt, ...                      the same for every collection
    weight           float32  [N]

plus a ``TObjString`` named ``hepgen_info`` holding the provenance (JSON, str -> str),
which :func:`read_events` restores into :attr:`EventSample.info`.

Files are TTrees, not RNTuples (uproot >= 5.7 writes an RNTuple for ``file[name] = data``):
the tree is made with ``mktree(name, types)`` and filled with ``extend`` in large chunks.
Every write goes through :func:`hepgen.outputs.atomic_output`: an existing file is refused
without ``force``, and an exception in the middle of writing leaves no file behind.

External ntuples are read through a branch mapping (card ``data.branches``), hepgen name ->
file branch, e.g. for ``uproot-HZZ.root``::

    {"nJet": "NJet", "Jet_px": "Jet_Px", "Jet_py": "Jet_Py", "Jet_pz": "Jet_Pz", "Jet_E": "Jet_E",
     "Muon_px": "Muon_Px", ..., "Muon_charge": "Muon_Charge", "weight": "EventWeight"}

A collection is given either by ``C_pt, C_eta, C_phi, C_mass`` or by Cartesian
``C_px, C_py, C_pz, C_E`` (converted with :func:`hepgen.kinematics.epxpypz_to_ptetaphim`);
``C_charge`` / ``C_pdgId`` are optional, ``nC`` is optional (the counts come from the jagged
branches). Objects are re-sorted by decreasing pT. A value is a branch name or an uproot
expression over branches (``"jet_pt / 1000"`` for an ntuple in MeV).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import awkward as ak
import numpy as np

from .. import __version__
from ..errors import InputError, OutputError
from ..events import INT_FIELDS, KINEMATIC_FIELDS, EventSample, make_collection
from ..kinematics import epxpypz_to_ptetaphim
from ..outputs import atomic_output

INFO_KEY = "hepgen_info"
CARTESIAN_FIELDS = ("px", "py", "pz", "E")
DEFAULT_CHUNK = 100_000  # events per TTree.extend: few, large baskets


# --------------------------------------------------------------------------------------------
# writing


def _branch_types(sample: EventSample) -> dict[str, object]:
    """uproot ``mktree`` types for a sample: one record type per collection + ``weight``."""
    types: dict[str, object] = {}
    for name, coll in sample.collections.items():
        fields = [f for f in KINEMATIC_FIELDS]
        fields += [f for f in INT_FIELDS if f in coll.fields]
        inner = ", ".join(f"{f}: {'int32' if f in INT_FIELDS else 'float32'}" for f in fields)
        types[name] = f"var * {{{inner}}}"
    types["weight"] = "float32"
    return types


def _describe(layout: Mapping[str, object]) -> str:
    return "; ".join(f"{k}: {v}" for k, v in layout.items())


def _chunk_data(sample: EventSample, layout: Mapping[str, object]) -> dict[str, object]:
    """The arrays for one ``extend``: plain (no vector behaviour) float32/int32 records."""
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
        data[name] = ak.zip(fields)
    data["weight"] = np.asarray(sample.weight, dtype=np.float32)
    return data


class RootWriter:
    """Stream :class:`EventSample` chunks into one TTree, atomically.

    Use as a context manager::

        with RootWriter("out.root", info={"seed": "1"}) as w:
            for chunk in chunks:
                w.write(chunk)

    The file appears under its name only when the block ends without an exception. The first
    chunk fixes the branch layout (collections and their integer fields); later chunks must
    have the same collections. Chunks are buffered and written in ``chunk_size`` events per
    ``extend`` (large baskets read fast). Provenance: ``info`` merged over the first chunk's
    ``sample.info`` (``info`` wins) plus ``hepgen_version``, stored as JSON in ``hepgen_info``.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        force: bool = False,
        info: Mapping[str, str] | None = None,
        tree: str = "Events",
        chunk_size: int = DEFAULT_CHUNK,
    ):
        self.path = Path(path)
        self.force = force
        self.tree_name = tree
        self.chunk_size = int(chunk_size)
        self._extra_info = {str(k): str(v) for k, v in (info or {}).items()}
        self._info: dict[str, str] | None = None
        self._layout: dict[str, object] | None = None
        self._buffer: list[EventSample] = []
        self._buffered = 0
        self._ctx = None
        self._file = None
        self._tree = None
        self.n_written = 0

    # context manager ------------------------------------------------------------------------
    def __enter__(self) -> "RootWriter":
        import uproot

        self._ctx = atomic_output(self.path, self.force)
        tmp = self._ctx.__enter__()
        try:
            self._file = uproot.recreate(tmp)
        except OSError as err:
            self._ctx.__exit__(type(err), err, err.__traceback__)
            raise OutputError(f"cannot write {self.path}: {err.strerror or err}") from None
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:  # the caller failed: drop the temporary file, re-raise
            self._close_quietly()
            return self._ctx.__exit__(exc_type, exc, tb)
        try:
            self._finish()
        except BaseException as err:
            self._close_quietly()
            self._ctx.__exit__(type(err), err, err.__traceback__)  # removes the temporary file
            if isinstance(err, OSError):
                raise OutputError(f"cannot write {self.path}: {err.strerror or err}") from None
            raise
        self._ctx.__exit__(None, None, None)  # renames into place
        return False

    def update_info(self, info: Mapping[str, str]) -> None:
        """Add or replace provenance keys (e.g. counts known only after the last chunk); they are
        written when the block ends."""
        self._extra_info.update({str(k): str(v) for k, v in info.items()})

    def _finish(self) -> None:
        self._flush()
        if self._tree is None:  # no events at all: still a valid, empty tree
            self._file.mktree(self.tree_name, {"weight": "float32"})
        info = {"hepgen_version": __version__, **(self._info or {}), **self._extra_info}
        self._file[INFO_KEY] = json.dumps(info, sort_keys=True)
        self._file.close()

    def _close_quietly(self) -> None:
        try:
            self._file.close()
        except Exception:
            pass

    # writing --------------------------------------------------------------------------------
    def write(self, sample: EventSample) -> None:
        """Append the events of ``sample`` (any size; buffered into large ``extend`` calls)."""
        if self._file is None:
            raise RuntimeError("RootWriter.write outside its 'with' block")
        layout = _branch_types(sample)
        if self._layout is None:
            self._layout = layout
            self._info = {str(k): str(v) for k, v in sample.info.items()}
        elif layout != self._layout:
            raise OutputError(
                f"{self.path}: chunk has branches {_describe(layout)}, the first chunk had {_describe(self._layout)}"
            )
        try:
            sample.check_finite(str(self.path))
        except InputError as err:  # never write a file that hepgen would refuse to read
            raise OutputError(str(err)) from None
        if len(sample) == 0:
            return
        self._buffer.append(sample)
        self._buffered += len(sample)
        if self._buffered >= self.chunk_size:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        sample = self._buffer[0] if len(self._buffer) == 1 else EventSample.concatenate(self._buffer)
        self._buffer, self._buffered = [], 0
        data = _chunk_data(sample, self._layout)
        if self._tree is None:
            self._tree = self._file.mktree(self.tree_name, self._layout)
        self._tree.extend(data)
        self.n_written += len(sample)


def write_events(
    path: str | os.PathLike,
    samples: EventSample | Iterable[EventSample],
    *,
    force: bool = False,
    info: Mapping[str, str] | None = None,
    tree: str = "Events",
) -> Path:
    """Write one sample or an iterable of chunks to ``path`` (see :class:`RootWriter`)."""
    if isinstance(samples, EventSample):
        samples = [samples]
    with RootWriter(path, force=force, info=info, tree=tree) as writer:
        for sample in samples:
            writer.write(sample)
    return Path(path)


def write_histograms(path: str | os.PathLike, hists: Mapping[str, object], force: bool = False) -> Path:
    """Write ``hist.Hist`` objects (1D) as TH1D, one key per name; atomic like every writer."""
    import uproot

    with atomic_output(path, force) as tmp:
        with uproot.recreate(tmp) as f:
            for name, h in hists.items():
                f[name] = h
    return Path(path)


# --------------------------------------------------------------------------------------------
# reading


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _open_file(path: Path):
    """uproot.open with the file's own length check (a cut tail still opens in uproot)."""
    import uproot

    try:
        f = uproot.open(path)
    except Exception as err:  # uproot raises many kinds on corrupt input
        raise InputError(f"{path}: not a readable ROOT file (truncated or corrupt? {_one_line(err)})") from None
    size, end = path.stat().st_size, getattr(f.file, "fEND", 0)
    if size < end:
        f.close()
        raise InputError(f"{path}: truncated ROOT file ({size} bytes, its header says {end})")
    return f


def _open_tree(path: str | os.PathLike, tree: str):
    """Open ``path`` and return (file, tree); every failure is one-line :class:`InputError`."""
    import uproot

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a ROOT file")
    f = _open_file(path)
    try:
        keys = f.keys(cycle=False)
        obj = f[tree] if tree in keys else None
    except Exception as err:
        f.close()
        raise InputError(f"{path}: cannot read the file directory (truncated or corrupt? {_one_line(err)})") from None
    if obj is None or not isinstance(obj, uproot.TTree):
        f.close()
        trees = [k for k, c in f.classnames(cycle=False).items() if c == "TTree"] if keys else []
        raise InputError(f"{path}: no TTree {tree!r} (trees in the file: {', '.join(trees) or 'none'})")
    return f, obj


def _read_info(f, path) -> dict[str, str]:
    if INFO_KEY not in f.keys(cycle=False):
        return {}
    try:
        return {str(k): str(v) for k, v in json.loads(str(f[INFO_KEY])).items()}
    except Exception as err:
        raise InputError(f"{path}: unreadable provenance {INFO_KEY!r} (truncated or corrupt? {_one_line(err)})") from None


def _default_mapping(tree) -> dict[str, str]:
    """hepgen's own layout: collections found from ``nC`` + ``C_pt`` branches."""
    names = set(tree.keys())
    mapping: dict[str, str] = {}
    for key in sorted(names):
        if key.startswith("n") and f"{key[1:]}_pt" in names:
            coll = key[1:]
            mapping[key] = key
            for f in KINEMATIC_FIELDS + INT_FIELDS:
                if f"{coll}_{f}" in names:
                    mapping[f"{coll}_{f}"] = f"{coll}_{f}"
    if "weight" in names:
        mapping["weight"] = "weight"
    if not any(k.startswith("n") for k in mapping):
        raise InputError(
            f"{tree.file.file_path}: tree {tree.name!r} has no hepgen collections (branches nC, C_pt, ...); "
            "give a branch mapping (card data.branches) to read an external ntuple"
        )
    return mapping


def _plan(mapping: Mapping[str, str], where: str) -> dict[str, dict]:
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


def _columns(tree, mapping: Mapping[str, str], path) -> tuple[dict[str, str], dict[str, str]]:
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


def _to_sample(arrays: ak.Array, mapping: Mapping[str, str], columns, plan, info, path) -> EventSample:
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


def _prepare(path, tree, branches):
    f, t = _open_tree(path, tree)
    try:
        mapping = dict(branches) if branches else _default_mapping(t)
        plan = _plan(mapping, str(path))
        columns, aliases = _columns(t, mapping, path)
        info = _read_info(f, path)
        info.setdefault("source", str(path))
    except BaseException:
        f.close()
        raise
    return f, t, mapping, plan, info, columns, aliases


def _read_error(path, tree, err) -> InputError:
    import uproot

    if isinstance(err, (uproot.KeyInFileError, NameError, SyntaxError, TypeError)) or "expression" in str(err):
        return InputError(f"{path}: cannot evaluate a branch expression in tree {tree!r} ({_one_line(err)})")
    return InputError(f"{path}: cannot read tree {tree!r} (truncated or corrupt? {_one_line(err)})")


def read_events(
    path: str | os.PathLike,
    *,
    tree: str = "Events",
    branches: Mapping[str, str] | None = None,
    entry_start: int | None = None,
    entry_stop: int | None = None,
) -> EventSample:
    """Read a TTree into an :class:`EventSample` (float64 in memory; float32 values exact).

    ``branches`` maps hepgen names to file branches (see the module docstring); ``None``
    reads hepgen's own layout. Raises :class:`InputError` (one line) for a missing,
    truncated or corrupt file, a missing tree or branch, or non-finite momenta.
    """
    f, t, mapping, plan, info, columns, aliases = _prepare(path, tree, branches)
    with f:
        try:
            arrays = t.arrays(
                sorted(set(columns.values())), aliases=aliases or None, entry_start=entry_start, entry_stop=entry_stop
            )
        except Exception as err:
            raise _read_error(path, tree, err) from None
        return _to_sample(arrays, mapping, columns, plan, info, path)


def iterate_events(
    path: str | os.PathLike,
    *,
    step_size: int = 100_000,
    tree: str = "Events",
    branches: Mapping[str, str] | None = None,
) -> Iterator[EventSample]:
    """Yield the tree as :class:`EventSample` chunks of ``step_size`` events (last may be shorter)."""
    f, t, mapping, plan, info, columns, aliases = _prepare(path, tree, branches)
    with f:
        it = t.iterate(sorted(set(columns.values())), aliases=aliases or None, step_size=step_size)
        while True:
            try:
                arrays = next(it)
            except StopIteration:
                return
            except Exception as err:
                raise _read_error(path, tree, err) from None
            yield _to_sample(arrays, mapping, columns, plan, info, path)


def read_histograms(path: str | os.PathLike) -> dict[str, object]:
    """All TH1 objects of a file as ``hist.Hist`` (name -> Hist)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    with _open_file(path) as f:
        try:
            return {k: f[k].to_hist() for k, c in f.classnames(cycle=False).items() if c.startswith("TH1")}
        except Exception as err:
            raise InputError(f"{path}: cannot read histograms (truncated or corrupt? {_one_line(err)})") from None
