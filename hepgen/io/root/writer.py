"""Writing ROOT files through uproot: event TTrees (:class:`RootWriter`, :func:`write_events`)
and TH1D histograms (:func:`write_histograms`).

Events go into the layout of :mod:`hepgen.io.root.layout` (float32 momenta in GeV and rad,
int32 counts and integer fields, float32 ``weight [N]``) with the provenance as JSON under
``hepgen_info``, which :func:`hepgen.io.root.read_events` restores into
:attr:`EventSample.info`. Files are TTrees, not RNTuples (uproot >= 5.7 writes an RNTuple for
``file[name] = data``): the tree is made with ``mktree(name, types)`` and filled with
``extend`` in large chunks. Collections that keep a given E / pz (``given_E`` / ``given_pz``,
:data:`hepgen.events.GIVEN_FIELDS`) get branches ``C_E`` / ``C_pz``; a chunk without them
before the tree is made widens the layout (NaN where nothing is kept), but once the tree holds
events, a chunk that brings new ones is an :class:`OutputError`. Weight variations (``EventSample.variations``) become NanoAOD-style
float32 branches (:mod:`hepgen.io.root.weight_branches`), scalars (``EventSample.scalars``) bool or int64
branches (:mod:`hepgen.io.root.scalar_branches`), with their groups, descriptions and
branch names in the provenance; beams and cross section travel in the provenance too. Every
write goes through :func:`hepgen.outputs.atomic_output`: an
existing file is refused without ``force``, and an exception in the middle of writing leaves
no file behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Literal, Mapping

import numpy as np

from ... import __version__
from ...errors import InputError, OutputError
from ...events import EventSample
from ...outputs import atomic_output
from ..variations import GROUPS, complete_groups, groups_of, groups_record
from .layout import DEFAULT_CHUNK, INFO_KEY, with_given_fields, branch_types, chunk_data, describe_layout, merged_layout
from .scalar_branches import SCALARS, scalar_arrays, scalar_types, scalars_record
from .weight_branches import BRANCHES, branch_plan, chunk_arrays
from .weight_branches import branch_types as weight_types


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
    ``weight_branch="genWeight"`` stores the event weight as NanoAOD names it, in float64 (a
    weighted sample's weights at full precision) instead of the float32 ``weight``; the reader
    takes either.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        force: bool = False,
        info: Mapping[str, str] | None = None,
        tree: str = "Events",
        chunk_size: int = DEFAULT_CHUNK,
        weight_branch: Literal["weight", "genWeight"] = "weight",
    ):
        self.path = Path(path)
        self.weight_branch = weight_branch
        self.force = force
        self.tree_name = tree
        self.chunk_size = int(chunk_size)
        self._extra_info = {str(k): str(v) for k, v in (info or {}).items()}
        self._info: dict[str, str] | None = None
        self._layout: dict[str, object] | None = None
        self._wplan: dict[str, list[str]] = {}
        self._wids: list[str] = []
        self._scalars: list[str] = []
        self._scalar_types: dict[str, str] = {}
        self._groups_info: dict[str, str] = {}
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
            self._file.mktree(self.tree_name, self._renamed({"weight": "float32"}))
        info = {"hepgen_version": __version__, **(self._info or {}), **self._extra_info}
        info.pop(GROUPS, None)
        info.pop(BRANCHES, None)
        info.pop(SCALARS, None)
        info.update(scalars_record(self._scalars))
        if self._wids:
            info.update(groups_record(complete_groups(groups_of(self._groups_info, str(self.path)), self._wids)))
            info[BRANCHES] = json.dumps(self._wplan)
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
        layout = branch_types(sample)
        if self._layout is None:
            self._layout = layout
            self._info = {str(k): str(v) for k, v in sample.info.items()}
            self._groups_info = {k: v for k, v in {**self._info, **self._extra_info}.items() if k == GROUPS}
            self._wids = list(sample.variations)
            self._wplan = branch_plan(groups_of(self._groups_info, str(self.path)), self._wids)
            self._scalars = list(sample.scalars)
            self._scalar_types = scalar_types(sample.scalars, layout, str(self.path))
        elif layout != self._layout:
            merged = merged_layout(self._layout, layout)
            if merged is None:
                raise OutputError(f"{self.path}: chunk has branches {describe_layout(layout)}, "
                                  f"the first chunk had {describe_layout(self._layout)}")
            if merged != self._layout and self._tree is not None:
                raise OutputError(f"{self.path}: a chunk keeps given E / pz ({describe_layout(layout)}) after "
                                  f"{self.n_written} events were written without them (write in larger chunks)")
            self._layout = merged
        elif list(sample.variations) != self._wids:
            raise OutputError(f"{self.path}: chunk has weight variations {list(sample.variations)}, "
                              f"the first chunk had {self._wids}")
        if scalar_types(sample.scalars, {}, str(self.path)) != self._scalar_types:
            raise OutputError(f"{self.path}: chunk has scalars {list(sample.scalars)}, the first chunk had {self._scalars}")
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
        buffer = [with_given_fields(s, self._layout) for s in self._buffer]
        sample = buffer[0] if len(buffer) == 1 else EventSample.concatenate(buffer)
        self._buffer, self._buffered = [], 0
        data = self._renamed(chunk_data(sample, self._layout), sample)
        data.update(chunk_arrays(sample.variations, self._wplan, len(sample)))
        data.update(scalar_arrays(sample.scalars, self._scalars))
        if self._tree is None:
            types = {**self._renamed(self._layout), **weight_types(self._wplan)}
            self._tree = self._file.mktree(self.tree_name, {**types, **self._scalar_types})
        self._tree.extend(data)
        self.n_written += len(sample)

    def _renamed(self, columns: dict, sample: EventSample | None = None) -> dict:
        """``columns`` with the event weight as ``genWeight``, float64 (full precision), when asked
        (types without ``sample``, the chunk's arrays with it)."""
        if self.weight_branch == "weight":
            return columns
        out = {k: v for k, v in columns.items() if k != "weight"}
        out["genWeight"] = "float64" if sample is None else np.asarray(sample.weight, dtype=np.float64)
        return out


def write_events(
    path: str | os.PathLike,
    samples: EventSample | Iterable[EventSample],
    *,
    force: bool = False,
    info: Mapping[str, str] | None = None,
    tree: str = "Events",
    weight_branch: Literal["weight", "genWeight"] = "weight",
) -> Path:
    """Write one sample or an iterable of chunks to ``path`` (see :class:`RootWriter`)."""
    if isinstance(samples, EventSample):
        samples = [samples]
    with RootWriter(path, force=force, info=info, tree=tree, weight_branch=weight_branch) as writer:
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
