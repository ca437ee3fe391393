"""Unfolding: from reco-level events back to the particle level (docs/unfolding.md).

The baselines on arrays: :func:`~hepgen.unfold.omnifold.omnifold` (unbinned, classifier
reweighting of the simulation) and :func:`~hepgen.unfold.ibu.ibu` (iterative Bayesian unfolding
of one binned observable, with pyunfold). The calibration of per-event posteriors and the
migration matrices are in :mod:`hepgen.validate.calibration`.
"""

from __future__ import annotations

from .ibu import IBUResult, ibu
from .omnifold import OmniFoldResult, OmniFoldSettings, omnifold

__all__ = ["IBUResult", "OmniFoldResult", "OmniFoldSettings", "ibu", "omnifold"]
