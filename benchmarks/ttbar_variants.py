"""tt̄ training variants side by side: which coordinates, which DiDi coupling, learns better.

Trains the card's model (non-Bayesian, ``--epochs`` epochs on the first ``--events`` events of
the card's training sample) once per variant (``--variant``: card overrides separated by
commas, e.g. ``process.settings.coordinates=particles``; default: the two coordinate schemes),
generates ``--generate`` events from each (a run that maps samples maps the first events of
``--source``) and compares them with an independent sample (``--reference``, another seed):
chi2/ndf of the m_t, m_tbar, m_W+, m_W- line shapes in 40 bins over +-5 widths (statistical
errors of both samples), and the 10 / 50 / 90 % quantiles of m_tt, pT_b and pT_l+ relative to
the reference's. The same seed and training steps for every variant; wall times side by side.

    python benchmarks/ttbar_variants.py [--card cards/ttbar.yaml] [--reference FILE] [--source FILE]
        [--variant OVERRIDES ...] [--events 20000] [--epochs 60] [--generate 50000]
    python benchmarks/ttbar_variants.py --card cards/ttbar_didi.yaml \
        --variant model.didi.coupling=independent --variant model.didi.coupling=ot
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hepgen import dilepton  # noqa: E402
from hepgen import kinematics as kin  # noqa: E402
from hepgen.cards import load_card  # noqa: E402
from hepgen.generate import generate  # noqa: E402
from hepgen.io.root import read_events  # noqa: E402
from hepgen.runs import load_run  # noqa: E402
from hepgen.train import train  # noqa: E402

LINES = {"m_t": (dilepton.TOP, kin.TOP_MASS, kin.TOP_WIDTH), "m_tbar": (dilepton.ANTITOP, kin.TOP_MASS, kin.TOP_WIDTH),
         "m_W+": (dilepton.W_PLUS, kin.W_MASS, kin.W_WIDTH), "m_W-": (dilepton.W_MINUS, kin.W_MASS, kin.W_WIDTH)}


def observables(path: Path) -> dict[str, np.ndarray]:
    p, _ = dilepton.assign(read_events(path))
    obj = lambda i: tuple(p[:, i, k] for k in range(4))  # noqa: E731
    out = {name: kin.invariant_mass(*(obj(i) for i in idx)) for name, (idx, _, _) in LINES.items()}
    out.update(m_tt=kin.invariant_mass(*(obj(i) for i in range(6))), pt_b=p[:, 0, 0], pt_lp=p[:, 1, 0])
    return out


def chi2_ndf(a: np.ndarray, b: np.ndarray, edges: np.ndarray) -> float:
    ha, _ = np.histogram(a, edges)
    hb, _ = np.histogram(b, edges)
    var = ha / len(a) ** 2 + hb / len(b) ** 2
    ok = var > 0
    return float(np.sum((ha / len(a) - hb / len(b))[ok] ** 2 / var[ok]) / ok.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--card", default="cards/ttbar.yaml")
    ap.add_argument("--reference", default="data/ttbar_offshell_validation.root")
    ap.add_argument("--source", default="data/ttbar_onshell_validation.root", help="what a map run maps")
    ap.add_argument("--variant", action="append", default=None,
                    help="comma-separated card overrides (repeat); default: the two coordinate schemes")
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--generate", type=int, default=50000)
    args = ap.parse_args()
    ref = observables(Path(args.reference))
    variants = args.variant or ["process.settings.coordinates=particles", "process.settings.coordinates=decay"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, variant in enumerate(variants):
            card = load_card(args.card, [*variant.split(","), f"data.max_events={args.events}",
                                         f"train.epochs={args.epochs}", "model.bayes.enabled=false",
                                         "train.validate=false", f"train.runs_dir={tmp}", f"name=variant{k}"])
            t0 = time.perf_counter()
            run = load_run(train(card, progress=False, after=False))
            seconds = time.perf_counter() - t0
            source = {"source": args.source} if run.maps_samples else {}
            (path,) = generate(run, args.generate, output=Path(tmp) / f"variant{k}.root", force=True, **source)
            gen = observables(path)
            row = [variant, f"{seconds:.0f} s"]
            for name, (_, mass, width) in LINES.items():
                row.append(f"{chi2_ndf(gen[name], ref[name], np.linspace(mass - 5 * width, mass + 5 * width, 41)):.2f}")
            for name in ("m_tt", "pt_b", "pt_lp"):
                q, qg = np.quantile(ref[name], [0.1, 0.5, 0.9]), np.quantile(gen[name], [0.1, 0.5, 0.9])
                row.append("/".join(f"{(g / r - 1) * 100:+.1f}%" for g, r in zip(qg, q)))
            rows.append(row)
    head = ["variant", "training"] + [f"{n} chi2/ndf" for n in LINES] + ["m_tt q10/50/90", "pT_b", "pT_l+"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
