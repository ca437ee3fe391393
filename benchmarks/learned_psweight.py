"""The shower-variation response of generated events with learned PSWeight (docs/systematics.md).

    hepgen variations GENERATED.root --source data/zjets_ps.root -o gen_ps.root --card cards/zjets.yaml
    python benchmarks/learned_psweight.py gen_ps.root --reference data/zjets_ps_ref.root \\
        [--source data/zjets_ps.root] [--pool data/zjets_ps.root] [--at isr=1 --at fsr=-1 ...] [-o result.json]

Per ``--at`` setting (default: isr and fsr at +1, -1 and 0.5) and observable (pT_j1, H_T, n_jets,
the binning of benchmarks/systematics.py), chi2 / ndf of the generated events weighted by w(x; nu)
from their learned PSWeight over themselves, against the independent reference weighted by its own
PSWeight the same way (:func:`hepgen.validate.systematics.weighted_ratio_chi2s`); the acceptance asks
for <= 2. With ``--source`` (the simulation the ratios were learned from) also the same chi2 / ndf of
the source's own events and ratios against the reference: the floor of its statistics. With
``--pool`` each line is printed twice: with the reference's own spread of w per bin, and with the
variance of w per bin from the reference and the pool together
(:func:`hepgen.validate.systematics.pooled_variance`;
the FSR up weights are heavy-tailed, and a tail bin without its rare large weights reads low with too
small an error).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.systematics import EDGES  # noqa: E402
from hepgen.cards import card_from_dict  # noqa: E402
from hepgen.io.root import read_events  # noqa: E402
from hepgen.outputs import atomic_output  # noqa: E402
from hepgen.validate.systematics import weighted_ratio_chi2s  # noqa: E402

DEFAULT = ["isr=1", "isr=-1", "isr=0.5", "fsr=1", "fsr=-1", "fsr=0.5"]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("generated", help="events with (learned) PSWeight")
    ap.add_argument("--reference", required=True, help="independent Pythia sample with PSWeight")
    ap.add_argument("--source", help="the sample the ratios were learned from (prints its floor)")
    ap.add_argument("--pool", help="more events of the reference's simulation (e.g. the --source): the "
                    "reference's errors take the weights' variance per bin from both (also printed without)")
    ap.add_argument("--at", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("-o", "--output", help="JSON with every chi2 and ratio")
    args = ap.parse_args(argv)
    card = card_from_dict({"model": {"nuisance": [{"name": v, "kind": "psweight", "variation": v}
                                                  for v in ("isr", "fsr")]}})
    samples = {"generated": read_events(args.generated), "reference": read_events(args.reference)}
    if args.source:
        samples["source"] = read_events(args.source)
    pool = None
    if args.pool:
        pool = samples["source"] if args.pool == args.source else read_events(args.pool)
    result = []
    for at in args.at or DEFAULT:
        name, value = at.split("=", 1)
        values = {name: float(value)}
        for p in (None, pool) if pool is not None else (None,):
            rows = weighted_ratio_chi2s(card, samples["generated"], samples["reference"], EDGES, values, p)
            floor = ({r["observable"]: r["chi2_ndf"] for r in weighted_ratio_chi2s(
                card, samples["source"], samples["reference"], EDGES, values, p, simulated=True)}
                if "source" in samples else {})
            for r in rows:
                r["source_floor_chi2_ndf"] = floor.get(r["observable"])
                r["pooled_errors"] = p is not None
                result.append(r)
            print(f"{at:8s} {'pooled var' if p is not None else 'own var   '} "
                  + " / ".join(f"{r['observable']} {r['chi2_ndf']:.2f}" for r in rows)
                  + ("   (source vs reference: " + " / ".join(f"{v:.2f}" for v in floor.values()) + ")" if floor else ""),
                  flush=True)
    if args.output:
        with atomic_output(Path(args.output), force=True) as tmp:
            tmp.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
