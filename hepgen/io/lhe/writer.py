"""Writing LHEF 3.0 files: a streaming, atomic, full-precision writer for EventSample chunks.

:class:`LheWriter` streams :class:`~hepgen.events.EventSample` chunks (objects in GeV and rad,
weights float64 ``[N]``) into ``<event>`` blocks made by
:func:`hepgen.io.lhe.event_record.events_text`, or, for a sample of the six tt̄ decay products
(a ``GenPart`` collection, :func:`hepgen.io.lhe.ttbar_record.ttbar_particles`), the parton-level
tt̄ record of :mod:`hepgen.io.lhe.ttbar_record`; :func:`write_lhe` writes one sample or an
iterable of chunks.

* ``IDWTUP`` is 3 when every weight is 1, 4 when the weights vary but are non-negative, -4
  when some are negative; ``XSECUP``/``XERRUP`` (pb) come from ``info["cross_section_pb"]`` /
  ``info["cross_section_error_pb"]``, else XSECUP is the mean weight; ``XMAXUP`` is the
  largest ``|weight|``; PDFSUP1,2 = ``pdf_id`` when given, else the input's (provenance ``pdf_ids``), else -1;
* beams: those of the provenance (:data:`hepgen.io.variations.BEAM_IDS` / ``BEAM_ENERGIES``,
  kept from an LHE or ROOT input), else protons (2212) of ``sqrt_s / 2`` GeV each (13 TeV when
  ``sqrt_s`` is None); a ``sqrt_s`` that disagrees with the provenance's beams, or one that is
  not finite and positive, is an :class:`OutputError`;
* weight variations (``sample.variations`` and the ``weights`` argument; ids fixed by the first
  chunk) are declared in ``<initrwgt>`` with the groups, attributes and descriptions of the
  provenance's :data:`hepgen.io.variations.GROUPS` (ids no group names: one more group);
* the header holds ``<hepgen>`` with the provenance as JSON (``hepgen_version``, the first
  chunk's ``sample.info``, then ``info`` and :meth:`LheWriter.update_info` keys), which
  :func:`hepgen.io.lhe.read_lhe` restores into ``EventSample.info``;
* the init block and the provenance are reserved with fixed widths (``INFO_RESERVE`` spare
  bytes for the provenance) and completed in place at the end, so the writer streams;
* the file is written through :func:`hepgen.outputs.atomic_output` (refused if it exists
  without ``force``; renamed into place only on success). A ``.gz`` name is written as plain
  text beside the temporary file (the init block is patched in place) and gzip-compressed at
  the end, reproducibly (no name, mtime 0).
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import shutil
from pathlib import Path
from typing import IO, Iterable, Mapping
from xml.sax.saxutils import escape

import numpy as np

from ... import __version__
from ...errors import OutputError
from ...events import EventSample
from ...outputs import atomic_output
from ..variations import PDF_IDS, beams_of, beams_record, complete_groups, groups_of, groups_record, initrwgt_text, pdf_ids_of
from .event_record import REAL, events_text
from .ttbar_record import ttbar_events_text, ttbar_particles

_W = 25  # fixed width of a reserved init number: "-1.23456789012345678e+300" is 25 chars

# bytes kept free in the header's <hepgen> block for provenance completed at the end
INFO_RESERVE = 1024


class LheWriter:
    """Stream :class:`EventSample` chunks into an LHEF 3.0 file, atomically.

    ::

        with LheWriter("out.lhe", info={"seed": "1"}, sqrt_s=13000.0) as w:
            w.write(sample, weights={"bnn_0": w0, "bnn_1": w1})

    ``weights`` (optional, per chunk) are named weight variations, float64 ``[N]`` each, added
    to ``sample.variations``; the first chunk fixes their names (NaN: the event lacks that id,
    no ``<wgt>`` line). ``pdf_id`` is the LHAPDF id written as PDFSUPi (-1: none).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        force: bool = False,
        info: Mapping[str, str] | None = None,
        sqrt_s: float | None = None,
        pdf_id: int = -1,
    ):
        self.path = Path(path)
        if sqrt_s is not None and not (math.isfinite(sqrt_s) and sqrt_s > 0):
            raise OutputError(f"{self.path}: sqrt(s) = {sqrt_s} GeV: give a finite, positive energy")
        self.force = force
        self.sqrt_s = None if sqrt_s is None else float(sqrt_s)
        self._beams = ((2212, 2212), (6500.0, 6500.0))
        self.pdf_id = int(pdf_id)
        self._pdf_ids = (self.pdf_id, self.pdf_id)
        self._extra_info = {str(k): str(v) for k, v in (info or {}).items()}
        self._ctx = None
        self._fh: IO[bytes] | None = None
        self._init_at = 0
        self._weight_ids: list[str] | None = None
        self._n = 0
        self._sumw = 0.0
        self._maxw = 0.0
        self._all_one = True
        self._negative = False
        self._info: dict[str, str] | None = None
        self.n_written = 0

    def __enter__(self) -> "LheWriter":
        self._ctx = atomic_output(self.path, self.force)
        self._tmp = self._ctx.__enter__()
        # .gz: write plain text beside (the init block is patched in place), compress at the end
        self._plain = self._tmp.with_name(self._tmp.name + ".plain") if self.path.name.endswith(".gz") else self._tmp
        try:
            self._fh = open(self._plain, "wb")
        except OSError as err:
            self._ctx.__exit__(type(err), err, err.__traceback__)
            raise OutputError(f"cannot write {self.path}: {err.strerror or err}") from None
        return self

    def _discard(self) -> None:
        self._fh.close()
        if self._plain != self._tmp:
            self._plain.unlink(missing_ok=True)

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self._discard()
            return self._ctx.__exit__(exc_type, exc, tb)
        try:
            if self._info is None:  # no chunk written: header and init still needed
                self._start({}, [])
            self._fh.write(b"</LesHouchesEvents>\n")
            self._finish_info()
            self._finish_init()
            self._fh.close()
            if self._plain != self._tmp:
                with open(self._plain, "rb") as src, open(self._tmp, "wb") as raw:
                    with gzip.GzipFile(fileobj=raw, mode="wb", filename="", mtime=0) as dst:  # reproducible
                        shutil.copyfileobj(src, dst, 1 << 20)
                self._plain.unlink()
        except BaseException as err:
            self._discard()
            self._ctx.__exit__(type(err), err, err.__traceback__)
            if isinstance(err, OSError):
                raise OutputError(f"cannot write {self.path}: {err.strerror or err}") from None
            raise
        self._ctx.__exit__(None, None, None)
        return False

    # header and init ------------------------------------------------------------------------
    def update_info(self, info: Mapping[str, str]) -> None:
        """Add or replace provenance keys, e.g. counts known only after the last chunk. The header
        is written with the first chunk; it keeps room (``INFO_RESERVE`` bytes) that the final
        provenance fills in place when the block ends."""
        self._extra_info.update({str(k): str(v) for k, v in info.items()})

    def _info_text(self) -> str:
        """Set ``_info`` from the first chunk's ``sample.info`` and the keys given so far; return
        it as the escaped JSON of the header's <hepgen> block."""
        self._info = {"hepgen_version": __version__, **self._sample_info, **self._extra_info}
        return escape(json.dumps(self._info, sort_keys=True))

    def _resolve_beams(self, info: Mapping[str, str]) -> None:
        """The beams: the provenance's, else protons at ``sqrt_s``; recorded in the provenance."""
        beams = beams_of(info, str(self.path))
        if beams is None:
            e = (13000.0 if self.sqrt_s is None else self.sqrt_s) / 2
            beams = ((2212, 2212), (e, e))
        elif self.sqrt_s is not None:
            e1, e2 = beams[1]
            if not math.isclose(2 * math.sqrt(e1 * e2), self.sqrt_s, rel_tol=1e-12):
                raise OutputError(f"{self.path}: sqrt(s) = {self.sqrt_s:g} GeV disagrees with the input's beams "
                                  f"{beams[0][0]} {beams[0][1]} at {e1:g} + {e2:g} GeV (omit --sqrt-s to keep them)")
        self._beams = beams
        self._extra_info.update(beams_record(*beams))
        given = pdf_ids_of(info)
        if self.pdf_id == -1 and given is not None:  # no id asked for: keep the input's
            self._pdf_ids = given
        self._extra_info[PDF_IDS] = json.dumps(list(self._pdf_ids))

    def _start(self, sample_info: Mapping[str, str], weight_ids: list[str]) -> None:
        self._sample_info = {str(k): str(v) for k, v in sample_info.items()}
        self._weight_ids = weight_ids
        merged = {**self._sample_info, **self._extra_info}
        self._resolve_beams(merged)
        groups = complete_groups(groups_of(merged, str(self.path)), weight_ids) if weight_ids else []
        self._sample_info.pop("weight_groups", None)
        self._extra_info.pop("weight_groups", None)
        self._extra_info.update(groups_record(groups))
        out = io.StringIO()
        out.write('<LesHouchesEvents version="3.0">\n<header>\n<hepgen>')
        text = self._info_text()
        self._info_at = len(out.getvalue().encode())
        self._info_room = len(text.encode()) + INFO_RESERVE
        out.write(text + " " * INFO_RESERVE + "</hepgen>\n")
        if groups:
            out.write(initrwgt_text(groups))
        out.write("</header>\n<init>\n")
        self._fh.write(out.getvalue().encode())
        self._init_at = self._fh.tell()
        self._fh.write(self._init_text(0, 0.0, 0.0, 0.0).encode())
        self._fh.write(f'<generator name="hepgen" version="{__version__}"></generator>\n</init>\n'.encode())

    def _init_text(self, idwtup: int, xsec: float, xerr: float, xmax: float) -> str:
        """The two fixed-width init lines (same length whatever the values)."""
        (id1, id2), (e1, e2) = self._beams
        nums = lambda *xs: " ".join(f"{REAL % x:>{_W}}" for x in xs)  # noqa: E731
        return (
            f"{id1:>6d} {id2:>6d} {nums(e1, e2)} {0:>2d} {0:>2d} "
            f"{self._pdf_ids[0]:>8d} {self._pdf_ids[1]:>8d} {idwtup:>3d} {1:>2d}\n"
            f"{nums(xsec, xerr, xmax)} {1:>2d}\n"
        )

    def _finish_info(self) -> None:
        """Rewrite the header's provenance with the keys added since it was written (in place)."""
        text = self._info_text().encode()
        if len(text) > self._info_room:
            raise OutputError(f"{self.path}: the provenance outgrew the room kept for it in the header "
                              f"({len(text)} > {self._info_room} bytes)")
        self._fh.seek(self._info_at)
        self._fh.write(text + b" " * (self._info_room - len(text)))
        self._fh.seek(0, io.SEEK_END)

    def _finish_init(self) -> None:
        idwtup = 3 if self._all_one else (-4 if self._negative else 4)
        if "cross_section_pb" in self._info:
            xsec = float(self._info["cross_section_pb"])
            xerr = float(self._info.get("cross_section_error_pb", 0.0))
        else:
            xsec = self._sumw / self._n if self._n else 0.0
            xerr = 0.0
        xmax = self._maxw if self._n else 0.0
        for v in (xsec, xerr, xmax):
            if not math.isfinite(v):
                raise OutputError(f"{self.path}: non-finite cross section or weight in the init block")
        text = self._init_text(idwtup, xsec, xerr, xmax).encode()
        self._fh.seek(self._init_at)
        self._fh.write(text)

    # events ---------------------------------------------------------------------------------
    def write(self, sample: EventSample, weights: Mapping[str, np.ndarray] | None = None) -> None:
        """Append the events of ``sample``; ``weights``: name -> float64 ``[N]`` variations."""
        if self._fh is None:
            raise RuntimeError("LheWriter.write outside its 'with' block")
        weights = {str(k): np.asarray(v, dtype=np.float64) for k, v in {**sample.variations, **(weights or {})}.items()}
        if self._info is None:
            self._start(sample.info, list(weights))
        elif list(weights) != self._weight_ids:
            raise OutputError(
                f"{self.path}: chunk has weight variations {list(weights)}, the first chunk had {self._weight_ids}"
            )
        n = len(sample)
        for k, v in weights.items():
            if v.shape != (n,):
                raise OutputError(f"{self.path}: weight variation {k!r} has shape {v.shape}, expected ({n},)")
        if n == 0:
            return
        w = np.asarray(sample.weight, dtype=np.float64)
        if not np.isfinite(w).all():
            raise OutputError(f"{self.path}: non-finite event weights")
        self._n += n
        self._sumw += float(w.sum())
        self._maxw = max(self._maxw, float(np.abs(w).max()))
        self._all_one &= bool((w == 1.0).all())
        self._negative |= bool((w < 0).any())
        for k, v in weights.items():
            if np.isinf(v).any():
                raise OutputError(f"{self.path}: infinite values in weight variation {k!r}")
        particles = ttbar_particles(sample, self.path)  # the six tt̄ decay products: their own record
        if particles is None:
            text = events_text(sample, w, weights, self._beams[1], self.path)
        else:
            text = ttbar_events_text(*particles, w, weights, self._beams[1], self.path)
        self._fh.write(text.encode())
        self.n_written += n


def write_lhe(
    path: str | os.PathLike,
    samples: EventSample | Iterable[EventSample],
    *,
    force: bool = False,
    info: Mapping[str, str] | None = None,
    sqrt_s: float | None = None,
    pdf_id: int = -1,
    weights: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write one sample (with optional ``weights`` variations) or an iterable of chunks."""
    with LheWriter(path, force=force, info=info, sqrt_s=sqrt_s, pdf_id=pdf_id) as writer:
        if isinstance(samples, EventSample):
            writer.write(samples, weights)
        else:
            if weights:
                raise ValueError("weights= is for a single sample; pass them per chunk to LheWriter.write")
            for s in samples:
                writer.write(s)
    return Path(path)
