"""Parsing LHE files (LHEF 1-3, plain or gzip) line by line, from any generator.

:class:`LheParser` opens a file (gzip is recognised by its magic bytes, not the name), reads
the header (the ``<hepgen>`` provenance block as JSON -> :attr:`LheParser.info`) and the
``<init>`` block (-> :class:`LheInit`), then yields the events one at a time as raw tokens:
the numbers are converted in bulk by :mod:`hepgen.io.lhe.reader`. Blocks between events
other than ``<event>`` are skipped. A missing, malformed or truncated file is a one-line
:class:`InputError` naming the file and the line number.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from xml.sax.saxutils import unescape

from ...errors import InputError


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
        """Total cross section (pb): the sum over the process lines."""
        return sum(p[0] for p in self.processes)

    @property
    def cross_section_error_pb(self) -> float:
        """Its error (pb): the process lines' errors added in quadrature."""
        return math.sqrt(sum(p[1] ** 2 for p in self.processes))


_WGT = re.compile(r"""<wgt\s+id\s*=\s*["']([^"']*)["'][^>]*>\s*([^<\s]+)\s*</wgt>""")
_INIT = re.compile(r"<init(\s|>|$)")
_HEPGEN = re.compile(r"<hepgen>(.*?)</hepgen>", re.S)


class LheParser:
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
            self._check_init()
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
        except (OSError, EOFError, zlib.error) as err:  # a truncated or corrupt gzip stream
            what = str(err).splitlines()[0] if str(err).strip() else type(err).__name__
            raise InputError(
                f"{self.path}: line {self.lineno}: cannot read (truncated or corrupt? {what})"
            ) from None
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
        if not all(math.isfinite(e) and e > 0 for e in beam_energy):
            raise self.fail(f"malformed <init>: beam energies {beam_energy[0]} {beam_energy[1]} GeV are not finite and positive")
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

    def _check_init(self) -> None:
        numbers = [*self.init.beam_energy, *(x for p in self.init.processes for x in p[:3])]
        if not all(math.isfinite(x) for x in numbers):
            raise self.fail("malformed <init>: a beam energy or cross section is NaN or inf")

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
        """Yield per event (XWGTUP, particle rows, rwgt weights, line of the first particle,
        event number): rows are the first 13 tokens (strings) of each particle line, weights
        id -> float."""
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
