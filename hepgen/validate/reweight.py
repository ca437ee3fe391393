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
from .obsset import for_card
from .report import classifier_test
from .inputs import ReadAs, _is_lhe, read_generated, read_sample


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
    vc = card.validate
    res = classifier_test(ref, gen, card, for_card(card), runs=vc.classifier_runs, folds=vc.classifier_folds,
                          epochs=vc.classifier_epochs, progress=progress)
    if not res.per_multiplicity:
        raise InputError(f"{sample_path}: too few events per category (e.g. jet multiplicity) to train the classifier")
    logw = np.where(np.isfinite(res.logw_gen), res.logw_gen, 0.0)
    w = gen.weight * np.exp(np.clip(logw, -20.0, 20.0))
    w *= gen.weight.sum() / w.sum()
    summary = {"auc": res.auc_total, "auc_std": res.auc_total_std,
               "weight_min": float(w.min()), "weight_max": float(w.max()),
               "effective_fraction": float(w.sum() ** 2 / np.sum(w**2) / len(w))}
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
