"""``hepgen integrate``: pp -> gamma*/Z -> mu+ mu- at LO, integrated with MadNIS and VEGAS (docs/integrate.md).

Layers, bottom up: :mod:`.pdf` (LHAPDF6 grids), :mod:`.matrix` (the matrix element, with the
couplings of :mod:`hepgen.electroweak`), :mod:`.phasespace` (the channel mappings),
:mod:`.config` (the card section ``integrate:``), :mod:`.integrand`, :mod:`.samplers` (VEGAS,
MadNIS), :mod:`.report` (metrics, unweighting, plot), :mod:`.pythia_check` (Pythia's sigmaGen)
and :mod:`.run` (the command: the output folder).
"""
