"""Few-step sampling on the toy ring: a CFM teacher, reflow and a one-step student (``hepgen distill``).

Trains a (non-Bayesian) toy-ring teacher with the settings of cards/toy_ring.yaml, distils it with
both methods (the same pairs, epochs and schedule) and compares, for every sampler setting:

- ``rms``: the RMS distance (network coordinates, where the ring's radial width is ~0.14) to the
  teacher's card sampler (RK4 x 10) for the SAME noise: how well the few-step sampler reproduces
  the teacher event by event;
- the ring itself against the truth (radius 1, width 0.1): mean and width of the generated radius,
  and chi2 / ndf of the radius histogram (20 bins in [0.6, 1.4]) against the exact bin contents;
- events per second (1 thread, torch, batches of 10 000) and network evaluations per event.

    python benchmarks/distill_toys.py [--epochs 40] [--pairs 100000] [--events 200000] [--out DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hepgen.cards import card_from_dict  # noqa: E402
from hepgen.distill import distill  # noqa: E402
from hepgen.models.solvers import EVALS_PER_STEP  # noqa: E402
from hepgen.processes.toys import TOY_RING  # noqa: E402
from hepgen.runs import load_run  # noqa: E402
from hepgen.train import train  # noqa: E402

EDGES = np.linspace(0.6, 1.4, 21)


def teacher_card(runs: Path, epochs: int):
    return card_from_dict({
        "name": "ring", "seed": 1, "process": {"name": "toy_ring"}, "simulate": {"events": 20000},
        "data": {"split": [0.8, 0.2, 0.0]},
        "model": {"family": "cfm", "network": {"hidden": 64, "layers": 2}, "cfm": {"solver": "rk4", "steps": 10}},
        "train": {"epochs": epochs, "batch_size": 512, "lr": 3e-3, "threads": 1, "runs_dir": str(runs)},
    })


def ring_stats(run, z, opts):
    """(radius mean, radius width, chi2/ndf vs truth, events/s) of ``run`` with sampler ``opts``."""
    c = torch.zeros(len(z), 0)
    t0 = time.perf_counter()
    with torch.no_grad():
        x = torch.cat([run.model.sample(z[i:i + 10000], c[i:i + 10000], **opts) for i in range(0, len(z), 10000)])
    rate = len(z) / (time.perf_counter() - t0)
    y = run.coords.inverse(x.double()).numpy()
    r = np.hypot(y[:, 0], y[:, 1])
    counts, _ = np.histogram(r, EDGES)
    expect = TOY_RING.truth_in_bins(EDGES) * np.diff(EDGES) * len(r)
    chi2 = float(((counts - expect) ** 2 / expect).sum()) / len(counts)
    return x, float(r.mean()), float(r.std()), chi2, rate


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=40, help="teacher and distillation epochs")
    ap.add_argument("--pairs", type=int, default=100000)
    ap.add_argument("--events", type=int, default=200000, help="noise vectors per comparison")
    ap.add_argument("--out", default="", help="folder for the runs (default: a temporary one)")
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out or tempfile.mkdtemp(prefix="distill_toys_"))
    teacher = train(teacher_card(out / "runs", args.epochs), progress=False, after=False, run_dir=out / "teacher")
    made = {m: distill(teacher, m, pairs=args.pairs, overrides=[f"train.epochs={args.epochs}"], run_dir=out / m,
                       progress=False, after=False) for m in ("reflow", "student")}
    runs = {"teacher": load_run(teacher), **{m: load_run(p) for m, p in made.items()}}
    settings = [("teacher", "rk4", 10), ("teacher", "rk4", 2), ("teacher", "midpoint", 2), ("teacher", "euler", 4),
                ("teacher", "euler", 2), ("teacher", "euler", 1), ("reflow", "rk4", 10), ("reflow", "euler", 4),
                ("reflow", "euler", 2), ("reflow", "euler", 1), ("student", None, 1)]
    z = torch.randn(args.events, 2, generator=torch.Generator().manual_seed(12345))
    ref = None
    rows = []
    for name, solver, steps in settings:
        opts = {"solver": solver, "steps": steps} if solver else {}
        x, mean, width, chi2, rate = ring_stats(runs[name], z, opts)
        ref = x if ref is None else ref
        rms = float(((x - ref) ** 2).sum(-1).mean().sqrt())
        evals = EVALS_PER_STEP[solver] * steps if solver else 1
        rows.append({"model": name, "sampler": f"{solver} x {steps}" if solver else "one step", "evals": evals,
                     "rms_to_teacher": rms, "radius_mean": mean, "radius_width": width, "chi2_ndf": chi2,
                     "events_per_s": rate})
    print(f"toy ring, teacher 64 x 2 CFM, {args.epochs} epochs; {args.pairs} pairs; {args.events} events; "
          f"truth: radius 1, width 0.1; torch {torch.__version__}, 1 thread; runs in {out}\n")
    print("| model | sampler | evals / event | RMS to teacher rk4 x 10 | radius mean | radius width | "
          "chi2 / ndf (20 bins) | events/s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['sampler']} | {r['evals']} | {r['rms_to_teacher']:.4f} | {r['radius_mean']:.4f} | "
              f"{r['radius_width']:.4f} | {r['chi2_ndf']:.1f} | {r['events_per_s']:,.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
