"""How close Z+jets runs come to the statistical floor (the acceptance of the precision study in
docs/training.md, "Z+jets at the statistical floor").

    python benchmarks/zjets_floor.py RUN [RUN ...] [--reference data/zjets_validation.root]
        [--holdout data/zjets_holdout.root] [--seeds 1 2] [--events 100000] [--floor [FILE]]
        [--resample] [--classifier-runs 3] [--json FILE]

For every run and generation seed: ``--events`` events are generated (the run's card solver), the
classifier two-sample test of ``hepgen validate`` (hepgen.validate.classifier, its defaults) gives
the AUC per jet multiplicity against ``--reference`` (an independent sample, another seed,
>= 100 000 events), and against ``--holdout`` (a second independent sample) the chi2/ndf of m_mumu
and Delta R_j1j2 per multiplicity over 20 bulk bins (5-95 % reference quantiles, as
benchmarks/zjets_agreement.py) and the m_mumu peak shift. One row per run: the means over the
seeds, and the run's training time from its log. ``--floor``: a first row with the card's
training file itself in place of generated events (what a perfect copy of the training sample
scores: the floor); with ``--resample`` ``--events`` events drawn from it with replacement per
seed instead (what a generator that reproduced its training sample exactly scores at the size
generated: its chi2 also carries the training sample's own fluctuations). A run folder holding
``generated.seed<k>.root`` (``hepgen generate RUN -n EVENTS --seed k``, e.g. on a GPU by
benchmarks/gpu_zjets.sh) is scored from that file instead of generating seed k again.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from zjets_agreement import compare, peak  # noqa: E402

from hepgen import observables  # noqa: E402
from hepgen.io.root import read_events  # noqa: E402
from hepgen.validate.classifier import two_sample_test  # noqa: E402

CHI2 = {"m_mumu": (1, 2, 3), "dR_j1j2": (2, 3)}


def score(sample, reference, holdout, oh, runs: int = 3) -> dict:
    """AUC per multiplicity vs ``reference`` (the mean of ``runs`` classifier trainings); chi2/ndf
    per (observable, multiplicity) and the peak shift vs ``holdout`` (``oh``: its observables)."""
    clf = two_sample_test(reference, sample, runs=runs)
    out = {"auc": {k: float(r.auc) for k, r in sorted(clf.per_multiplicity.items())}, "chi2": {}}
    og = observables.compute(sample, list(CHI2))
    for name, mults in CHI2.items():
        for k in mults:
            r = oh[name][(holdout.n_jets == k) & np.isfinite(oh[name])]
            g = og[name][sample.n_jets == k]
            edges = np.linspace(*np.quantile(r, [0.05, 0.95]), 21)
            out["chi2"][f"{name}_{k}j"] = compare(g, r, edges)[3]
    out["peak"] = peak(og["m_mumu"]) - peak(oh["m_mumu"])
    return out


def training_minutes(run: Path) -> float | None:
    """Wall minutes of the epochs, from the run's history.json (``seconds`` per epoch), if it has one."""
    history = run / "history.json"
    if not history.is_file():
        return None
    return sum(h["seconds"] for h in json.loads(history.read_text())) / 60


def mean_rows(rows: list[dict]) -> dict:
    keys = rows[0]
    return {"auc": {k: float(np.mean([r["auc"][k] for r in rows])) for k in keys["auc"]},
            "chi2": {k: float(np.mean([r["chi2"][k] for r in rows])) for k in keys["chi2"]},
            "peak": float(np.mean([r["peak"] for r in rows])), "seeds": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", type=Path, nargs="*")
    ap.add_argument("--reference", type=Path, default=Path("data/zjets_validation.root"))
    ap.add_argument("--holdout", type=Path, default=Path("data/zjets_holdout.root"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--events", type=int, default=100000)
    ap.add_argument("--floor", type=Path, nargs="?", const=Path("data/zjets_reference.root"),
                    help="also score this training file itself (default data/zjets_reference.root)")
    ap.add_argument("--resample", action="store_true",
                    help="score --events events drawn with replacement from the --floor file per seed instead of the "
                         "file itself: a generator that reproduced its training sample exactly, at the size generated "
                         "(its chi2 carries the training sample's fluctuations, which no denominator holds)")
    ap.add_argument("--classifier-runs", type=int, default=3,
                    help="classifier trainings per AUC (hepgen validate: 3; 1 for a quicker screen)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import torch

    from hepgen.generate import generate
    from hepgen.runs import load_run

    torch.set_num_threads(1)
    reference, holdout = read_events(args.reference), read_events(args.holdout)
    oh = observables.compute(holdout, list(CHI2))
    results = {}
    if args.floor and args.resample:
        floor = read_events(args.floor)
        rows = [score(floor.select(np.random.default_rng(s).integers(len(floor), size=args.events)), reference, holdout,
                      oh, args.classifier_runs) for s in args.seeds]
        results[f"training file, {args.events} resampled"] = mean_rows(rows)
    elif args.floor:
        results["training file"] = score(read_events(args.floor), reference, holdout, oh, args.classifier_runs)
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.runs:
            run, rows = load_run(path), []
            for s in args.seeds:
                gen = path / f"generated.seed{s}.root"  # made elsewhere (benchmarks/gpu_zjets.sh), same command
                if not gen.is_file():
                    gen = Path(tmp) / f"gen{s}.root"
                    generate(run, args.events, output=gen, seed=s, force=True, progress=False)
                sample = read_events(gen)
                if gen.parent == path:
                    print(f"{path}: seed {s} from {gen.name} ({sample.info.get('device', '?')})", flush=True)
                rows.append(score(sample, reference, holdout, oh, args.classifier_runs))
            results[str(path)] = mean_rows(rows) | {"train_min": training_minutes(path)}
            print(f"{path}: {results[str(path)]['auc']}", flush=True)
    print("| run | AUC 1j / 2j / 3j | χ²/ndf m_μμ 1j / 2j / 3j | χ²/ndf ΔR_j1j2 2j / 3j | peak (GeV) | training (min) |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        a = " / ".join(f"{v:.3f}" for v in r["auc"].values())
        m = " / ".join(f"{r['chi2'][f'm_mumu_{k}j']:.1f}" for k in (1, 2, 3))
        d = " / ".join(f"{r['chi2'][f'dR_j1j2_{k}j']:.1f}" for k in (2, 3))
        t = f"{r['train_min']:.1f}" if r.get("train_min") else "–"
        print(f"| {name} | {a} | {m} | {d} | {r['peak']:+.3f} | {t} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
