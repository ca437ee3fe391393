"""hepgen's parametrised CMS-like detector: particle-level events -> reco muons and reco jets.

:func:`reconstruct` (``rec, cfg, process, rng -> RecoBatch``) is the whole stage; the card's
``detector:`` section becomes a :class:`DetectorConfig` through :func:`detector_config`.
Modules: :mod:`.config` (the section, defaults and citations of Delphes's CMS card),
:mod:`.response` (the formulas: efficiencies, resolutions, smearing, thresholds), :mod:`.reco`
(the particle-flow picture, isolation, jets). Formulas and simplifications: docs/detector.md.
"""

from .config import DetectorConfig, detector_config
from .reco import RecoBatch, reconstruct

__all__ = ["DetectorConfig", "RecoBatch", "detector_config", "reconstruct"]
