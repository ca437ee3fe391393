"""Reading LHE files into EventSamples: whole (:func:`load_lhe`, :func:`read_lhe`) or in chunks
(:func:`iterate_lhe`).

Final-state (status 1) particles are grouped by PDG id into collections
(:func:`hepgen.io.lhe.pdg.collection_for_pdg`); every collection carries ``pdgId`` (int32),
lepton collections also ``charge`` (``-sign(pdgId)``). Momenta are converted with
:func:`hepgen.kinematics.epxpypz_to_ptetaphim` in float64 (GeV, rad), the mass is the file's
M column, objects are sorted by decreasing pT (:func:`hepgen.events.reader_order`; the
final-state b quarks of a tt̄ record go to ``Jet`` like every quark, so
:func:`hepgen.dilepton.assign` finds the decay products by their ``pdgId``). Where (pT, eta, phi, m) cannot give back the
file's E and pz (:func:`needs_given`: pT = 0 along the beam, E < 0, or a round trip that misses
pz by more than float64 precision or E by more than :data:`E_TOLERANCE`), the collection also
carries ``given_E`` and ``given_pz`` (float64 GeV, as in the file; NaN for the other objects),
which the LHE and ROOT writers use; collections without such objects have no extra fields. ``XWGTUP`` -> weight ``[N]``; the ``<hepgen>``
provenance -> ``info`` (``info["source"]`` defaults to the path); the process lines' cross
section -> ``info["cross_section_pb"]`` and ``info["cross_section_error_pb"]`` unless the
provenance has one; the ``<init>`` beams and the header's ``<initrwgt>`` groups and
descriptions -> ``info`` (:mod:`hepgen.io.variations`); ``<rwgt>`` weights ->
``EventSample.variations`` and :attr:`LheContent.weights`.
A missing, malformed or truncated file, or non-finite values, is a one-line
:class:`InputError` with the line number where there is one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Iterator, Mapping

import awkward as ak
import numpy as np

from ...errors import InputError
from ...events import GIVEN_FIELDS, EventSample, make_collection, reader_order
from ...kinematics import epxpypz_to_ptetaphim, ptetaphim_to_epxpypz
from ..variations import PDF_IDS, beams_record, groups_record, parse_initrwgt
from .parser import LheInit, LheParser
from .pdg import CHARGED_LEPTONS, collection_for_pdg, collection_rank


@dataclass(frozen=True)
class LheContent:
    """A whole LHE file: the sample, the ``<rwgt>`` variations, the raw particles, the init.

    weights: id -> float64 ``[N]`` (NaN where an event lacks that id).
    particles: awkward ``[N, var]`` records of every particle line (pdgId, status, mother1,
    mother2, color1, color2, px, py, pz, e, m, vtimup, spinup; momenta float64, GeV).
    """

    sample: EventSample
    weights: Mapping[str, np.ndarray]
    particles: ak.Array
    init: LheInit
    header: Mapping[str, str] = field(default_factory=dict)


E_TOLERANCE = 1e-6  # relative to |E| + |p|: beyond the rounding of a file's printed E, p and M
PZ_TOLERANCE = 8 * np.finfo(np.float64).eps  # relative to |E| + |p|: float64 precision


def needs_given(e, pz, pt, eta, phi, m) -> np.ndarray:
    """bool ``[n]``: the objects whose file (E, pz) (float64 GeV) the kinematics (pt, eta, phi,
    m) do not give back: pT = 0 (eta is then only a large stand-in), E < 0 (the formula's E is
    positive), a pz off by more than float64 precision (:data:`PZ_TOLERANCE`), or an E off by
    more than a file's rounding (:data:`E_TOLERANCE`: an M column that disagrees with E and p,
    e.g. a space-like record). Relative tolerances are to ``|E| + |p|``."""
    with np.errstate(over="ignore", invalid="ignore"):
        e_rt, _px, _py, pz_rt = ptetaphim_to_epxpypz(pt, eta, phi, m)
        scale = np.abs(e) + np.hypot(pt, pz)
        close = (np.abs(e_rt - e) <= E_TOLERANCE * scale) & (np.abs(pz_rt - pz) <= PZ_TOLERANCE * scale)
    return (pt == 0) | (e < 0) | ~close


_PFIELDS = ("pdgId", "status", "mother1", "mother2", "color1", "color2",
            "px", "py", "pz", "e", "m", "vtimup", "spinup")


def _build(reader: LheParser, events: list, source: str) -> LheContent:
    """Parsed events -> LheContent (particles, final-state collections, weights, info)."""
    n = len(events)
    counts = np.array([len(ev[1]) for ev in events], dtype=np.int64)
    flat_rows = [row for ev in events for row in ev[1]]
    try:
        table = np.array(flat_rows, dtype=np.float64).reshape(-1, 13)
    except ValueError:
        raise _number_error(reader, events) from None
    _check_numbers(reader, events, table)
    particles = ak.unflatten(
        ak.zip({
            f: (table[:, j].astype(np.int64) if j < 6 else table[:, j])
            for j, f in enumerate(_PFIELDS)
        }), counts,
    )
    weight = np.array([ev[0] for ev in events], dtype=np.float64)
    ids: list[str] = []
    for ev in events:
        for k in ev[2]:
            if k not in ids:
                ids.append(k)
    weights = {k: np.array([ev[2].get(k, np.nan) for ev in events], dtype=np.float64) for k in ids}

    status = table[:, 1].astype(np.int64)
    pdg = table[:, 0].astype(np.int64)
    event_of = np.repeat(np.arange(n), counts)
    fs = status == 1
    names = np.array([collection_for_pdg(int(p)) for p in pdg[fs]], dtype=object) if fs.any() else np.array([], object)
    with np.errstate(over="ignore", invalid="ignore"):  # overflowing momenta: check_finite says which
        pt, eta, phi, _m = epxpypz_to_ptetaphim(table[fs, 9], table[fs, 6], table[fs, 7], table[fs, 8])
    mass = table[fs, 10]
    given = needs_given(table[fs, 9], table[fs, 8], pt, eta, phi, mass)
    collections = {}
    for name in sorted(set(names.tolist()), key=collection_rank):
        sel = names == name
        c = np.bincount(event_of[fs][sel], minlength=n)
        extra = {"pdgId": pdg[fs][sel].astype(np.int32)}
        if name in CHARGED_LEPTONS:
            extra["charge"] = (-np.sign(pdg[fs][sel])).astype(np.int32)
        if given[sel].any():  # E and pz as given where the kinematics cannot rebuild them
            for f, j in zip(GIVEN_FIELDS, (9, 8)):
                extra[f] = np.where(given[sel], table[fs, j][sel], np.nan)
        collections[name] = reader_order(name, make_collection(pt[sel], eta[sel], phi[sel], mass[sel], counts=c, **extra))
    info = {**reader.info}
    info.setdefault("source", source)
    if reader.init.processes and "cross_section_pb" not in info:
        info["cross_section_pb"] = repr(reader.init.cross_section_pb)
        info["cross_section_error_pb"] = repr(reader.init.cross_section_error_pb)
    info.update(beams_record(reader.init.beam_id, reader.init.beam_energy))
    info[PDF_IDS] = json.dumps([int(i) for i in reader.init.pdf_id])
    info.pop("weight_groups", None)
    info.update(groups_record(parse_initrwgt(reader.header_text, source)))
    sample = EventSample(collections, weight, info, weights)
    sample.check_finite(source)
    for k, v in weights.items():
        if not np.isfinite(v[~np.isnan(v)]).all():
            raise InputError(f"{source}: non-finite values in weight variation {k!r}")
    return LheContent(sample, weights, particles, reader.init, {"text": reader.header_text})


def _check_numbers(reader: LheParser, events: list, table: np.ndarray) -> None:
    """The integer columns (pdgId .. color2) hold integers within int32 and the real ones
    (px .. spinup) are finite; else a one-line InputError naming the first bad particle line.
    The final-state px, py, pz, m are left to :meth:`EventSample.check_finite`, which names the
    collection and field."""
    ints, reals = table[:, :6], table[:, 6:]
    finite = (np.isfinite(reals[:, 3:4]).all(axis=1) & np.isfinite(reals[:, 5:]).all(axis=1)
              & (np.isfinite(reals[:, [0, 1, 2, 4]]).all(axis=1) | (ints[:, 1] == 1)))
    with np.errstate(invalid="ignore"):
        integral = ((np.abs(ints) < 2**31) & (ints == np.round(ints))).all(axis=1)
    bad = ~(finite & integral)
    if not bad.any():
        return
    k = int(np.argmax(bad))
    what = "a non-finite number" if not finite[k] else "an integer field that is not an int32"
    for ev in events:
        if k < len(ev[1]):
            raise InputError(f"{reader.path}: line {ev[3] + k}: malformed event {ev[4]}: {what} in a particle line")
        k -= len(ev[1])


def _number_error(reader: LheParser, events: list) -> InputError:
    """Locate the first particle line with a token that is not a number (slow path)."""
    for ev in events:
        for j, row in enumerate(ev[1]):
            try:
                [float(x) for x in row]
            except ValueError:
                return InputError(
                    f"{reader.path}: line {ev[3] + j}: malformed event {ev[4]}: not a number in a particle line"
                )
    return InputError(f"{reader.path}: malformed particle lines")  # pragma: no cover


def load_lhe(path: str | os.PathLike, *, max_events: int | None = None) -> LheContent:
    """Read a whole LHE file (or its first ``max_events``); see :class:`LheContent`."""
    reader = LheParser(path)
    try:
        events = []
        for ev in reader.events():
            events.append(ev)
            if max_events is not None and len(events) >= max_events:
                break
        return _build(reader, events, str(reader.path))
    finally:
        reader.close()


def read_lhe(path: str | os.PathLike, *, max_events: int | None = None) -> EventSample:
    """The final-state objects of an LHE file as an :class:`EventSample`."""
    return load_lhe(path, max_events=max_events).sample


def iterate_lhe(path: str | os.PathLike, *, step_size: int = 100_000) -> Iterator[LheContent]:
    """Yield :class:`LheContent` chunks of ``step_size`` events. A truncated file raises
    :class:`InputError` when the reader reaches the damage (earlier chunks were yielded)."""
    reader = LheParser(path)
    try:
        events = []
        for ev in reader.events():
            events.append(ev)
            if len(events) >= step_size:
                yield _build(reader, events, str(reader.path))
                events = []
        if events:
            yield _build(reader, events, str(reader.path))
    finally:
        reader.close()
