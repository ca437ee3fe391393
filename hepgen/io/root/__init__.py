"""ROOT files through uproot: NanoAOD-style event TTrees and TH1D histograms.

Writing (:mod:`.writer`): :class:`RootWriter` streams EventSample chunks into one TTree in
hepgen's layout (:mod:`.layout`: ``nC`` int32 ``[N]``, ``C_pt/_eta/_phi/_mass`` float32
``[N, var]`` in GeV and rad, ``C_charge``/``C_pdgId`` int32, ``weight`` float32 ``[N]``, the
provenance as JSON under ``hepgen_info``), atomically; :func:`write_events` writes a sample or
chunks; :func:`write_histograms` writes ``hist.Hist`` objects as TH1D.

Reading (:mod:`.reader`): :func:`read_events` / :func:`iterate_events` read hepgen's layout
or any ntuple through a branch mapping (:mod:`.branch_map`) into float64 EventSamples;
:func:`read_histograms` reads TH1 objects as ``hist.Hist``. Failures are one-line
:class:`~hepgen.errors.InputError` / :class:`~hepgen.errors.OutputError`.
"""

from .branch_map import CARTESIAN_FIELDS
from .layout import DEFAULT_CHUNK, INFO_KEY
from .reader import iterate_events, read_events, read_histograms, weight_branch
from .writer import RootWriter, write_events, write_histograms

__all__ = [
    "CARTESIAN_FIELDS", "DEFAULT_CHUNK", "INFO_KEY",
    "RootWriter", "iterate_events", "read_events", "read_histograms", "weight_branch", "write_events", "write_histograms",
]
