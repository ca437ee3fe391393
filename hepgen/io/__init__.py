"""Event files: ROOT TTrees (:mod:`hepgen.io.root`) and LHE (:mod:`hepgen.io.lhe`).

:func:`read_sample` / :func:`write_sample` pick the format from the argument or the file
suffix (``.root``; ``.lhe``, ``.lhe.gz`` to read); :func:`read_data` reads the card's
``data`` section; :func:`convert` streams one format into the other.
"""

from __future__ import annotations

import itertools
import math
import os
import sys
from pathlib import Path
from typing import Iterable, Mapping

from ..cards import DataConfig
from ..errors import CardError, InputError, OutputError
from ..events import EventSample
from .lhe import LheWriter, iterate_lhe, read_lhe, write_lhe
from .root import RootWriter, iterate_events, read_events, write_events

FORMATS = ("root", "lhe")


def format_of(path: str | os.PathLike, fmt: str | None = None) -> str:
    """``fmt`` if given, else from the suffix; ``None`` when unknown."""
    if fmt:
        return fmt
    name = Path(path).name.lower()
    if name.endswith(".root"):
        return "root"
    if name.endswith((".lhe", ".lhe.gz", ".lhef")):
        return "lhe"
    return ""


def check_data_format(cfg: "DataConfig") -> None:
    """One :class:`CardError` line when ``data.path``'s suffix names another format than
    ``data.format`` (an ``.lhe`` file with ``format: root``); a path without a known suffix is
    read as ``data.format`` says."""
    suffix = format_of(cfg.path)
    if suffix and suffix != cfg.format:
        raise CardError(f"data.path {cfg.path}: its name says {suffix.upper()}, but data.format is {cfg.format} "
                        f"(set data.format: {suffix})")


def read_sample(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    tree: str = "Events",
    branches: Mapping[str, str] | None = None,
    max_events: int = 0,
) -> "EventSample":
    """Read an event file into an :class:`~hepgen.events.EventSample` (0 = all events)."""
    fmt = format_of(path, format)
    if fmt == "root":
        return read_events(path, tree=tree, branches=branches or None, entry_stop=max_events or None)
    if fmt == "lhe":
        return read_lhe(path, max_events=max_events or None)
    raise InputError(f"{path}: unknown event file format (use .root or .lhe, or give format: root|lhe)")


def read_data(cfg: "DataConfig") -> "EventSample":
    """The card's ``data`` section: path, format, tree, branch mapping, max_events."""
    return read_sample(cfg.path, format=cfg.format, tree=cfg.tree, branches=cfg.branches, max_events=cfg.max_events)


def write_sample(
    path: str | os.PathLike,
    samples: "EventSample | Iterable[EventSample]",
    *,
    format: str | None = None,
    force: bool = False,
    info: Mapping[str, str] | None = None,
    **options,
) -> Path:
    """Write events as ROOT (``tree=``) or LHE (``sqrt_s=``, ``pdf_id=``, ``weights=``)."""
    fmt = format_of(path, format)
    if fmt == "root":
        return write_events(path, samples, force=force, info=info, **options)
    if fmt == "lhe":
        return write_lhe(path, samples, force=force, info=info, **options)
    raise OutputError(f"{path}: unknown event file format (name it .root or .lhe)")


def convert(
    source: str | os.PathLike,
    target: str | os.PathLike,
    *,
    force: bool = False,
    tree: str = "Events",
    branches: Mapping[str, str] | None = None,
    sqrt_s: float | None = None,
    step_size: int = 100_000,
    progress: bool | None = None,
) -> tuple[Path, int]:
    """Stream ``source`` (ROOT or LHE) into ``target`` (ROOT or LHE); returns (path, events).

    Weight variations with their groups and descriptions, the beams and the cross section
    travel both ways (ROOT: NanoAOD-style weight branches and the provenance,
    :mod:`hepgen.io.root.weight_branches`). ``sqrt_s`` (GeV) sets an LHE target's proton beams
    when the source names none (default 13 TeV); one that disagrees with the source's beams, or
    is not finite and positive, is an :class:`OutputError`. A failure at any point leaves no
    ``target`` behind.
    """
    from tqdm import tqdm

    src_fmt, dst_fmt = format_of(source), format_of(target)
    if src_fmt not in FORMATS:
        raise InputError(f"{source}: unknown event file format (use .root or .lhe)")
    if dst_fmt not in FORMATS:
        raise OutputError(f"{target}: unknown event file format (name it .root or .lhe)")
    if sqrt_s is not None and not (math.isfinite(sqrt_s) and sqrt_s > 0):
        raise OutputError(f"--sqrt-s {sqrt_s}: give a finite, positive collider energy in GeV")
    if Path(source).resolve() == Path(target).resolve():
        raise OutputError(f"{target}: is the input file; give another output name")
    if src_fmt == "root":
        chunks = iterate_events(source, step_size=step_size, tree=tree, branches=branches)
    else:
        chunks = (c.sample for c in iterate_lhe(source, step_size=step_size))
    first = next(chunks, None)  # open and check the input before touching the output
    chunks = itertools.chain([first] if first is not None else [], chunks)
    if progress is None:
        progress = sys.stderr.isatty()
    bar = tqdm(desc=f"convert {Path(source).name}", unit="ev", disable=not progress, file=sys.stderr)
    info = {"converted_from": str(source)}
    n = 0
    with bar:
        if dst_fmt == "root":
            with RootWriter(target, force=force, info=info) as w:
                for sample in chunks:
                    w.write(sample)
                    n += len(sample)
                    bar.update(len(sample))
        else:
            with LheWriter(target, force=force, info=info, sqrt_s=sqrt_s) as w:
                for sample in chunks:
                    w.write(sample)
                    n += len(sample)
                    bar.update(len(sample))
    return Path(target), n
