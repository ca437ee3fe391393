"""Reference samples: pp -> Z/gamma* -> mu+ mu- + jets with Pythia 8 and FastJet.

``produce(card, events=..., seed=..., output=..., jobs=..., force=...)`` is what
``hepgen simulate`` runs. Modules: :mod:`.pythia` (settings, seeds, the configured
generator), :mod:`.selection` (Z muons from the record history, anti-kT jets, cuts),
:mod:`.run` (workers, progress, provenance, the atomic ROOT file).
"""

from .run import produce

__all__ = ["produce"]
