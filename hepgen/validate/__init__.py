"""Validation of generated samples against a reference (``hepgen validate``).

Modules: :mod:`.obsset` (observable sets from ``validation/<process>.yaml``), :mod:`.histograms`
(normalised histograms, Bayesian bands), :mod:`.plots` (mplhep figures), :mod:`.classifier`
(two-sample test, DCTR weights), :mod:`.metrics` (precision table numbers), :mod:`.amplification`
(GANplification), :mod:`.inputs` (samples and run folders), :mod:`.report` (the whole report and
the run-folder hook :func:`validate_run`), :mod:`.reweight` (``hepgen reweight``), :mod:`.calibration`
(per-event posterior calibration and migration matrices, for unfolding). The independent
reference sample is made by :mod:`hepgen.simulate.reference`.
"""

from __future__ import annotations

from .report import validate, validate_run

__all__ = ["validate", "validate_run"]
