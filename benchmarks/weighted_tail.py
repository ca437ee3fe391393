"""The pT_j1 tail of generators trained on weighted vs unweighted events, against a weighted reference
(issue 15, demonstration (b); docs/simulate.md "Biased pT-hat").

    python benchmarks/weighted_tail.py --reference data/zjets_biased_validation.root \
        --run weighted=runs/zjets_biased-<time> --run unweighted=runs/zjets_zjet_unweighted-<time> \
        [--events 1000000] [--edges 200 225 250 300 400 600] [--seed 7] [--multiplicity] [--plot FILE] [--json FILE]
    python benchmarks/weighted_tail.py --replot FILE.json --plot FILE   # the plot again, from a --json result

Each run generates ``--events`` events (``hepgen generate``, the run card's solver, a seed of its
own) so that its tail bins hold thousands of events. Per bin of the leading jet's pT the
generated density (1/N dN/dpT) is compared with the reference's weighted density (Σw per bin
over the reference's total Σw, errors sqrt(Σw²)): the ratio, its statistical error (both samples,
hepgen.validate.metrics.deviation) and the verdict of the acceptance's "within 10 %" rule
(hepgen.validate.acceptance.beyond: a bin fails when |ratio - 1| exceeds 10 % by more than
STAT_Z errors); "all within" also needs every bin's error below 10 % (a bin with a larger
error cannot tell 10 % from 0: raise ``--events``). The plot shows both generators' spectra and ratios over the reference, with the
10 % band. Next to each bin the table shows what the run trained on there: the training split's
events in the bin and their share of its Σw (what a weighted loss gives the bin).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hepgen import observables, processes  # noqa: E402
from hepgen.cards import load_card  # noqa: E402
from hepgen.io.root import read_events  # noqa: E402
from hepgen.validate.acceptance import STAT_Z, TAIL_TOLERANCE, beyond  # noqa: E402
from hepgen.validate.histograms import binned, effective_size  # noqa: E402
from hepgen.validate.metrics import deviation  # noqa: E402


def leading_jet_pt(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pT_j1 ``[N]``, event weight ``[N]``, jet multiplicity ``[N]``) of a ROOT sample."""
    sample = read_events(path)
    return observables.compute(sample, ["pt_j1"])["pt_j1"], sample.weight, np.asarray(sample.n_jets)


def only(pt: np.ndarray, n_jets: np.ndarray, k: int | None) -> np.ndarray:
    """pT_j1 of the events with ``k`` jets, NaN elsewhere (the density stays normalised to all
    events, so the multiplicities' tables add up to the inclusive one); ``k`` None: all events."""
    return pt if k is None else np.where(n_jets == k, pt, np.nan)


def training_sample(run: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pT_j1, weight, jet multiplicity) of the run's training split: the rows the training loop
    used (``split.npz`` of the card's data)."""
    card = load_card(Path(run) / "card.yaml")
    with np.load(Path(run) / "split.npz") as split:
        rows = split["train"]
    sample = processes.get(card.process.name).load_data(card, lambda msg: None).select(rows)
    return observables.compute(sample, ["pt_j1"])["pt_j1"], sample.weight, np.asarray(sample.n_jets)


def training_tail(train: tuple, edges: np.ndarray, k: int | None = None) -> dict:
    """The training split's events in the bins (``k`` jets, or all) and their share of its Σw
    (what a weighted loss gives the bin)."""
    pt, w, n = train
    counts = binned(only(pt, n, k), edges, w)
    return {"train_events": counts.entries.tolist(), "train_share": (counts.density * np.diff(edges)).tolist()}


def generate(run: str, events: int, seed: int, out: Path) -> Path:
    path = out / f"{Path(run).name}.root"
    subprocess.run([sys.executable, "-m", "hepgen", "generate", run, "-n", str(events), "--seed", str(seed),
                    "-o", str(path), "--no-progress"], check=True)
    return path


def tail_table(ref_pt, ref_w, gen_pt, edges) -> dict:
    ref, gen = binned(ref_pt, edges, ref_w), binned(gen_pt, edges)
    dev, sigma = deviation(ref, gen)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = gen.density / ref.density
    fails = beyond(dev, sigma, TAIL_TOLERANCE)
    resolved = sigma < TAIL_TOLERANCE  # a bin with a larger error cannot tell 10 % from 0
    return {"edges": list(map(float, edges)), "ratio": ratio.tolist(), "error": sigma.tolist(),
            "generated_events": gen.entries.tolist(), "reference_events": ref.entries.tolist(),
            "within": (~fails).tolist(), "resolved": resolved.tolist(),
            "all_within": bool(not fails.any() and resolved.all()),
            "max_abs_dev": float(np.nanmax(dev)), "ref_density": ref.density.tolist(),
            "ref_error": ref.error.tolist(), "gen_density": gen.density.tolist(), "gen_error": gen.error.tolist()}


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    first = next(iter(result["runs"].values()))
    edges = np.array(first["edges"])
    centers = 0.5 * (edges[1:] + edges[:-1])
    top.stairs(first["ref_density"], edges, color="black", label="Pythia, weighted reference")
    top.errorbar(centers, first["ref_density"], first["ref_error"], fmt="none", color="black")
    colors = {"weighted": "tab:blue", "unweighted": "tab:orange"}
    for k, (label, r) in enumerate(result["runs"].items()):
        color = colors.get(label, f"C{k + 2}")
        top.stairs(r["gen_density"], edges, color=color, label=f"trained {label}")
        offset = (k - 0.5) * 0.08 * np.diff(edges)
        bottom.errorbar(centers + offset, r["ratio"], r["error"], fmt="o", color=color, ms=4)
    bottom.axhspan(1 - TAIL_TOLERANCE, 1 + TAIL_TOLERANCE, color="grey", alpha=0.25, label="±10 %")
    bottom.axhline(1.0, color="black", lw=0.8)
    top.set_yscale("log")
    top.set_ylabel(r"$1/N\ dN/dp_T$ [1/GeV]")
    top.legend()
    bottom.set_ylabel("generated / reference")
    bottom.set_xlabel(r"$p_T^{j1}$ [GeV]")
    # wide enough for every point with its error (a generator far off must show, not be clipped)
    reach = [abs(x - 1) + e for r in result["runs"].values() for x, e in zip(r["ratio"], r["error"]) if np.isfinite(x)]
    half = max(0.5, 1.1 * max(reach, default=0.0))
    bottom.set_ylim(max(0.0, 1 - half), 1 + half)
    bottom.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def show(title: str, r: dict, edges: np.ndarray) -> None:
    print(f"\n{title}: pT_j1 bins within {100 * TAIL_TOLERANCE:g} % "
          f"(STAT_Z {STAT_Z:g}): {'all' if r['all_within'] else 'NOT all'}")
    print("  bin [GeV]      gen/ref   error   gen ev   ref ev   train ev  train Σw share   within")
    for i in range(len(edges) - 1):
        verdict = ("yes" if r["within"][i] else "NO") if r["resolved"][i] else "unresolved"
        print(f"  {edges[i]:4.0f}-{edges[i + 1]:4.0f}   {r['ratio'][i]:8.3f} {r['error'][i]:7.3f} "
              f"{r['generated_events'][i]:8d} {r['reference_events'][i]:8d} {r['train_events'][i]:9d}"
              f"  {r['train_share'][i]:14.2e}   {verdict}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference")
    ap.add_argument("--run", action="append", metavar="LABEL=RUN")
    ap.add_argument("--replot", type=Path, metavar="JSON", help="only draw --plot from an earlier --json result")
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--edges", type=float, nargs="+", default=[200, 225, 250, 300, 400, 600])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--multiplicity", action="store_true",
                    help="also a table per jet multiplicity (where a tail miss sits)")
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.replot:
        if not args.plot:
            ap.error("--replot needs --plot")
        plot(json.loads(args.replot.read_text()), args.plot)
        return 0
    if not args.reference or not args.run:
        ap.error("--reference and --run are required (or --replot)")
    edges = np.array(args.edges)
    ref_pt, ref_w, ref_n = leading_jet_pt(Path(args.reference))
    result = {"reference": args.reference, "reference_events": len(ref_pt),
              "reference_ess": effective_size(ref_w), "tolerance": TAIL_TOLERANCE, "stat_z": STAT_Z, "runs": {}}
    print(f"reference {args.reference}: {len(ref_pt)} events, effective size {result['reference_ess']:.0f}")
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.run:
            label, run = spec.split("=", 1)
            gen_pt, _, gen_n = leading_jet_pt(generate(run, args.events, args.seed, Path(tmp)))
            train = training_sample(run)
            r = {**tail_table(ref_pt, ref_w, gen_pt, edges), **training_tail(train, edges)}
            result["runs"][label] = {"run": run, **r}
            show(f"{label} ({run}, {args.events} events)", r, edges)
            for k in sorted(set(ref_n.tolist())) if args.multiplicity else []:
                r = {**tail_table(only(ref_pt, ref_n, k), ref_w, only(gen_pt, gen_n, k), edges),
                     **training_tail(train, edges, k)}
                result["runs"][label][f"jets{k}"] = r
                show(f"{label}, events with {k} jets", r, edges)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if args.plot:
        plot(result, args.plot)
        print(f"\nplot: {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
