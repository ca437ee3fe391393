"""Bands and the acceptance check of a nuisance-conditioned Z+jets run (docs/systematics.md).

    python benchmarks/systematics.py RUN [--events 100000] [--draws 10] [--reference FILE]
                                         [--at a=0.5 --at a=1 ...] [--each-draw] [--pool FILE] [-o DIR]

Writes ``DIR/systematics.png`` (per observable: the nominal density with the statistical band of
the Bayesian draws, the systematic band of the nuisances at the ends of their variation, and both
combined; :func:`hepgen.validate.systematics.bands`) and ``DIR/systematics.json``. With
``--reference`` (an independent Pythia sample, e.g. ``validate.reference``; a psweight nuisance
needs one simulated with ``simulate.psweight: true``) it also prints, per ``--at`` setting (default:
each nuisance at the ends of its variation and at half of its upper end) and observable
(pT_j1, H_T, n_jets), chi2 / ndf of gen(nu) / gen(0) against the reference reweighted by w(x; nu)
over itself (:func:`hepgen.validate.systematics.ratio_chi2`); the acceptance asks for <= 2. Next to
it, the same chi2 / ndf of the run's own training events reweighted the same way
(:func:`~hepgen.validate.systematics.training_floor`): what a generator that learned its training
sample exactly would score. For an ensemble run (``model.ensemble``) gen is its members pooled;
``--each-draw`` with ``--draws K`` adds each member's (or Bayesian draw's) chi2 / ndf on its own.
``--pool FILE`` (more events of the reference's simulation) adds the chi2 / ndf with the reference's
errors from the weights' variance per bin over both samples
(:func:`~hepgen.validate.systematics.pooled_variance`: a heavy-tailed weight's tail bins).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hepgen.io.root import read_events  # noqa: E402
from hepgen.outputs import atomic_output  # noqa: E402
from hepgen.runs import load_run  # noqa: E402
from hepgen.validate.systematics import bands, plot_bands, ratio_chi2s, training_floor, variation_ends  # noqa: E402

EDGES = {"pt_j1": np.linspace(20, 300, 29), "HT": np.linspace(20, 500, 25), "n_jets": np.arange(0.5, 4.0, 1.0)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--draws", type=int, default=0, help="Bayesian draws for the statistical band (0: none)")
    ap.add_argument("--reference", help="Pythia sample for the chi2 of the ratios")
    ap.add_argument("--pool", help="more events of the reference's simulation (e.g. the training file): the "
                    "reference's errors also with the weights' variance per bin from both")
    ap.add_argument("--at", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--each-draw", action="store_true",
                    help="also the chi2 of each of the --draws draws (ensemble members) on its own")
    ap.add_argument("-o", "--output", default=None)
    args = ap.parse_args(argv)
    if args.each_draw and args.draws < 1:
        ap.error("--each-draw checks each of the --draws draws: give --draws K (an ensemble: its members)")
    run = load_run(args.run)
    out = Path(args.output or run.path)
    names = list(EDGES)
    result = {"run": str(run.path), "events": args.events}
    cache = {}  # generated observables per setting, shared by the bands and the ratios
    all_bands = bands(run, names, EDGES, args.events, args.draws, cache=cache)
    plot_bands(all_bands, out / "systematics.png")
    result["bands"] = {b.name: {"edges": b.edges.tolist(), "nominal": b.nominal.tolist(), "stat": b.stat.tolist(),
                                "syst_up": b.syst_up.tolist(), "syst_down": b.syst_down.tolist()} for b in all_bands}
    if args.reference:
        reference = read_events(args.reference)
        pool = read_events(args.pool) if args.pool else None
        settings = [dict([a.split("=", 1)]) for a in args.at] or (
            [{n: v} for n, v in variation_ends(run.card.model.nuisance)]
            + [{n.name: n.range[1] / 2} for n in run.card.model.nuisance])
        result["chi2"] = []
        for values in settings:
            values = {k: v if v == "prior" else float(v) for k, v in values.items()}  # "1.0" -> 1.0: the bands' cache key
            floor = training_floor(run, reference, EDGES, values) if "prior" not in values.values() else {}
            for r in ratio_chi2s(run, reference, EDGES, values, args.events, cache=cache):
                r["training_floor_chi2_ndf"] = floor.get(r["observable"])
                result["chi2"].append(r)
                print(f"{values} {r['observable']:7s} chi2/ndf = {r['chi2']:.1f}/{r['ndf']} = {r['chi2_ndf']:.2f}"
                      + (f"   (training events vs reference: {floor[r['observable']]:.2f})" if floor else ""), flush=True)
            if pool is not None:
                pooled = ratio_chi2s(run, reference, EDGES, values, args.events, cache=cache, pool=pool)
                result.setdefault("chi2_pooled_variance", []).extend(pooled)
                print(f"{values} pooled variance: " + " / ".join(f"{r['observable']} {r['chi2_ndf']:.2f}" for r in pooled),
                      flush=True)
            for k in range(args.draws if args.each_draw else 0):
                each = ratio_chi2s(run, reference, EDGES, values, args.events, cache=cache, draw=k)
                result.setdefault("chi2_each_draw", []).extend({**r, "draw": k} for r in each)
                print(f"{values} draw {k}: " + " / ".join(f"{r['observable']} {r['chi2_ndf']:.2f}" for r in each), flush=True)
    with atomic_output(out / "systematics.json", force=True) as tmp:
        tmp.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out / 'systematics.png'} and {out / 'systematics.json'}")


if __name__ == "__main__":
    main()
