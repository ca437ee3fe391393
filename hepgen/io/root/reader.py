"""Reading ROOT files through uproot: TTrees as EventSamples (:func:`read_events`,
:func:`iterate_events`) and TH1 histograms (:func:`read_histograms`).

A tree (a TTree, or an RNTuple where the installed uproot reads one) is read through a branch
mapping (:mod:`hepgen.io.root.branch_map`); without one, the layout is detected
(:func:`hepgen.io.root.layout.default_mapping`: hepgen's own, or the Muon and Jet collections
and ``genWeight`` of a CMS NanoAOD). Values are float64 in
memory (float32 values exact), momenta in GeV and rad; the provenance stored under
``hepgen_info`` becomes :attr:`EventSample.info` (``source`` defaults to the path). A missing,
truncated or corrupt file, a missing tree or branch, a branch of the wrong type or jaggedness,
a failing expression or non-finite momenta are one-line :class:`InputError` naming the file
(and the tree and branch where there is one).
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Iterator, Mapping

from ...errors import InputError
from ...events import EventSample
from .branch_map import arrays_to_sample, branch_columns, column_names, plan_collections
from .layout import INFO_KEY, WEIGHT_BRANCHES, default_mapping
from .scalar_branches import read_scalars
from .weight_branches import read_variations

RNTUPLE_CLASS = "ROOT::RNTuple"


def _one_line(err: BaseException) -> str:
    """An exception as one line: its lines joined, uproot's 'for file path' tail dropped."""
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(("for file path", "in file", "in object"))] or lines[:1]
    text = " ".join(lines).rstrip(",;:")
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


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
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes), not a ROOT file")
    f = _open_file(path)
    try:
        classes = f.classnames(cycle=False)
        obj = f[tree] if tree in classes else None
    except Exception as err:
        f.close()
        raise InputError(f"{path}: cannot read the file directory (truncated or corrupt? {_one_line(err)})") from None
    if classes.get(tree) == RNTUPLE_CLASS and not hasattr(obj, "arrays"):
        f.close()
        raise InputError(f"{path}: {tree!r} is an RNTuple, which uproot {uproot.__version__} cannot read "
                         "(install an uproot that reads RNTuples, or write the events as a TTree)")
    if obj is None or not isinstance(obj, (uproot.TTree, uproot.behaviors.RNTuple.RNTuple)):
        f.close()
        trees = [k + (" (RNTuple)" if c == RNTUPLE_CLASS else "") for k, c in classes.items()
                 if c == "TTree" or c == RNTUPLE_CLASS]
        what = f", {tree!r} is a {classes[tree]}" if tree in classes else ""
        raise InputError(f"{path}: no TTree {tree!r}{what} (trees in the file: {', '.join(trees) or 'none'}; "
                         "choose one with --tree)")
    return f, obj


def _is_rntuple(t) -> bool:
    import uproot

    return isinstance(t, uproot.behaviors.RNTuple.RNTuple)


def _read_info(f, path) -> dict[str, str]:
    if INFO_KEY not in f.keys(cycle=False):
        return {}
    try:
        return {str(k): str(v) for k, v in json.loads(str(f[INFO_KEY])).items()}
    except Exception as err:
        raise InputError(f"{path}: unreadable provenance {INFO_KEY!r} (truncated or corrupt? {_one_line(err)})") from None


def _where(path, tree, t) -> str:
    return f"{path}: {'RNTuple' if _is_rntuple(t) else 'tree'} {tree!r}"


def _prepare(path, tree, branches):
    f, t = _open_tree(path, tree)
    where = _where(path, tree, t)
    try:
        own = INFO_KEY in f.keys(cycle=False)
        mapping = dict(branches) if branches else default_mapping(t, where, own)
        plan = plan_collections(mapping, where)
        columns, aliases = branch_columns(t, mapping, where)
        if aliases and _is_rntuple(t):
            first = next(iter(aliases.values()))
            raise InputError(f"{where}: branch expressions are not read from an RNTuple ({first!r}); "
                             "map fields by name")
        info = _read_info(f, path)
        info.setdefault("source", str(path))
    except BaseException:
        f.close()
        raise
    return f, t, mapping, plan, info, columns, aliases, where


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
    f, t, mapping, plan, info, columns, aliases, where = _prepare(path, tree, branches)
    with f:
        try:
            arrays = t.arrays(
                column_names(columns), aliases=aliases or None, entry_start=entry_start, entry_stop=entry_stop
            )
        except Exception as err:
            raise _read_error(path, tree, err) from None
        sample = arrays_to_sample(arrays, mapping, columns, plan, info, path, where)
        return with_variations(t, sample, entry_start, (entry_start or 0) + len(sample), path)


def with_variations(tree, sample: EventSample, start, stop, path) -> EventSample:
    """``sample`` with the weight variations (:mod:`.weight_branches`) and the scalars
    (:mod:`.scalar_branches`) of entries [start, stop)."""
    variations = read_variations(tree, sample.info, start, stop, str(path))
    scalars = read_scalars(tree, sample.info, start, stop, str(path))
    return replace(sample, variations=variations or sample.variations, scalars=scalars or sample.scalars)


def iterate_events(
    path: str | os.PathLike,
    *,
    step_size: int = 100_000,
    tree: str = "Events",
    branches: Mapping[str, str] | None = None,
) -> Iterator[EventSample]:
    """Yield the tree as :class:`EventSample` chunks of ``step_size`` events (last may be shorter)."""
    f, t, mapping, plan, info, columns, aliases, where = _prepare(path, tree, branches)
    with f:
        it = t.iterate(column_names(columns), aliases=aliases or None, step_size=step_size)
        start = 0
        while True:
            try:
                arrays = next(it)
            except StopIteration:
                return
            except Exception as err:
                raise _read_error(path, tree, err) from None
            sample = arrays_to_sample(arrays, mapping, columns, plan, info, path, where)
            yield with_variations(t, sample, start, start + len(sample), path)
            start += len(sample)


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


def weight_branch(path: str | os.PathLike, tree: str, branches: Mapping[str, str] | None = None) -> str | None:
    """The branch (or expression) :func:`read_events` reads the event weight from: the mapping's
    ``weight``, else ``weight`` or ``genWeight`` of the tree; None when there is none (the reader
    then gives every event weight 1). A file or tree that cannot be read is a one-line :class:`InputError`."""
    if branches and "weight" in branches:
        return branches["weight"]
    f, t = _open_tree(path, tree)
    try:
        names = set(t.keys())
    finally:
        f.close()
    return next((w for w in WEIGHT_BRANCHES if w in names), None)
