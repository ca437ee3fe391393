"""Pythia's shower-variation weights (PSWeight) against separate Pythia runs at the varied scale.

    python benchmarks/psweight_check.py NOMINAL.root --run isr_up=A.root [--run fsr_down=B.root ...]
                                        [--pool MORE.root] [-o DIR]

NOMINAL is a sample simulated with ``simulate.psweight: true`` (its ``variations`` hold the four
PSWeight columns, docs/io.md); each ``--run ID=FILE`` is a sample of the same card simulated with the
shower scale of variation ID set in Pythia itself (docs/systematics.md: mu_R x 0.5 is
``SpaceShower:renormMultFac = 0.25`` for ISR, ``TimeShower:renormMultFac = 0.25`` for FSR; x 2 is 4).
Per variation and observable (pT_j1, H_T, n_jets, pT_mumu) it prints chi2 / ndf of the nominal
sample's shape reweighted by the variation against the separate run's shape (normalised histograms;
errors: sum w^2 for the reweighted one, Poisson for the run: independent samples), next to chi2 /
ndf of the unweighted nominal against the run (how visible the variation is at these statistics),
and draws both ratios to the nominal (``DIR/psweight_check.png``, with ``.json``). ``--pool MORE.root``
(more events simulated like NOMINAL, another seed) prints the reweighted chi2 / ndf again with the
weights' variance per bin over both samples in place of NOMINAL's own sum of w^2
(:func:`hepgen.validate.systematics.pooled_variance`; the FSR up weights are heavy-tailed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hepgen import observables  # noqa: E402
from hepgen.io.root import read_events  # noqa: E402
from hepgen.outputs import atomic_output  # noqa: E402
from hepgen.validate.systematics import pooled_square_sums, pooled_variance  # noqa: E402

EDGES = {"pt_j1": np.linspace(20, 300, 15), "HT": np.linspace(20, 500, 13), "n_jets": np.arange(0.5, 4.0, 1.0),
         "pt_mumu": np.linspace(0, 300, 16)}
MIN_COUNT = 25  # bins with fewer events in either sample are left out


def shape(values: np.ndarray, w: np.ndarray | None, edges: np.ndarray,
          variance: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(density, variance, counts) ``[B]`` of a (weighted) normalised histogram; non-finite values
    (an absent object) are left out. ``variance`` ``[B]``: the weights' variance per bin from more
    events (the bin's sum of w^2 is then N_b (variance + mean_b^2))."""
    ok = np.isfinite(values)
    w = np.ones(ok.sum()) if w is None else w[ok]
    s, q = (np.histogram(values[ok], edges, weights=ww)[0] for ww in (w, w**2))
    n = np.histogram(values[ok], edges)[0]
    if variance is not None:
        q = np.where(n > 0, pooled_square_sums(n, s, variance), 0.0)
    total = s.sum()
    return s / total, q / total**2, n


def chi2(a, b) -> tuple[float, int]:
    (pa, va, na), (pb, vb, nb) = a, b
    ok = (na >= MIN_COUNT) & (nb >= MIN_COUNT)
    return float(np.sum((pa - pb)[ok] ** 2 / (va + vb)[ok])), int(ok.sum())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("nominal")
    ap.add_argument("--run", action="append", required=True, metavar="ID=FILE")
    ap.add_argument("--pool", help="more events simulated like NOMINAL: the weights' variance per bin over both")
    ap.add_argument("-o", "--output", default="validation_out/psweight_check")
    args = ap.parse_args(argv)
    nominal = read_events(args.nominal)
    names = list(EDGES)
    obs_nom = observables.compute(nominal, names)
    pool = read_events(args.pool) if args.pool else None
    obs_pool = observables.compute(pool, names) if pool is not None else None
    runs = dict(r.split("=", 1) for r in args.run)
    missing = sorted(set(runs) - set(nominal.variations or {}))
    if missing:
        raise SystemExit(f"{args.nominal} has no PSWeight variation {', '.join(missing)} (simulate.psweight: true)")
    result = {"nominal": args.nominal, "events": len(nominal), "runs": {}}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), len(names), figsize=(4 * len(names), 2.8 * len(runs)), squeeze=False)
    for i, (vid, path) in enumerate(runs.items()):
        sample = read_events(path)
        obs_run = observables.compute(sample, names)
        w = np.asarray(nominal.variations[vid], dtype=np.float64)
        rows = {}
        for j, name in enumerate(names):
            edges = EDGES[name]
            base = shape(obs_nom[name], None, edges)
            weighted = shape(obs_nom[name], w, edges)
            run = shape(obs_run[name], None, edges)
            c_w, n_w = chi2(weighted, run)
            c_0, n_0 = chi2(base, run)
            rows[name] = {"chi2_reweighted": c_w, "ndf": n_w, "chi2_nominal": c_0, "ndf_nominal": n_0}
            pooled = ""
            if pool is not None:
                var = pooled_variance([(obs_nom[name], w), (obs_pool[name], np.asarray(pool.variations[vid]))], edges)
                c_p, _ = chi2(shape(obs_nom[name], w, edges, var), run)
                rows[name]["chi2_reweighted_pooled_variance"] = c_p
                pooled = f", pooled variance {c_p / max(n_w, 1):.2f}"
            print(f"{vid:8s} {name:8s} reweighted vs run chi2/ndf = {c_w:.1f}/{n_w} = {c_w / max(n_w, 1):.2f}{pooled}   "
                  f"(unweighted nominal vs run: {c_0 / max(n_0, 1):.2f})")
            ax = axes[i, j]
            mid = 0.5 * (edges[1:] + edges[:-1])
            with np.errstate(divide="ignore", invalid="ignore"):
                ax.errorbar(mid, run[0] / base[0], yerr=np.sqrt(run[1]) / base[0], fmt="o", ms=3,
                            label=f"Pythia, {vid} scale")
                ax.step(edges, np.append(weighted[0] / base[0], np.nan), where="post", label="nominal x PSWeight")
            ax.axhline(1, color="grey", lw=0.5)
            ax.set_xlabel(name)
            ax.set_ylabel("/ nominal")
            ax.set_title(f"{vid}: chi2/ndf {c_w / max(n_w, 1):.2f}", fontsize=9)
            if j == 0:
                ax.legend(fontsize=7)
        result["runs"][vid] = {"file": path, "events": len(sample), "observables": rows}
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    with atomic_output(out / "psweight_check.png", force=True) as tmp:
        fig.savefig(tmp, format="png", dpi=75)
    with atomic_output(out / "psweight_check.json", force=True) as tmp:
        tmp.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out / 'psweight_check.png'} and {out / 'psweight_check.json'}")


if __name__ == "__main__":
    main()
