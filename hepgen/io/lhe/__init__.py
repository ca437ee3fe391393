"""Les Houches Event files (LHEF 3.0): a streaming, atomic, full-precision writer and a
streaming reader for files from any generator (POWHEG, MadGraph, Sherpa, hepgen).

Writing: :class:`LheWriter` / :func:`write_lhe` (:mod:`.writer`) turn EventSample chunks
(objects in GeV and rad, float64 weights ``[N]``, optional named weight variations) into
``<event>`` records built by :mod:`.event_record`: final-state objects with PDG ids from
:mod:`.pdg`, a Z parent for a muon pair, two incoming partons without pT whose beam fractions
conserve E and pz, one colour chain (a sample of the six tt̄ decay products: the parton-level
g g -> t tbar -> b l+ nu bbar l- nubar record of :mod:`.ttbar_record`); every real number ``%.17e``; provenance as JSON in the
header's ``<hepgen>`` block; written through :func:`hepgen.outputs.atomic_output`.

Reading: :func:`read_lhe` (an EventSample), :func:`load_lhe` (an :class:`LheContent` with
``<rwgt>`` weights, raw particle records and the :class:`LheInit`) and :func:`iterate_lhe`
(chunks) in :mod:`.reader`, over the line parser of :mod:`.parser`; every failure is a
one-line :class:`~hepgen.errors.InputError` with the line number.
"""

from .event_record import REAL, events_text
from .parser import LheInit, LheParser
from .pdg import CHARGED_LEPTONS, COLLECTION_ORDER, FIXED_PDG, collection_for_pdg, pdg_ids
from .reader import LheContent, iterate_lhe, load_lhe, read_lhe
from .writer import INFO_RESERVE, LheWriter, write_lhe

__all__ = [
    "CHARGED_LEPTONS", "COLLECTION_ORDER", "FIXED_PDG", "INFO_RESERVE", "REAL",
    "LheContent", "LheInit", "LheParser", "LheWriter",
    "collection_for_pdg", "events_text", "iterate_lhe", "load_lhe", "pdg_ids", "read_lhe", "write_lhe",
]
