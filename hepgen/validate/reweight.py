"""``hepgen reweight``: attach classifier (DCTR) weights to generated events.

The classifier test (:mod:`.classifier`, with the features of the card's observable set and
split as its process says) gives every generated event an out-of-fold weight
``w(x) = p_ref(x) / p_gen(x)`` (per category, times the category-fraction ratio). The
reweighted sample carries ``weight * w`` as its event weight: the ROOT ``weight`` branch, or the
LHE event weight (the original weight is kept as a named LHE weight ``original``). Weights are
normalised so that their sum equals the original sum of weights.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from .. import processes
from ..cards import Card
from ..errors import InputError
from ..io.lhe import LheWriter
from ..io.root import write_events
from ..outputs import check_output
from .classifier import auc, cross_fit
from .histograms import effective_size
from .obsset import for_card
from .report import classifier_test
from .inputs import ReadAs, _is_lhe, read_generated, read_sample

LOGW_CLIP = 20.0  # |log w| above this is clipped: one event cannot carry e^20 times the mean


def reweight(
    sample_path: str | os.PathLike,
    reference: str | os.PathLike,
    output: str | os.PathLike,
    *,
    card=None,
    force: bool = False,
    progress=None,
    read: ReadAs | None = None,
    reference_read: ReadAs | None = None,
) -> tuple[Path, dict]:
    """Write ``output`` (ROOT or LHE by suffix) with DCTR weights; returns (path, summary).

    ``read`` / ``reference_read``: the tree and branch mapping of the sample / the reference."""
    output = Path(output)
    check_output(output, force)  # fail before the training
    card = card or Card()
    process = processes.get(card.process.name)
    gen = read_generated([sample_path], read, process).sample
    ref, _ = read_sample(reference, reference_read, process=process)
    w, res, _ = dctr_weights(gen, ref, card, str(sample_path), progress)
    summary = {"auc": res.auc_total, "auc_std": res.auc_total_std,
               "weight_min": float(w.min()), "weight_max": float(w.max()),
               "effective_fraction": effective_size(w) / len(w)}
    info = {**gen.info, "reweighted_against": str(reference), "dctr_auc": f"{res.auc_total:.5f}"}
    out = replace(gen, weight=w, info=info)
    if _is_lhe(output):
        with LheWriter(output, force=force) as writer:
            writer.write(out, weights={"original": gen.weight})
    elif output.suffix == ".root":
        write_events(output, out, force=force)
    else:
        raise InputError(f"{output}: unknown output format (use .root or .lhe)")
    return output, summary


def dctr_weights(gen, ref, card: Card, what: str, progress=None, unseen=None):
    """(w ``[N]``, the classifier result, w of ``unseen`` or None): the generated events' weights
    times their DCTR weight p_ref/p_gen (out of fold; log clipped at :data:`LOGW_CLIP`), normalised
    to the sum of their weights. ``unseen``: more events of the generated density, weighted by the
    trained classifiers (none trains on them) with the same normalisation. Too few events to train
    the classifier is a one-line :class:`InputError` naming ``what``."""
    vc = card.validate
    res = classifier_test(ref, gen, card, for_card(card), runs=vc.classifier_runs, folds=vc.classifier_folds,
                          epochs=vc.classifier_epochs, progress=progress, unseen=unseen)
    if not res.per_multiplicity:
        raise InputError(f"{what}: too few events per category (e.g. jet multiplicity) to train the classifier")
    w, scale = _times_ratio(gen.weight, res.logw_gen)
    return w * scale, res, None if unseen is None else _times_ratio(unseen.weight, res.logw_unseen)[0] * scale


def _times_ratio(weight: np.ndarray, logw: np.ndarray) -> tuple[np.ndarray, float]:
    """(weight times exp(logw) (clipped; NaN: 1), the factor that gives it ``weight``'s sum)."""
    w = weight * np.exp(np.clip(np.where(np.isfinite(logw), logw, 0.0), -LOGW_CLIP, LOGW_CLIP))
    return w, float(weight.sum() / w.sum())


def dctr_weights_array(x_gen: np.ndarray, x_ref: np.ndarray, card: Card, progress=None, hidden: int = 64,
                       layers: int = 3, unseen: np.ndarray | None = None) -> tuple[np.ndarray, float, np.ndarray | None]:
    """(w ``[N]`` mean 1, AUC, w of ``unseen`` or None): DCTR weights of generated events given as
    float64 arrays ``[N, F]`` against reference events ``[M, F]`` (the features are the coordinates
    themselves): the logit of the cross-fitted classifier, averaged over ``validate.classifier_runs``
    trainings, as in :func:`dctr_weights`; the AUC is the mean over those trainings. ``unseen``
    ``[K, F]``: more generated events, weighted by the fold models (none saw them), same normalisation."""
    vc = card.validate
    x = np.concatenate([x_ref, x_gen]).astype(np.float64)
    y = np.concatenate([np.ones(len(x_ref)), np.zeros(len(x_gen))])
    ones = np.ones(len(x))
    extra = None if unseen is None else np.asarray(unseen, dtype=np.float64)
    logw, aucs = np.zeros(len(x_gen)), []
    logw_u = None if extra is None else np.zeros(len(extra))
    for r in range(vc.classifier_runs):
        rng = np.random.default_rng([card.seed, 53, r])
        fold = rng.permutation(np.arange(len(x)) % vc.classifier_folds)
        fit = cross_fit(x, y, ones, fold, rng, epochs=vc.classifier_epochs, hidden=hidden, layers=layers,
                        progress=progress, label=f"DCTR classifier, run {r + 1}/{vc.classifier_runs}", extra=extra)
        aucs.append(auc(fit.logit, y, np.where(y > 0, len(x) / (2 * len(x_ref)), len(x) / (2 * len(x_gen)))))
        logw += fit.logit[len(x_ref):] / vc.classifier_runs
        if logw_u is not None:
            logw_u += fit.extra / vc.classifier_runs
    w = np.exp(np.clip(logw, -LOGW_CLIP, LOGW_CLIP))
    w_u = None if logw_u is None else np.exp(np.clip(logw_u, -LOGW_CLIP, LOGW_CLIP)) / w.mean()
    return w / w.mean(), float(np.mean(aucs)), w_u
