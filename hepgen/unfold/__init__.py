"""Unfolding: from reco-level events back to the particle level (docs/unfolding.md).

* :mod:`.posterior`: generative posterior sampling, ``hepgen unfold RUN reco.root --samples K``;
* the baselines on arrays: :func:`hepgen.unfold.omnifold.omnifold` (unbinned, classifier
  reweighting of the simulation) and :func:`hepgen.unfold.ibu.ibu` (iterative Bayesian
  unfolding of one binned observable, with pyunfold).

The calibration of per-event posteriors and the migration matrices are in
:mod:`hepgen.validate.calibration`. The package imports none of its modules, so ``hepgen
unfold`` does not load the classifier and plotting code the baselines use.
"""
