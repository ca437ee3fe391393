"""The calibration part of an unfolding run's report: do its posteriors cover the truth?

:func:`calibration_report` unfolds the first ``events`` events (passing both selections) of an
independent paired sample ``samples`` times each (:func:`hepgen.unfold.posterior.unfold`), and
compares each event's K posterior values of ``pt_j1``, ``pt_mumu`` and ``m_mumu``
(:mod:`hepgen.observables`) with its own particle-level truth (:mod:`hepgen.validate.calibration`):
the coverage of central intervals (68 % should hold 68 % of the truths), the rank histogram of
the truth among its samples (flat when calibrated), and the reco -> particle migration matrix of
each observable, and the unfolded distribution (the mean of the K samples' histograms, their
±1σ spread as a band) against the truth and the raw reco level (``unfolded_<observable>``).
Written to ``<run>/validation/calibration/``: ``calibration.json``, ``calibration.md``, the
plots, and the K samples (``posterior.root``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from .. import observables
from ..coords.unfold import GEN_NAMES, RECO_NAMES, level
from ..io.root import read_events
from ..outputs import atomic_output
from ..validate import calibration
from ..validate.histograms import band, binned, pooled
from ..validate.plots import comparison
from .posterior import unfold

OBSERVABLES = ("pt_j1", "pt_mumu", "m_mumu")
LEVELS = (0.5, 0.68, 0.9)
WINDOW = (0.63, 0.73)  # the 68 % coverage a calibrated posterior must reach (issue 14)


def _bins(values: np.ndarray, n: int = 20) -> np.ndarray:
    lo, hi = np.nanpercentile(values, [1, 99])
    return np.linspace(lo, hi, n + 1)


def calibration_report(run, reference: str | Path, *, samples: int = 20, events: int = 3000,
                       log: Callable[[str], None] = print) -> dict:
    """See the module docstring; returns the numbers written to ``calibration.json``."""
    out = Path(run.path) / "validation" / "calibration"
    out.mkdir(parents=True, exist_ok=True)
    ref = read_events(reference)
    both = np.flatnonzero(ref.scalars["pass_gen"] & ref.scalars["pass_reco"])[:events]
    stop = int(both[-1]) + 1 if len(both) else 0
    posterior = unfold(run, reference, out / "posterior.root", samples=samples, force=True, max_events=stop,
                       log=log, progress=False)
    post = read_events(posterior)
    truth_sample = ref.select(both)
    truth = observables.compute(level(truth_sample, GEN_NAMES), OBSERVABLES)
    reco = observables.compute(level(truth_sample, RECO_NAMES), OBSERVABLES)
    values = observables.compute(post, OBSERVABLES)
    result = {"reference": str(reference), "events": int(len(both)), "samples": int(samples),
              "levels": list(LEVELS), "observables": {}}
    coverages, ranks, lines = {}, {}, []
    for name in OBSERVABLES:
        t = truth[name]
        s = values[name].reshape(len(both), samples)
        ok = np.isfinite(t) & np.isfinite(s).all(axis=1)  # pt_j1 of an event without a jet at one level
        cov = calibration.coverage(t[ok], s[ok], levels=LEVELS)
        rh = calibration.rank_histogram(t[ok], s[ok])
        coverages[name], ranks[name] = cov, rh
        c68 = float(cov.coverage[list(LEVELS).index(0.68)])
        result["observables"][name] = {
            "events": int(ok.sum()), "coverage": [float(c) for c in cov.coverage],
            "coverage_error": [float(e) for e in cov.error], "mean_width": [float(w) for w in cov.width],
            "rank_chi2_ndf": float(rh.chi2 / rh.ndf), "rank_p_value": float(rh.p_value),
            "coverage68_in_window": bool(WINDOW[0] <= c68 <= WINDOW[1]),
        }
        lines.append(f"| {name} | {int(ok.sum())} | " + " | ".join(
            f"{c:.3f} ± {e:.3f}" for c, e in zip(cov.coverage, cov.error)) + f" | {result['observables'][name]['rank_chi2_ndf']:.2f} |")
        ok_m = np.isfinite(t) & np.isfinite(reco[name])
        bins = _bins(t[ok_m])
        label = f"${observables.get(name).label}$"
        calibration.migration_plot(out / f"migration_{name}", calibration.migration(t[ok_m], reco[name][ok_m], bins), label)
        flat, sample = s[ok].ravel(), np.tile(np.arange(samples), int(ok.sum()))  # the K samples share their events
        comparison(out / f"unfolded_{name}", binned(t[ok], bins), pooled(flat, bins, None, sample, shared_noise=True),
                   label, band=band(flat, bins, sample), training=binned(reco[name][ok_m], bins),
                   labels=("Truth", "Unfolded"), band_label=f"{samples} posterior samples (±1σ)",
                   training_label="Reco level", ratio_label="Unf. / Truth")
    calibration.coverage_plot(out / "coverage", coverages)
    calibration.rank_plot(out / "ranks", ranks)
    table = [f"# Posterior calibration: {run.path}", "",
             f"{len(both)} events of {reference} (passing both selections), {samples} posterior samples each.", "",
             "| observable | events | " + " | ".join(f"coverage {int(100 * lv)} %" for lv in LEVELS) + " | rank χ²/ndf |",
             "|---|---|" + "---|" * len(LEVELS) + "---|", *lines, ""]
    with atomic_output(out / "calibration.json", True) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=1) + "\n")
    with atomic_output(out / "calibration.md", True) as tmp:
        Path(tmp).write_text("\n".join(table))
    log(f"calibration: {out / 'calibration.md'} (68 % coverage "
        + ", ".join(f"{n} {result['observables'][n]['coverage'][1]:.3f}" for n in OBSERVABLES) + ")")
    return result
