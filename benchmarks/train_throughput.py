"""Training and sampling throughput of hepgen, and peak memory of a streamed generation.

    python benchmarks/train_throughput.py [--data data/zjets_reference.root] [--epochs 3]
        [--events 20000] [--gen-events 2000000] [--threads 2]

1. Training events/s: ``hepgen.train.train`` (the full loop: shuffling, KL hook, NaN check,
   scheduler, validation, checkpoints) against a bare torch loop (same network, data tensors,
   batch, optimiser and schedule; nothing else), alternating, in one process. Reported for the
   batches alone (the loop) and per whole epoch (incl. validation + checkpoint).
2. Sampling events/s of the Z+jets pipeline per solver and step count.
3. Peak resident memory (ru_maxrss of a child process) of ``hepgen generate`` for N and N/10
   events: streaming keeps it flat in N.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hepgen.cards import card_from_dict  # noqa: E402
from hepgen.runs import build_for, load_run  # noqa: E402
from hepgen.optim import make_optimizer, make_scheduler  # noqa: E402
from hepgen.train import train  # noqa: E402
from hepgen.trainingdata import prepare_data  # noqa: E402


def card_for(data: Path, runs: Path, epochs: int, events: int, threads: int, hidden: int, layers: int):
    return card_from_dict({
        "name": "bench", "seed": 1,
        "data": {"path": str(data), "split": [0.9, 0.1, 0.0], "max_events": events},
        "model": {"family": "cfm", "network": {"hidden": hidden, "layers": layers}, "cfm": {"solver": "rk4", "steps": 10}},
        "train": {"epochs": epochs, "batch_size": 1024, "runs_dir": str(runs), "threads": threads, "grad_clip": 1.0},
        "generate": {"events": 1000},
    })


def bare_loop(card, data) -> float:
    """Seconds for card.train.epochs epochs of a plain torch loop; returns batches-only time."""
    torch.manual_seed(card.seed)
    _, model = build_for(card)
    opt = make_optimizer(model, card)
    x, c = data.x_train, data.c_train
    b = card.train.batch_size
    steps = math.ceil(len(x) / b)
    sched = make_scheduler(opt, card, card.train.epochs * steps)
    t0 = time.perf_counter()
    for _ in range(card.train.epochs):
        perm = torch.randperm(len(x))
        for s in range(steps):
            idx = perm[s * b:(s + 1) * b]
            loss = model.loss(x[idx], c[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), card.train.grad_clip)
            opt.step()
            sched.step()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT / "data/zjets_reference.root")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sample-events", type=int, default=10000)
    ap.add_argument("--gen-events", type=int, default=2_000_000)
    ap.add_argument("--memory-only", action="store_true", help="only the streamed-generation memory part")
    args = ap.parse_args()
    if not args.data.exists():
        sys.exit(f"{args.data} is missing: run `hepgen simulate cards/zjets.yaml` first")
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="hepgen-bench-"))
    card = card_for(args.data, tmp / "runs", args.epochs, args.events, args.threads, args.hidden, args.layers)
    if args.memory_only:
        return memory(args, tmp)
    data = prepare_data(card, log=lambda m: None)
    n = len(data.x_train)
    print(f"# training: {n} Z+jets events, MLP {args.hidden}x{args.layers}, batch 1024, {args.epochs} epochs, "
          f"{args.threads} threads")
    res = {"hepgen_loop": [], "hepgen_epoch": [], "bare": []}
    run = None
    for r in range(args.rounds):
        order = ("bare", "hepgen") if r % 2 == 0 else ("hepgen", "bare")
        for who in order:
            if who == "bare":
                res["bare"].append(n * args.epochs / bare_loop(card, data))
            else:
                t0 = time.perf_counter()
                run = train(card, progress=False, after=False, run_dir=tmp / f"run{r}")
                wall = time.perf_counter() - t0
                hist = json.loads((run / "history.json").read_text())
                loop = sum(h["seconds"] for h in hist)
                res["hepgen_loop"].append(n * args.epochs / loop)
                # whole epochs: wall minus the one-off data preparation (timed separately below)
                res["hepgen_epoch"].append(wall)
    t0 = time.perf_counter()
    prepare_data(card, log=lambda m: None)
    prep = time.perf_counter() - t0
    res["hepgen_epoch"] = [n * args.epochs / max(w - prep, 1e-9) for w in res["hepgen_epoch"]]
    bare = max(res["bare"])
    print(f"bare torch loop           {bare:10.0f} events/s (best of {args.rounds})")
    for k in ("hepgen_loop", "hepgen_epoch"):
        best = max(res[k])
        print(f"{k:25s} {best:10.0f} events/s  ratio {best / bare:.3f}")

    # sampling
    r = load_run(run, "last")
    from hepgen.pipeline import pipeline

    print(f"# sampling: {args.sample_events} events per call, float32")
    for solver, steps in (("euler", 10), ("midpoint", 10), ("rk4", 5), ("rk4", 10), ("rk4", 20)):
        pipe = pipeline(r, solver=solver, steps=steps)
        noise = pipe.draw_noise(args.sample_events, torch.Generator().manual_seed(0))
        with torch.no_grad():
            pipe(noise[:100])
            t0 = time.perf_counter()
            pipe(noise)
            dt = time.perf_counter() - t0
        print(f"{solver:9s} {steps:3d} steps  {args.sample_events / dt:10.0f} events/s")

    memory(args, tmp)


def memory(args, tmp):
    """Peak memory of streamed generation (tiny model, so the events dominate)."""
    tiny = card_for(args.data, tmp / "runs", 1, 3000, args.threads, 8, 1)
    tiny_run = train(tiny, progress=False, after=False, run_dir=tmp / "tiny")
    print("# streamed generation, tiny model (euler 1 step), chunk 100000, ROOT output")
    for nev in (args.gen_events // 10, args.gen_events):
        code = ("import resource,sys,time; sys.path.insert(0, %r); from hepgen.generate import generate; "
                "t=time.time(); generate(%r, %d, output=%r, solver='euler', steps=1, progress=False); "
                "print(time.time()-t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
                % (str(ROOT), str(tiny_run), nev, str(tmp / f"gen{nev}.root")))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
        secs, rss = float(out[-2]), int(out[-1]) / 1024
        size = (tmp / f"gen{nev}.root").stat().st_size / 2**20
        print(f"{nev:10d} events: peak RSS {rss:7.0f} MiB, {nev / secs:9.0f} events/s, file {size:.0f} MiB")
    print(f"# scratch: {tmp}")


if __name__ == "__main__":
    main()
