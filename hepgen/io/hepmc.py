"""HepMC3 event files as Pythia ``nextBatch`` batches, and Pythia batches as HepMC3 files.

Any generator that writes HepMC (Herwig, Sherpa, Pythia standalone, MadGraph + a shower) can
feed what hepgen does with Pythia's own record: the Z+jets selection, the detector stage.

* :func:`read_hepmc` ``(path, batch_size)`` yields ``[N]`` awkward batches in the layout of
  ``pythia8mc.Pythia.nextBatch`` that :class:`hepgen.simulate.selection.FlatRecord` reads:
  ``prt`` ``[N, var]`` with ``id``, ``status``, ``mother1``, ``mother2`` (int32), ``p``
  (``Momentum4D`` px, py, pz, e; float64, GeV) and ``m`` (the generated mass, GeV), and ``info``
  with ``weights`` ``[N, var]`` (the event's weights; unit weight where the file gives none).
  Index 0 of every event is a system entry, id 90 and status -11 as in Pythia, whose momentum
  is the sum of the final-state momenta and which ends every mother chain; the file's particle
  ``k`` (HepMC id, 1-based) is index ``k``. ``mother1`` is the first incoming particle of the
  particle's production vertex (0, the system entry, without one), ``mother2`` the last one when
  the vertex has more than one (else 0). HepMC status 1 (final) becomes status 1, any other
  status ``s`` becomes ``-|s|``. MeV files are converted to GeV. Pythia's other fields
  (daughters, colours, vertices, ...) are not filled.
  The returned :class:`HepmcBatches` iterator also says what the file says about its run:
  ``generator`` (its tools), ``cross_section`` (the last event's ``GenCrossSection``, pb) and
  ``format``.
* :func:`write_hepmc` ``(path, batches, info)`` / :class:`HepmcWriter`: batches of that layout
  (Pythia's, or read back) as HepMC3 ASCII, GeV and mm, through
  :func:`hepgen.outputs.atomic_output`, with vertices rebuilt from ``mother1``/``mother2``
  (:mod:`hepgen.io.hepmc_graph`): reading the file back gives the same ``mother1`` chains and,
  where a second mother does not end in a vertex of its own, the same ``mother2``; particles
  are renumbered so that mothers come first. Status: 1 final, 4 beam (Pythia -12), 2 decayed
  at hadron level (Pythia -81..-99), else ``|s|``. Event weights from ``info.weights``; the
  cross section that ``info`` names (``cross_section_pb``, ``cross_section_error_pb``) as
  every event's ``GenCrossSection``; ``generator`` (and ``generator_version``) as the first
  tool, hepgen the second; the other ``info`` entries as run attributes.

Floats are written with 16 significant digits (HepMC3's default): a round trip changes a
float64 by at most one part in 1e15.

Bad input -- a missing file, one that is not HepMC (HepMC3 or HepMC2 ASCII, optionally .gz,
.bz2, .xz, .zst), a truncated one, one without events, broken mother chains, non-finite
momenta -- is a one-line :class:`~hepgen.errors.InputError` naming the file.

Why pyhepmc: it installs as a self-contained wheel (HepMC3 compiled in), reads and writes
every HepMC3 ASCII flavour with transparent compression, and gives numpy arrays of an event's
particles and links (``GenEvent.write_data``) and builds an event from arrays
(``GenEvent.from_hepevt``), so no per-particle Python runs. The ``hepmc3`` wheel's bindings
cannot load their own ``libHepMC3.so`` without preloading it by hand.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import importlib.metadata
import lzma
import math
import os
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import awkward as ak
import numpy as np

from ..errors import InputError
from ..outputs import atomic_output
from .hepmc_graph import FINAL, SYSTEM_ID, EventGraph, flat_fields, hepmc_status

SYSTEM_STATUS = -11  # Pythia's system entry (id SYSTEM_ID)
PRECISION = 16  # significant digits of the written floats
GEV_PER = {"GEV": 1.0, "MEV": 1e-3}
FORMATS = {b"HepMC::Asciiv3": "hepmc3", b"HepMC::IO_GenEvent": "hepmc2"}
_COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zstd")
_END = {"hepmc3": b"HepMC::Asciiv3-END_EVENT_LISTING", "hepmc2": b"HepMC::IO_GenEvent-END_EVENT_LISTING"}


def _opener(path: Path):
    """The function that opens ``path`` as bytes (compressed by its suffix, as pyhepmc does)."""
    suffix = path.suffix.lower()
    if suffix in (".zst", ".zstd"):
        try:
            from compression import zstd  # Python >= 3.14
        except ImportError:
            from backports import zstd
        return zstd.open
    return {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(suffix, open)


def _scan(path: Path) -> tuple[str, int]:
    """(format, number of events) of a HepMC file, read once as bytes (decompressed); a
    one-line :class:`InputError` for a file that is missing, not HepMC ASCII, truncated (no
    end-of-listing line) or without events."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    events, head, tail, carry = 0, b"", b"", b""
    try:
        with _opener(path)(path, "rb") as f:
            while chunk := f.read(1 << 24):
                if len(head) < 512:
                    head += chunk[:512]
                events += (carry + chunk).count(b"\nE ")  # an event line ("E number ...")
                carry, tail = chunk[-2:], (tail + chunk)[-512:]
    except (OSError, EOFError, ValueError) as err:
        raise InputError(f"{path}: cannot read ({err})") from None
    fmt = next((name for tag, name in FORMATS.items() if tag in head), None)
    if fmt is None:
        raise InputError(f"{path}: not a HepMC file (no HepMC3 or HepMC2 ASCII header)")
    if _END[fmt] not in tail:
        raise InputError(f"{path}: truncated (no end-of-listing line after {events} event(s))")
    if events == 0:
        raise InputError(f"{path}: no events")
    return fmt, events


def _events(pyhepmc, path: Path, fmt: str) -> Iterator:
    """The ``GenEvent`` objects of a file, until the reader fails. An uncompressed file is read
    by HepMC3's own file reader (a third faster than through a Python file object); it may
    end with an empty event (HepMC3 reports success on a section without one)."""
    if path.suffix.lower() in _COMPRESSED:
        with pyhepmc.open(path, "r", format=fmt) as f:
            while (event := f.read()) is not None:
                yield event
        return
    reader = {"hepmc3": pyhepmc.io.ReaderAscii, "hepmc2": pyhepmc.io.ReaderAsciiHepMC2}[fmt](str(path))
    with reader:
        while not reader.failed():
            event = pyhepmc.GenEvent()
            if not reader.read_event(event):
                break
            yield event


@contextlib.contextmanager
def _quiet(setup):
    """HepMC3 prints its parse errors and warnings itself; hepgen reports them as one line."""
    saved = setup.print_errors, setup.print_warnings, setup.debug_level
    setup.print_errors = setup.print_warnings = False
    setup.debug_level = 0
    try:
        yield
    finally:
        setup.print_errors, setup.print_warnings, setup.debug_level = saved


class HepmcBatches:
    """Batches of a HepMC file (see the module docstring); an iterator.

    ``generator``: the file's tools ("Sherpa 2.2.15; ..."), "" when it names none;
    ``cross_section``: (sigma, error) in pb from the last event read that carries a
    ``GenCrossSection``, None without; ``events``: events read so far; ``format``:
    "hepmc3" or "hepmc2"; ``total``: the events the file holds. The file is checked when this
    object is made (exists, HepMC header, end-of-listing line, events), and each event as it
    is read.
    """

    def __init__(self, path: str | os.PathLike, batch_size: int = 1000):
        if batch_size < 1:
            raise ValueError(f"batch_size {batch_size} < 1")
        self.path = Path(path)
        self.batch_size = int(batch_size)
        self.format, self.total = _scan(self.path)
        self.generator = ""
        self.cross_section: tuple[float, float] | None = None
        self.events = 0
        self._iter = self._batches()

    def __iter__(self) -> "HepmcBatches":
        return self

    def __next__(self) -> ak.Array:
        return next(self._iter)

    def close(self) -> None:
        """Stop reading (closes the file; HepMC3's messages are its own again)."""
        self._iter.close()

    def _batches(self) -> Iterator[ak.Array]:
        import pyhepmc

        events: list[tuple] = []
        with _quiet(pyhepmc.Setup):
            try:
                for event in _events(pyhepmc, self.path, self.format):
                    arrays = self._arrays(event, pyhepmc.GenEventData())
                    if arrays is None:  # an empty event: the end
                        break
                    events.append(arrays)
                    if len(events) == self.batch_size:
                        yield self._batch(events)
                        events = []
            except (RuntimeError, OSError, EOFError, ValueError) as err:
                raise InputError(f"{self.path}: cannot read event {self.events + len(events) + 1}: {err}") from None
        if self.events + len(events) != self.total:  # the reader stops at an event it cannot parse
            raise InputError(f"{self.path}: event {self.events + len(events) + 1} of {self.total} is malformed")
        if events:
            yield self._batch(events)

    def _arrays(self, event, data) -> tuple | None:
        """One event's numpy arrays (particles, links, weights), its GeV factor and number;
        None for an event without particles. ``data``: a new ``GenEventData`` per event (its
        arrays are views into it)."""
        event.write_data(data)
        if len(data.particles) == 0:
            return None
        if self.events == 0 and not self.generator and event.run_info is not None:
            self.generator = "; ".join(" ".join(s for s in (t.name, t.version) if s)
                                       for t in event.run_info.tools)
        xs = event.cross_section
        if xs is not None and xs.is_valid:
            sigma, err = float(xs.xsec()), float(xs.xsec_err())
            if math.isfinite(sigma) and sigma > 0:
                self.cross_section = (sigma, err if math.isfinite(err) else 0.0)
        unit = GEV_PER[data.momentum_unit.name]
        return (data.particles, data.links1, data.links2, data.weights, unit, data.event_number, len(data.vertices))

    def _batch(self, events: list[tuple]) -> ak.Array:
        parts, links1, links2, weights, units, numbers, n_vertices = zip(*events)
        n = len(events)
        counts = np.array([len(p) for p in parts], dtype=np.int64) + 1  # + the system entry
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        size = int(offsets[-1])
        event = np.repeat(np.arange(n), counts)
        system = offsets[:-1]
        slot = np.ones(size, dtype=bool)
        slot[system] = False
        flat = np.concatenate(parts)
        scale = np.repeat(np.asarray(units), counts - 1)

        pid = np.full(size, SYSTEM_ID, dtype=np.int32)
        status = np.full(size, SYSTEM_STATUS, dtype=np.int32)
        pid[slot] = flat["pid"]
        st = flat["status"]
        status[slot] = np.where(st == FINAL, FINAL, -np.abs(st))
        p = {}
        for name in ("px", "py", "pz", "e"):
            p[name] = np.zeros(size)
            p[name][slot] = flat[name] * scale
        p2 = flat["px"] ** 2 + flat["py"] ** 2 + flat["pz"] ** 2
        mass = np.zeros(size)
        mass[slot] = np.where(flat["is_mass_set"], flat["mass"], np.sqrt(np.maximum(flat["e"] ** 2 - p2, 0.0))) * scale
        bad = ~np.isfinite(np.stack([p["px"], p["py"], p["pz"], p["e"], mass]))
        if bad.any():
            k = int(np.flatnonzero(bad.any(axis=0))[0])
            self._fail(numbers, event[k], f"particle {k - system[event[k]]} has a non-finite momentum or mass")

        # the system entry: the sum of the final-state momenta
        final = status == FINAL
        for name in ("px", "py", "pz", "e"):
            p[name][system] = np.bincount(event[final], weights=p[name][final], minlength=n)
        mass[system] = np.sqrt(np.maximum(p["e"][system] ** 2 - p["px"][system] ** 2 - p["py"][system] ** 2
                                          - p["pz"][system] ** 2, 0.0))

        mother1, mother2 = self._mothers(links1, links2, n_vertices, offsets, event, numbers)
        weight_counts = np.array([max(len(w), 1) for w in weights], dtype=np.int64)
        w = np.concatenate([wt if len(wt) else np.ones(1) for wt in weights]).astype(np.float64)
        self.events += n
        return _record(counts, pid, status, mother1, mother2, p, mass, weight_counts, w)

    def _mothers(self, links1, links2, n_vertices, offsets, event, numbers):
        """(mother1, mother2) as local indices [P] from HepMC's vertex links (see the module
        docstring); every mother1 chain is checked to end at the system entry."""
        n = len(links1)
        size = int(offsets[-1])
        n_links = np.array([len(x) for x in links1], dtype=np.int64)
        l1 = np.concatenate(links1).astype(np.int64)
        l2 = np.concatenate(links2).astype(np.int64)
        ev = np.repeat(np.arange(n), n_links)
        vbase = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(n_vertices, out=vbase[1:])
        incoming = l1 > 0
        in_part = offsets[ev[incoming]] + l1[incoming]
        in_vert = vbase[ev[incoming]] - l2[incoming] - 1
        out_vert = vbase[ev[~incoming]] - l1[~incoming] - 1
        out_part = offsets[ev[~incoming]] + l2[~incoming]
        n_vert = int(vbase[-1])
        first = np.zeros(n_vert, dtype=np.int64)
        last = np.zeros(n_vert, dtype=np.int64)
        n_in = np.bincount(in_vert, minlength=n_vert)
        verts, idx = np.unique(in_vert, return_index=True)
        first[verts] = in_part[idx]
        verts, idx = np.unique(in_vert[::-1], return_index=True)
        last[verts] = in_part[::-1][idx]

        system = offsets[event]
        m1 = system.copy()  # global; no production vertex (or one without incoming): the system entry
        m2 = system.copy()
        has_in = n_in[out_vert] > 0
        m1[out_part[has_in]] = first[out_vert[has_in]]
        two = n_in[out_vert] > 1
        m2[out_part[two]] = last[out_vert[two]]

        top = m1.copy()  # pointer jumping: after k steps, chains up to 2^k long have ended
        for _ in range(int(np.ceil(np.log2(max(size, 2)))) + 1):
            top = top[top]
        loops = np.flatnonzero(top != system)
        if len(loops):
            k = int(loops[0])
            self._fail(numbers, event[k], f"the mother chain of particle {k - system[event[k]]} loops")
        return (m1 - system).astype(np.int32), (m2 - system).astype(np.int32)

    def _fail(self, numbers, index: int, what: str):
        raise InputError(f"{self.path}: event {self.events + int(index) + 1} (number {numbers[int(index)]}): {what}")


def read_hepmc(path: str | os.PathLike, batch_size: int = 1000) -> HepmcBatches:
    """The events of a HepMC file as ``nextBatch``-layout batches of ``batch_size`` events
    (the last one may be shorter); see the module docstring."""
    return HepmcBatches(path, batch_size)


def _record(counts, pid, status, mother1, mother2, p, mass, weight_counts, weights) -> ak.Array:
    """The ``{prt, info}`` batch from flat buffers (``counts`` [N] particles per event)."""

    def listed(content, c):
        offsets = np.zeros(len(c) + 1, dtype=np.int64)
        np.cumsum(c, out=offsets[1:])
        return ak.contents.ListOffsetArray(ak.index.Index64(offsets), content)

    size = int(np.sum(counts))
    momentum = ak.contents.RecordArray(
        [ak.contents.NumpyArray(p[k]) for k in ("px", "py", "pz", "e")], ["px", "py", "pz", "e"],
        length=size, parameters={"__record__": "Momentum4D"})
    prt = ak.contents.RecordArray(
        [ak.contents.NumpyArray(pid), ak.contents.NumpyArray(status), ak.contents.NumpyArray(mother1),
         ak.contents.NumpyArray(mother2), momentum, ak.contents.NumpyArray(mass)],
        ["id", "status", "mother1", "mother2", "p", "m"], length=size)
    info = ak.contents.RecordArray([listed(ak.contents.NumpyArray(weights), weight_counts)], ["weights"],
                                   length=len(counts))
    return ak.Array(ak.contents.RecordArray([listed(prt, counts), info], ["prt", "info"], length=len(counts)))


# --------------------------------------------------------------------------------------------
# writing

class HepmcWriter:
    """Stream ``nextBatch``-layout batches into one HepMC3 ASCII file (module docstring).

    Use as a context manager; ``write(batch, cross_section=None)`` per batch, with the cross
    section (pb, error) these events carry (default: the one ``info`` names). The file appears
    under its name when the block ends without an exception (``atomic=False``: written in
    place, for a caller that owns the temporary). A ``.gz``, ``.bz2``, ``.xz`` or ``.zst``
    suffix compresses it. Events are numbered ``first_event + step * k`` (k = 0, 1, ...), so
    that the parts of :func:`merge_hepmc` keep distinct numbers.
    """

    def __init__(self, path: str | os.PathLike, *, info: Mapping[str, str] | None = None, force: bool = False,
                 atomic: bool = True, first_event: int = 0, step: int = 1):
        self.path = Path(path)
        self.info = {str(k): str(v) for k, v in (info or {}).items()}
        self.force = force
        self.atomic = atomic
        self.n_written = 0
        self.first_event, self.step = int(first_event), int(step)  # event numbers first, first + step, ...
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> "HepmcWriter":
        import pyhepmc

        with contextlib.ExitStack() as stack:
            target = stack.enter_context(atomic_output(self.path, self.force)) if self.atomic else self.path
            self._file = stack.enter_context(pyhepmc.open(target, "w", precision=PRECISION))
            self._stack = stack.pop_all()  # closes the file, then moves it into place
        run = pyhepmc.GenRunInfo()
        made_by = [(self.info["generator"], self.info.get("generator_version", ""), "")] if "generator" in self.info else []
        run.tools = [*made_by, ("hepgen", importlib.metadata.version("hepgen"), "hepgen.io.hepmc")]
        for k, v in self.info.items():
            if k not in ("cross_section_pb", "cross_section_error_pb", "generator", "generator_version"):
                run.attributes[k] = v
        self._run = run
        self._event = pyhepmc.GenEvent(pyhepmc.Units.GEV, pyhepmc.Units.MM)
        xs = self.info.get("cross_section_pb")
        self._sigma = (float(xs), float(self.info.get("cross_section_error_pb", 0.0))) if xs else None
        return self

    def write(self, batch: ak.Array, cross_section: tuple[float, float] | None = None) -> None:
        """Write the events of ``batch``."""
        import pyhepmc

        f = flat_fields(batch)
        graph = EventGraph(f)
        o = graph.order
        px, py, pz, e, m = (np.ascontiguousarray(f[k][o]) for k in ("px", "py", "pz", "e", "m"))
        pid = np.ascontiguousarray(f["id"][o])
        status = hepmc_status(f["status"][o])
        weights = ak.to_list(batch["info"]["weights"]) if "info" in batch.fields else None
        sigma = cross_section or self._sigma
        extra_at = np.searchsorted(graph.extra_event, np.arange(len(graph.counts) + 1))
        ev = self._event
        for i, (lo, hi) in enumerate(zip(graph.starts[:-1], graph.starts[1:])):
            ev.from_hepevt(self.first_event + self.step * self.n_written, px[lo:hi], py[lo:hi], pz[lo:hi], e[lo:hi], m[lo:hi],
                           pid[lo:hi], status[lo:hi], parents=graph.parents[lo:hi])
            if extra_at[i + 1] > extra_at[i]:
                particles = ev.particles
                for a, k in graph.extra[extra_at[i]:extra_at[i + 1]]:
                    particles[a - 1].end_vertex.add_particle_in(particles[k - 1])
            ev.run_info = self._run
            if weights is not None:
                ev.weights = weights[i]
            if sigma is not None:
                xs = pyhepmc.GenCrossSection()
                xs.set_cross_section(sigma[0], sigma[1])
                ev.cross_section = xs
            self._file.write(ev)
            self.n_written += 1

    def __exit__(self, exc_type, exc, tb) -> bool:
        return self._stack.__exit__(exc_type, exc, tb)


def write_hepmc(path: str | os.PathLike, batches: ak.Array | Iterable[ak.Array], info: Mapping[str, str] | None = None,
                *, force: bool = False) -> Path:
    """Write ``batches`` (one ``nextBatch``-layout batch or an iterable of them) as a HepMC3
    ASCII file (see :class:`HepmcWriter`); returns the path."""
    if isinstance(batches, ak.Array):
        batches = [batches]
    with HepmcWriter(path, info=info, force=force) as w:
        for batch in batches:
            w.write(batch)
    return Path(path)


def merge_hepmc(parts: Iterable[str | os.PathLike], target: str | os.PathLike) -> None:
    """Concatenate uncompressed HepMC3 ASCII files of one run (the same header, as
    :class:`HepmcWriter` writes them) into ``target`` (compressed by its suffix): the first
    header, every file's events in order, one end-of-listing line. Files without events add
    nothing."""
    end = _END["hepmc3"]
    header = False
    with _opener(Path(target))(target, "wb") as out:
        for part in parts:
            size = os.path.getsize(part)
            with open(part, "rb") as f:
                head = b""
                while (at := head.find(b"\nE ")) < 0 and len(head) < size:
                    head += f.read(1 << 20)
                if at < 0:
                    continue
                f.seek(max(0, size - 512))
                stop = size - 512 + f.read().rfind(end) if size > 512 else head.rfind(end)
                start = 0 if not header else at + 1
                header = True
                f.seek(start)
                left = stop - start
                while left > 0 and (chunk := f.read(min(left, 1 << 24))):
                    out.write(chunk)
                    left -= len(chunk)
        if header:
            out.write(end + b"\n")
