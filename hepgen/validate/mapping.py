"""Validation of a map from a source sample (Direct Diffusion: on-shell -> off-shell tt̄).

A DiDi run maps every source event: ``hepgen generate RUN --source onshell.root -o mapped.root``
writes event i as the image of source event i (K Bayesian draws: K files, or one file with a
``bayes_draw`` branch, each draw holding the images of all source events in order); a ROOT file
names the source event of each image (``source_event``), so images the generator's selection
dropped (e.g. beyond the beam energy) leave gaps instead of breaking the pairing.
``hepgen validate MAPPED --reference REF --source SOURCE`` adds to the usual report:

* the classifier AUC of the *untouched source* against the same reference, beside the mapped
  sample's (``metrics.json`` ``source.classifier``): a map worth having turns a source that the
  classifier tells apart (AUC near 1) into events it cannot (AUC near 1/2);
* the migration picture per observable of the set's ``migration`` list: source value against
  mapped value per event (2-D) and the per-event shift ``mapped - source``
  (``migration/<observable>.png``; ``source.migration`` in the metrics).

The tails and the acceptance numbers come with the observable set (:mod:`.acceptance`).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..events import EventSample
from ..sources import SOURCE_EVENT
from . import plots
from .inputs import Generated
from .tables import fmt


def pair_with_source(source: EventSample, generated: Generated) -> np.ndarray:
    """int ``[N_generated]``: the source event each generated event is the image of.

    A mapped ROOT file names it per event (``source_event``, :data:`hepgen.sources.SOURCE_EVENT`:
    images the selection dropped leave gaps). Without that branch: one draw, event i of both; K
    draws, within each draw in order. An index outside the source or any other count is one
    :class:`InputError` line (the files are not a map of this source)."""
    n_src, n_gen = len(source), len(generated.sample)
    index = generated.sample.scalars.get(SOURCE_EVENT)
    if index is not None:
        if len(index) and (index.min() < 0 or index.max() >= n_src):
            raise InputError(f"--source: the mapped sample names source events up to {int(index.max())}, but the "
                             f"source has {n_src}: it is the map of another source file")
        return np.asarray(index, dtype=np.int64)
    if n_gen == n_src:
        return np.arange(n_src)
    if generated.draw is not None:
        idx = np.empty(n_gen, dtype=np.int64)
        for k in np.unique(generated.draw):
            sel = np.flatnonzero(generated.draw == k)
            if len(sel) != n_src:
                break
            idx[sel] = np.arange(n_src)
        else:
            return idx
    raise InputError(f"--source: {n_src} source events, but the mapped sample has {n_gen}"
                     f"{f' in {generated.n_draws} draws' if generated.draw is not None else ''}; event i of a "
                     "mapped sample (of each draw) is the image of source event i, so the counts must agree")


def migration(v_source: np.ndarray, v_mapped: np.ndarray) -> dict:
    """Statistics of the per-event shift ``mapped - source`` (float ``[N]`` each, NaN skipped)."""
    d = np.asarray(v_mapped, dtype=np.float64) - np.asarray(v_source, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return {"events": 0}
    q05, q50, q95 = np.quantile(d, [0.05, 0.5, 0.95])
    return {"events": int(d.size), "mean": float(d.mean()), "std": float(d.std()), "median": float(q50),
            "q05": float(q05), "q95": float(q95), "median_abs": float(np.median(np.abs(d)))}


def migration_plots(folder, names, v_source: dict, v_mapped: dict, obsset, style: str) -> list[tuple[str, str, str]]:
    """``migration/<name>.png|pdf`` per observable; returns the index entries."""
    entries = []
    if names:
        (folder / "migration").mkdir()
    for name in names:
        h = obsset.hist(name)
        lo, hi = h.range
        half = 0.5 * (hi - lo)
        delta_edges = np.linspace(-half, half, h.bins + 1)
        plots.migration(folder / "migration" / name, v_source[name], v_mapped[name], h.edges, delta_edges,
                        h.axis_label, style=style)
        entries.append(("Migration: source -> mapped", name, f"migration/{name}.png"))
    return entries


def source_metrics(source: EventSample, clf_source, index: np.ndarray, v_source: dict, v_mapped: dict,
                   names) -> dict:
    """``metrics.json`` ``source``: the source classifier (None when not run) and the migration."""
    out: dict = {"n_source": len(source)}
    if clf_source is not None:
        out["classifier"] = {
            "auc_total": clf_source.auc_total, "auc_total_std": clf_source.auc_total_std,
            "per_category": {str(k): {"auc": r.auc, "auc_std": r.auc_std, "null_sigma": r.null_sigma}
                             for k, r in clf_source.per_multiplicity.items()},
        }
    out["migration"] = {n: migration(v_source[n][index], v_mapped[n]) for n in names}
    return out


def source_values(source: EventSample, index: np.ndarray, names, compute) -> dict:
    """The source's observables ``names`` per mapped event (``compute(sample, names)``)."""
    v = compute(source, list(names))
    return {n: a[index] for n, a in v.items()}


def markdown(m: dict) -> list[str]:
    """The source section of metrics.md: AUC side by side, then the migration."""
    s = m["source"]
    lines = ["", "## Map from a source sample", "",
             f"{s['n_source']} source events; event i of the mapped sample (of each draw) is the image of source event i."]
    c, cs = m.get("classifier"), s.get("classifier")
    if c and cs:
        lines += ["", "Classifier AUC against the same reference (1/2: indistinguishable):", "",
                  "| category | mapped | source | null σ |", "|---|---|---|---|"]
        for k, r in c["per_multiplicity"].items():
            rs = cs["per_category"].get(k)
            lines.append(f"| {k} | {r['auc']:.4f} ± {r['auc_std']:.4f} | "
                         f"{fmt(rs['auc'] if rs else None, 4)} | {r['null_sigma']:.4f} |")
        lines.append(f"| all | {c['auc_total']:.4f} | {fmt(cs['auc_total'], 4)} | {c['null_sigma_total']:.4f} |")
    if s["migration"]:
        lines += ["", "Migration, per event Δ = mapped − source:", "",
                  "| observable | mean Δ | std Δ | median abs Δ | 5 % | 95 % |", "|---|---|---|---|---|---|"]
        for n, r in s["migration"].items():
            lines.append(f"| {n} | {fmt(r.get('mean'))} | {fmt(r.get('std'))} | {fmt(r.get('median_abs'))} | "
                         f"{fmt(r.get('q05'))} | {fmt(r.get('q95'))} |")
    return lines

