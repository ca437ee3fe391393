"""Les Houches Event files (LHEF 3.0): a streaming, atomic, full-precision writer and a
streaming reader for files from any generator (POWHEG, MadGraph, Sherpa, hepgen).

Writing (:class:`LheWriter`, :func:`write_lhe`)
------------------------------------------------
hepgen's events are hadron-level objects (muons, jets), not a parton-level hard process, so an
event record is built for them:

* every object becomes a final-state line (status 1): ``Muon`` -> ``13``/``-13`` from its
  charge (``charge -1 -> 13``; without a charge field the leading muon is written as 13 and
  the next as -13), ``Electron``/``Tau`` likewise, ``Photon`` -> 22, ``Jet`` -> **21 (a
  gluon), whatever flavour a pdgId field says**, any other collection with a ``pdgId`` field
  -> that field (no colour is assigned to it);
* with exactly two muons in an event, an intermediate Z (``23``, status 2) carries their
  summed four-momentum and is the muons' mother;
* two incoming partons (status -1), ``u`` along +z and ``ubar`` along -z, **with zero pT**:
  ``x1, x2 = (E +- pz) / sqrt(s)`` from the final-state sum, so E and pz are conserved
  exactly. The transverse momentum of the final state (non-zero at hadron level: unclustered
  radiation, the underlying event) is *not* balanced and is left as it is; Pythia 8 accepts
  such records (tested with ``Beams:frameType = 4``);
* colours: one chain ``u -> gluon jets -> ubar`` (tags 501, 502, ...), so the record is
  colour-consistent for Pythia's checks;
* ``XWGTUP`` is the event weight exactly as stored; ``IDWTUP`` is 3 when every weight is 1,
  4 when the weights vary but are non-negative, -4 when some are negative;
  ``SCALUP`` is the final-state invariant mass sqrt(x1 x2 s); ``AQEDUP = AQCDUP = -1`` (not
  defined for hadron-level events); ``SPINUP = 9`` (unpolarised); ``VTIMUP = 0``;
* weight variations (e.g. Bayesian network draws) go to ``<rwgt><wgt id=..>`` lines, declared
  in ``<initrwgt>``;
* every real number is written with ``%.17e`` (round-trips float64 exactly; pylhe's writer
  keeps only 5 significant digits of the ``<wgt>`` values);
* the header holds ``<hepgen>`` with the provenance as JSON (hepgen version, card, seed,
  cross section ...), restored into ``EventSample.info`` by the reader;
* the init block is reserved with fixed widths and completed at the end (IDWTUP, XMAXUP and,
  without a known cross section, XSECUP = mean weight are only known then), so the writer
  streams; the file is written under a temporary name and renamed only on success.

The cross section comes from ``info["cross_section_pb"]`` / ``info["cross_section_error_pb"]``.

Reading (:func:`read_lhe`, :func:`load_lhe`, :func:`iterate_lhe`)
----------------------------------------------------------------
Final-state (status 1) particles are grouped by PDG id into collections: ``|11| Electron``,
``|13| Muon``, ``|15| Tau``, ``22 Photon``, ``|12|,|14|,|16| Neutrino``, quarks ``|1..5|``
and ``21`` -> ``Jet``, ``|6| Top``, ``23, |24|, 25 Boson``, anything else ``Other``. Every
collection carries ``pdgId``; lepton collections also ``charge`` (``-sign(pdgId)``).
Momenta are converted with :func:`hepgen.kinematics.epxpypz_to_ptetaphim` in float64, the
mass is the file's M column, objects are sorted by decreasing pT. ``XWGTUP`` -> weight; the
process line's cross section -> ``info["cross_section_pb"]``; ``<rwgt>`` weights ->
:attr:`LheContent.weights`. A missing, malformed or truncated file is a one-line
:class:`InputError` with the line number.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterable, Iterator, Mapping
from xml.sax.saxutils import escape, unescape

import awkward as ak
import numpy as np

from .. import __version__
from ..errors import InputError, OutputError
from ..events import EventSample, make_collection
from ..kinematics import epxpypz_to_ptetaphim, ptetaphim_to_epxpypz
from ..outputs import atomic_output

# ------------------------------------------------------------------------------- PDG mapping

CHARGED_LEPTONS = {"Electron": 11, "Muon": 13, "Tau": 15}
FIXED_PDG = {"Jet": 21, "Photon": 22}


def collection_for_pdg(pdg: int) -> str:
    """Collection name of a final-state particle with PDG id ``pdg`` (see module docstring)."""
    a = abs(pdg)
    if a == 11:
        return "Electron"
    if a == 13:
        return "Muon"
    if a == 15:
        return "Tau"
    if a == 22:
        return "Photon"
    if a in (12, 14, 16):
        return "Neutrino"
    if 1 <= a <= 5 or a == 21:
        return "Jet"
    if a == 6:
        return "Top"
    if a in (23, 24, 25):
        return "Boson"
    return "Other"


# ------------------------------------------------------------------------------- writing

_F = "%.17e"  # float64 round trip
_W = 25  # fixed width of a reserved init number: "-1.23456789012345678e+300" is 25 chars


def _fmt(x: float) -> str:
    return _F % x


# bytes kept free in the header's <hepgen> block for provenance completed at the end
INFO_RESERVE = 1024


class LheWriter:
    """Stream :class:`EventSample` chunks into an LHEF 3.0 file, atomically.

    ::

        with LheWriter("out.lhe", info={"seed": "1"}, sqrt_s=13000.0) as w:
            w.write(sample, weights={"bnn_0": w0, "bnn_1": w1})

    ``weights`` (optional, per chunk) are named weight variations, float64 ``[N]`` each; the
    first chunk fixes their names. ``pdf_id`` is the LHAPDF id written as PDFSUPi (-1: none).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        force: bool = False,
        info: Mapping[str, str] | None = None,
        sqrt_s: float = 13000.0,
        pdf_id: int = -1,
    ):
        if not sqrt_s > 0:
            raise ValueError("sqrt_s must be positive")
        self.path = Path(path)
        self.force = force
        self.sqrt_s = float(sqrt_s)
        self.pdf_id = int(pdf_id)
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

    def _start(self, sample_info: Mapping[str, str], weight_ids: list[str]) -> None:
        self._sample_info = {str(k): str(v) for k, v in sample_info.items()}
        self._weight_ids = weight_ids
        out = io.StringIO()
        out.write('<LesHouchesEvents version="3.0">\n<header>\n<hepgen>')
        text = self._info_text()
        self._info_at = len(out.getvalue().encode())
        self._info_room = len(text.encode()) + INFO_RESERVE
        out.write(text + " " * INFO_RESERVE + "</hepgen>\n")
        if weight_ids:
            out.write("<initrwgt>\n<weightgroup name=\"hepgen\">\n")
            for wid in weight_ids:
                out.write(f'<weight id="{escape(wid)}">{escape(wid)}</weight>\n')
            out.write("</weightgroup>\n</initrwgt>\n")
        out.write("</header>\n<init>\n")
        self._fh.write(out.getvalue().encode())
        self._init_at = self._fh.tell()
        self._fh.write(self._init_text(0, 0.0, 0.0, 0.0).encode())
        self._fh.write(f'<generator name="hepgen" version="{__version__}"></generator>\n</init>\n'.encode())

    def _init_text(self, idwtup: int, xsec: float, xerr: float, xmax: float) -> str:
        """The two fixed-width init lines (same length whatever the values)."""
        e = self.sqrt_s / 2
        nums = lambda *xs: " ".join(f"{_fmt(x):>{_W}}" for x in xs)  # noqa: E731
        return (
            f"{2212:>6d} {2212:>6d} {nums(e, e)} {0:>2d} {0:>2d} "
            f"{self.pdf_id:>8d} {self.pdf_id:>8d} {idwtup:>3d} {1:>2d}\n"
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
        weights = {str(k): np.asarray(v, dtype=np.float64) for k, v in (weights or {}).items()}
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
        self._fh.write(_events_text(sample, w, weights, self.sqrt_s, self.path).encode())
        self.n_written += n


def _pdg_ids(name: str, coll: ak.Array, path) -> ak.Array:
    """PDG ids ``[N, var]`` for a collection (see module docstring)."""
    if name in FIXED_PDG:  # jets are hadron-level objects: written as gluons, whatever their flavour
        return ak.values_astype(ak.zeros_like(coll.pt), np.int64) + FIXED_PDG[name]
    if "pdgId" in coll.fields:
        return ak.values_astype(coll.pdgId, np.int64)
    if name in CHARGED_LEPTONS:
        base = CHARGED_LEPTONS[name]
        if "charge" in coll.fields:
            charge = ak.values_astype(coll.charge, np.int64)
            return ak.where(charge < 0, base, -base)
        idx = ak.local_index(coll.pt, axis=1)
        return ak.where(idx % 2 == 0, base, -base)
    raise OutputError(f"{path}: collection {name!r} has no pdgId field and no known PDG id")


def _events_text(sample: EventSample, w: np.ndarray, weights: Mapping[str, np.ndarray], sqrt_s: float, path) -> str:
    """The ``<event>`` blocks of one chunk (vectorised per field, joined per event)."""
    n = len(sample)
    # flat final-state objects, grouped per event in collection order
    if not sample.collections:
        raise OutputError(f"{path}: the sample has no object collections to write")
    parts = []
    for name, coll in sample.collections.items():
        e, px, py, pz = ptetaphim_to_epxpypz(
            *(ak.values_astype(coll[f], np.float64) for f in ("pt", "eta", "phi", "mass"))
        )
        parts.append(ak.zip({
            "pdg": _pdg_ids(name, coll, path),
            "px": px, "py": py, "pz": pz, "e": e,
            "m": ak.values_astype(coll.mass, np.float64),
            "muon": ak.full_like(coll.pt, name == "Muon", dtype=bool),
        }))
    fs = ak.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    tot = {k: ak.to_numpy(ak.sum(fs[k], axis=1)) for k in ("e", "px", "py", "pz")}
    if not all(np.isfinite(v).all() for v in tot.values()):
        raise OutputError(f"{path}: non-finite momenta in the events (NaN or inf)")
    x1 = (tot["e"] + tot["pz"]) / sqrt_s
    x2 = (tot["e"] - tot["pz"]) / sqrt_s
    if (x1 > 1).any() or (x2 > 1).any():
        raise OutputError(f"{path}: an event has more energy than the beams (x > 1 at sqrt_s = {sqrt_s} GeV)")
    e1, e2 = x1 * sqrt_s / 2, x2 * sqrt_s / 2
    shat = np.sqrt(np.clip(x1 * x2, 0, None)) * sqrt_s
    muon_pair = "Muon" in sample.collections
    n_mu = sample.multiplicity("Muon") if muon_pair else np.zeros(n, np.int64)
    row5 = " ".join([_F] * 5)

    counts = ak.to_numpy(ak.num(fs.pdg, axis=1))
    pdg = ak.to_numpy(ak.flatten(fs.pdg))
    is_mu = ak.to_numpy(ak.flatten(fs.muon))
    cols = {k: ak.to_numpy(ak.flatten(fs[k])) for k in ("px", "py", "pz", "e", "m")}
    lines_mom = [
        row5 % row
        for row in zip(*(cols[f].tolist() for f in ("px", "py", "pz", "e", "m")))
    ]
    # the Z: four-momentum sum of exactly two muons, as written
    z_lines = [None] * n
    if muon_pair:
        mu = fs[fs.muon]
        zp = {f: ak.to_numpy(ak.sum(mu[f], axis=1)) for f in ("px", "py", "pz", "e")}
        zm = np.sqrt(np.clip(zp["e"] ** 2 - zp["px"] ** 2 - zp["py"] ** 2 - zp["pz"] ** 2, 0.0, None))
        z_fmt = f"23 2 1 2 0 0 {row5} 0 9\n"
        z_lines = [
            z_fmt % vals if two else None
            for vals, two in zip(zip(*(zp[f].tolist() for f in ("px", "py", "pz", "e")), zm.tolist()), (n_mu == 2).tolist())
        ]
    head_fmt = f"%d 1 {_F} {_F} -1 -1\n"
    in1_fmt = f"2 -1 0 0 501 0 {_F} {_F} {_F} {_F} {_F} 0 9\n"
    in2_fmt = f"-2 -1 0 0 0 %d {_F} {_F} {_F} {_F} {_F} 0 9\n"
    wgt_fmt = [f'<wgt id="{escape(k)}">{_F}</wgt>\n' for k in weights]
    wvals = [weights[k].tolist() for k in weights]
    pdg_l, is_mu_l, counts_l = pdg.tolist(), is_mu.tolist(), counts.tolist()
    w_l, shat_l, e1_l, e2_l = w.tolist(), shat.tolist(), e1.tolist(), e2.tolist()
    out = []
    start = 0
    for i in range(n):
        c = counts_l[i]
        z = z_lines[i]
        out.append("<event>\n")
        out.append(head_fmt % (2 + c + (z is not None), w_l[i], shat_l[i]))
        out.append(in1_fmt % (0.0, 0.0, e1_l[i], e1_l[i], 0.0))
        body = []
        # colour chain: u (col 501) -> gluon jets -> ubar; gluon j: col = previous tag, acol = next
        tag = 501
        for k in range(start, start + c):
            mothers = "3 3" if z is not None and is_mu_l[k] else "1 2"
            if pdg_l[k] == 21:
                body.append(f"21 1 {mothers} {tag} {tag + 1} {lines_mom[k]} 0 9\n")
                tag += 1
            else:
                body.append(f"{pdg_l[k]} 1 {mothers} 0 0 {lines_mom[k]} 0 9\n")
        start += c
        out.append(in2_fmt % (tag, 0.0, 0.0, -e2_l[i], e2_l[i], 0.0))
        if z is not None:
            out.append(z)
        out.extend(body)
        if wgt_fmt:
            out.append("<rwgt>\n")
            out.extend(fmt % vals[i] for fmt, vals in zip(wgt_fmt, wvals))
            out.append("</rwgt>\n")
        out.append("</event>\n")
    return "".join(out)


def write_lhe(
    path: str | os.PathLike,
    samples: EventSample | Iterable[EventSample],
    *,
    force: bool = False,
    info: Mapping[str, str] | None = None,
    sqrt_s: float = 13000.0,
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


# ------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class LheInit:
    """The ``<init>`` block: beams (PDG ids, energies in GeV), PDF ids, IDWTUP, processes.

    processes: one (XSECUP pb, XERRUP pb, XMAXUP, LPRUP) tuple per process line.
    """

    beam_id: tuple[int, int]
    beam_energy: tuple[float, float]
    pdf_id: tuple[int, int]
    idwtup: int
    processes: tuple[tuple[float, float, float, int], ...]

    @property
    def cross_section_pb(self) -> float:
        return sum(p[0] for p in self.processes)

    @property
    def cross_section_error_pb(self) -> float:
        return math.sqrt(sum(p[1] ** 2 for p in self.processes))


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


_WGT = re.compile(r"""<wgt\s+id\s*=\s*["']([^"']*)["'][^>]*>\s*([^<\s]+)\s*</wgt>""")
_INIT = re.compile(r"<init(\s|>|$)")
_HEPGEN = re.compile(r"<hepgen>(.*?)</hepgen>", re.S)
_PFIELDS = ("pdgId", "status", "mother1", "mother2", "color1", "color2",
            "px", "py", "pz", "e", "m", "vtimup", "spinup")


class _Reader:
    """Line-based LHE parser; every failure is one-line InputError with the line number."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"{self.path}: no such file")
        if self.path.is_dir():
            raise InputError(f"{self.path}: is a directory, not an LHE file")
        try:
            with open(self.path, "rb") as fh:
                magic = fh.read(2)
            raw = gzip.open(self.path, "rb") if magic == b"\x1f\x8b" else open(self.path, "rb")
            self.fh = io.TextIOWrapper(raw, encoding="utf-8", errors="replace")
        except OSError as err:
            raise InputError(f"{self.path}: cannot read ({err.strerror or err})") from None
        self._lines = iter(self.fh)
        self._partial = False
        self.lineno = 0
        self.n_events = 0
        self.header_text = ""
        self.info: dict[str, str] = {}
        try:
            self.init = self._read_preamble()
        except BaseException:
            self.fh.close()
            raise

    def fail(self, what: str) -> InputError:
        if self._partial and not what.startswith("truncated"):  # the last line was cut short
            what = f"truncated: the file ends in the middle of a line ({what})"
        return InputError(f"{self.path}: line {self.lineno}: {what}")

    def _next(self) -> str | None:
        try:
            line = next(self._lines, None)
        except (OSError, EOFError) as err:  # e.g. a truncated gzip stream
            raise InputError(f"{self.path}: line {self.lineno}: cannot read (truncated or corrupt? {err})") from None
        if not line:
            return None
        self.lineno += 1
        self._partial = not line.endswith("\n")
        return line

    def _read_preamble(self) -> LheInit:
        line = self._next()
        while line is not None and not line.strip():
            line = self._next()
        if line is None or not line.lstrip().startswith("<LesHouchesEvents"):
            raise self.fail("not an LHE file (no <LesHouchesEvents> tag at the start)")
        header = []
        while True:
            line = self._next()
            if line is None:
                raise self.fail("truncated: the file ends before the <init> block")
            s = line.strip()
            if _INIT.match(s):
                break
            if s.startswith("<event"):
                raise self.fail("malformed: an <event> before the <init> block")
            header.append(line)
        self.header_text = "".join(header)
        m = _HEPGEN.search(self.header_text)
        if m:
            try:
                self.info = {str(k): str(v) for k, v in json.loads(unescape(m.group(1))).items()}
            except (ValueError, AttributeError):
                raise InputError(f"{self.path}: malformed <hepgen> provenance block in the header") from None
        rest = s[s.index(">") + 1:].strip() if ">" in s else ""
        first = rest or self._data_line("the <init> block")
        v = first.split()
        if len(v) < 10:
            raise self.fail(f"malformed <init>: expected 10 numbers, got {len(v)}")
        try:
            beam_id = (int(v[0]), int(v[1]))
            beam_energy = (float(v[2]), float(v[3]))
            pdf_id = (int(v[6]), int(v[7]))
            idwtup, nprup = int(v[8]), int(v[9])
        except ValueError:
            raise self.fail("malformed <init>: not a number") from None
        processes = []
        for _ in range(nprup):
            p = self._data_line("the <init> block").split()
            if len(p) < 4:
                raise self.fail(f"malformed <init> process line: expected 4 numbers, got {len(p)}")
            try:
                processes.append((float(p[0]), float(p[1]), float(p[2]), int(p[3])))
            except ValueError:
                raise self.fail("malformed <init> process line: not a number") from None
        while True:
            line = self._next()
            if line is None:
                raise self.fail("truncated: the file ends inside the <init> block")
            if "</init>" in line:
                break
        return LheInit(beam_id, beam_energy, pdf_id, idwtup, tuple(processes))

    def _data_line(self, where: str) -> str:
        while True:
            line = self._next()
            if line is None:
                raise self.fail(f"truncated: the file ends inside {where}")
            s = line.strip()
            if s and not s.startswith("#"):
                if s.startswith("<"):
                    raise self.fail(f"malformed: {s[:30]!r} inside {where}")
                return s

    def events(self) -> Iterator[tuple[float, list[list[float]], dict[str, float]]]:
        """Yield (XWGTUP, particle rows, rwgt weights) per event."""
        while True:
            line = self._next()
            if line is None:
                raise self.fail("truncated: no closing </LesHouchesEvents> tag")
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            if s.startswith("</LesHouchesEvents"):
                return
            if s.startswith("<event"):
                yield self._event()
            elif s.startswith("<"):
                continue  # other LHEF 3 blocks between events are allowed; skip them
            else:
                raise self.fail(f"malformed: unexpected text {s[:30]!r} outside an <event>")

    def _event(self):
        where = f"event {self.n_events + 1}"
        head = self._data_line(where).split()
        if len(head) < 6:
            raise self.fail(f"malformed {where}: expected 6 numbers in the event line, got {len(head)}")
        try:
            nup, xwgt = int(head[0]), float(head[2])
        except ValueError:
            raise self.fail(f"malformed {where}: not a number in the event line") from None
        if nup < 0:
            raise self.fail(f"malformed {where}: negative NUP")
        rows = []  # tokens, converted to numbers in bulk by _build
        first = self.lineno + 1
        for _ in range(nup):
            p = self._data_line(where).split()
            if len(p) < 13:
                raise self.fail(f"malformed {where}: particle line has {len(p)} fields, expected 13")
            rows.append(p[:13])
        tail = []
        while True:
            line = self._next()
            if line is None:
                raise self.fail(f"truncated: the file ends inside {where}")
            if "</event>" in line:
                tail.append(line[: line.index("</event>")])
                break
            if line.lstrip().startswith("<event"):
                raise self.fail(f"malformed {where}: a new <event> before </event>")
            tail.append(line)
        wgts = {}
        for wid, val in _WGT.findall("".join(tail)):
            try:
                wgts[unescape(wid)] = float(val)
            except ValueError:
                raise self.fail(f"malformed {where}: weight {wid!r} is not a number ({val[:20]!r})") from None
        self.n_events += 1
        return xwgt, rows, wgts, first, self.n_events

    def close(self):
        self.fh.close()


def _build(reader: _Reader, events: list, source: str) -> LheContent:
    """Parsed events -> LheContent (particles, final-state collections, weights, info)."""
    n = len(events)
    counts = np.array([len(ev[1]) for ev in events], dtype=np.int64)
    flat_rows = [row for ev in events for row in ev[1]]
    try:
        table = np.array(flat_rows, dtype=np.float64).reshape(-1, 13)
    except ValueError:
        raise _number_error(reader, events) from None
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
    pt, eta, phi, _m = epxpypz_to_ptetaphim(table[fs, 9], table[fs, 6], table[fs, 7], table[fs, 8])
    mass = table[fs, 10]
    collections = {}
    for name in sorted(set(names.tolist()), key=_collection_order):
        sel = names == name
        c = np.bincount(event_of[fs][sel], minlength=n)
        extra = {"pdgId": pdg[fs][sel].astype(np.int32)}
        if name in CHARGED_LEPTONS:
            extra["charge"] = (-np.sign(pdg[fs][sel])).astype(np.int32)
        coll = make_collection(pt[sel], eta[sel], phi[sel], mass[sel], counts=c, **extra)
        order = ak.argsort(coll.pt, axis=1, ascending=False, stable=True)
        collections[name] = coll[order]
    info = {**reader.info}
    info.setdefault("source", source)
    if reader.init.processes and "cross_section_pb" not in info:
        info["cross_section_pb"] = repr(reader.init.cross_section_pb)
        info["cross_section_error_pb"] = repr(reader.init.cross_section_error_pb)
    sample = EventSample(collections, weight, info)
    sample.check_finite(source)
    for k, v in weights.items():
        if not np.isfinite(v[~np.isnan(v)]).all():
            raise InputError(f"{source}: non-finite values in weight variation {k!r}")
    return LheContent(sample, weights, particles, reader.init, {"text": reader.header_text})


def _number_error(reader: _Reader, events: list) -> InputError:
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


_ORDER = ("Muon", "Electron", "Tau", "Photon", "Neutrino", "Jet", "Top", "Boson", "Other")


def _collection_order(name: str) -> int:
    return _ORDER.index(name)


def load_lhe(path: str | os.PathLike, *, max_events: int | None = None) -> LheContent:
    """Read a whole LHE file (or its first ``max_events``); see :class:`LheContent`."""
    reader = _Reader(path)
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
    reader = _Reader(path)
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
