"""File-level metadata that travels with an event sample between formats: beams and the
groups and descriptions of weight variations.

Both live in the provenance (``EventSample.info``, str -> str) under fixed keys, so every
writer stores them and every reader restores them:

* :data:`BEAM_IDS` / :data:`BEAM_ENERGIES`: JSON ``[id1, id2]`` (PDG) and ``[E1, E2]`` (GeV,
  float64 exact), from an LHE ``<init>`` block (:func:`beams_record`, :func:`beams_of`);
* :data:`GROUPS`: JSON list of weight groups, each ``{"attrs": {...}, "weights": [{"id": ..,
  "text": .., "attrs": {...}}, ...]}`` with the ``<weightgroup>`` attributes (``name``,
  ``type``, ``combine``), each ``<weight>``'s id, description (``muR=1 muF=2``) and other
  attributes, from an LHE ``<initrwgt>`` block (:func:`parse_initrwgt`, :func:`initrwgt_text`).

The values themselves are ``EventSample.variations`` (id -> float64 ``[N]``).
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from typing import Iterable, Mapping
from xml.sax.saxutils import escape, quoteattr

from ..errors import InputError

PDF_IDS = "pdf_ids"  # JSON [id1, id2]: the <init> PDFSUP of each beam (LHAPDF ids, -1: none)
BEAM_IDS = "beam_ids"
BEAM_ENERGIES = "beam_energies_gev"
GROUPS = "weight_groups"

Beams = tuple[tuple[int, int], tuple[float, float]]

# Pythia 8 parton-shower variations (UncertaintyBands), as NanoAOD's PSWeight [N, 4] stores them:
# w_var / w_nominal in the order [ISR up, FSR up, ISR down, FSR down]; up = the shower's
# renormalisation scale x 0.5 (more radiation; NanoAOD's documentation says "ISR=2" / "FSR=2"),
# down = x 2 ("ISR=0.5" / "FSR=0.5"). (variation id, Pythia's UncertaintyBands definition)
PSWEIGHT = (("isr_up", "isr:muRfac=0.5"), ("fsr_up", "fsr:muRfac=0.5"),
            ("isr_down", "isr:muRfac=2.0"), ("fsr_down", "fsr:muRfac=2.0"))
PSWEIGHT_TYPE = "parton_shower"  # the weight group's type; the ROOT writer stores the group as PSWeight


def psweight_group() -> dict:
    """The weight group of the :data:`PSWEIGHT` variations (see :func:`groups_record`)."""
    return {"attrs": {"name": "PSWeight", "type": PSWEIGHT_TYPE},
            "weights": [{"id": wid, "text": text, "attrs": {}} for wid, text in PSWEIGHT]}


def beams_record(ids: Iterable[int], energies: Iterable[float]) -> dict[str, str]:
    """The provenance keys of two beams (PDG ids, energies in GeV; ``repr`` keeps float64)."""
    ids, energies = [int(i) for i in ids], [float(e) for e in energies]
    return {BEAM_IDS: json.dumps(ids), BEAM_ENERGIES: "[" + ", ".join(map(repr, energies)) + "]"}


def pdf_ids_of(info: Mapping[str, str]) -> tuple[int, int] | None:
    """The two PDFSUP ids a provenance names (:data:`PDF_IDS`), or None (absent or malformed)."""
    try:
        ids = [int(v) for v in json.loads(info[PDF_IDS])]
    except (KeyError, ValueError, TypeError):
        return None
    return (ids[0], ids[1]) if len(ids) == 2 else None


def beams_of(info: Mapping[str, str], source: str = "sample") -> Beams | None:
    """((id1, id2), (E1, E2)) from a provenance, None when it names no beams. Energies must be
    finite and positive (:class:`InputError` otherwise)."""
    if BEAM_IDS not in info or BEAM_ENERGIES not in info:
        return None
    try:
        ids = [int(v) for v in json.loads(info[BEAM_IDS])]
        energies = [float(v) for v in json.loads(info[BEAM_ENERGIES])]
    except (ValueError, TypeError):
        raise InputError(f"{source}: malformed beams in the provenance ({info[BEAM_IDS]!r}, {info[BEAM_ENERGIES]!r})") from None
    if len(ids) != 2 or len(energies) != 2:
        raise InputError(f"{source}: the provenance names {len(ids)} beam ids and {len(energies)} energies, not 2")
    if not all(math.isfinite(e) and e > 0 for e in energies):
        raise InputError(f"{source}: beam energies {energies} GeV are not finite and positive")
    return (ids[0], ids[1]), (energies[0], energies[1])


def groups_of(info: Mapping[str, str], source: str = "sample") -> list[dict]:
    """The weight groups of a provenance ([] when it has none)."""
    if GROUPS not in info:
        return []
    try:
        groups = json.loads(info[GROUPS])
        ok = isinstance(groups, list) and all(
            isinstance(g, dict) and isinstance(g.get("weights"), list) and all("id" in w for w in g["weights"])
            for g in groups)
    except ValueError:
        ok = False
    if not ok:
        raise InputError(f"{source}: malformed {GROUPS!r} in the provenance")
    return groups


def groups_record(groups: list[dict]) -> dict[str, str]:
    return {GROUPS: json.dumps(groups, sort_keys=True)} if groups else {}


def complete_groups(groups: list[dict], ids: Iterable[str]) -> list[dict]:
    """``groups`` restricted to ``ids``, plus one group (attrs ``{}``) for ids no group names."""
    ids = list(ids)
    wanted = set(ids)
    out, seen = [], set()
    for g in groups:
        ws = [w for w in g["weights"] if str(w["id"]) in wanted and str(w["id"]) not in seen]
        seen.update(str(w["id"]) for w in ws)
        if ws:
            out.append({"attrs": dict(g.get("attrs", {})), "weights": ws})
    rest = [{"id": i, "text": "", "attrs": {}} for i in ids if i not in seen]
    if rest:
        out.append({"attrs": {}, "weights": rest})
    return out


_INITRWGT = re.compile(r"<initrwgt\b.*?</initrwgt>", re.S)


def parse_initrwgt(header: str, source: str) -> list[dict]:
    """The weight groups of an LHE header's ``<initrwgt>`` block ([] without one). A block that is
    not well-formed XML is an :class:`InputError`."""
    m = _INITRWGT.search(header)
    if not m:
        return []
    try:
        root = ET.fromstring(m.group(0))
    except ET.ParseError as err:
        raise InputError(f"{source}: malformed <initrwgt> block in the header ({err})") from None
    groups = []

    def weights_of(elem) -> list[dict]:
        return [{"id": w.get("id", ""), "text": (w.text or "").strip(),
                 "attrs": {k: v for k, v in w.attrib.items() if k != "id"}}
                for w in elem.findall("weight")]

    loose = weights_of(root)  # <weight> outside any group
    for g in root.findall("weightgroup"):
        groups.append({"attrs": dict(g.attrib), "weights": weights_of(g)})
    if loose:
        groups.append({"attrs": {}, "weights": loose})
    return groups


def initrwgt_text(groups: list[dict]) -> str:
    """The ``<initrwgt>`` block of an LHE header for ``groups`` (see :func:`complete_groups`)."""
    out = ["<initrwgt>\n"]
    for g in groups:
        attrs = "".join(f" {k}={quoteattr(str(v))}" for k, v in g.get("attrs", {}).items()) or ' name="hepgen"'
        out.append(f"<weightgroup{attrs}>\n")
        for w in g["weights"]:
            extra = "".join(f" {k}={quoteattr(str(v))}" for k, v in w.get("attrs", {}).items())
            text = w.get("text") or w["id"]
            out.append(f"<weight id={quoteattr(str(w['id']))}{extra}>{escape(str(text))}</weight>\n")
        out.append("</weightgroup>\n")
    out.append("</initrwgt>\n")
    return "".join(out)
