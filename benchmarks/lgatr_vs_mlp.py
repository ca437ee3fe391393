"""L-GATr CFM against MLP CFM on Z+jets at equal wall time on CPU, one thread each, side by side.

Both models (cards/zjets_lgatr.yaml and cards/zjets.yaml) train at the same time in two
processes of one torch thread each, on data/zjets_reference.root, for the same wall-time budget:
each first times ``--calib-steps`` training steps on the real data and sets its epochs so that
its one-cycle schedule fills ``--minutes`` (the wall time actually used is reported). Then each
generates ``--events`` events and validates them against the independent reference
data/zjets_validation.root (hepgen validate: per-multiplicity classifier AUC, 0.5 = perfect),
and its sampling speed is measured: events per CPU second (torch, one thread, the card's
solver, batches of 10 000, best of 3).

    python benchmarks/lgatr_vs_mlp.py --minutes 5 --events 20000 --out bench/lgatr_vs_mlp  # short
    python benchmarks/lgatr_vs_mlp.py --minutes 120 --events 100000 --out bench/lgatr_vs_mlp_full

Writes ``<out>/<model>/`` (run folder, generated.root, validation/) and ``<out>/results.json``,
and prints a table. Needs data/ (``ln -s <checkout>/data data``).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hepgen.cards import load_card  # noqa: E402

MODELS = {"mlp": ROOT / "cards/zjets.yaml", "lgatr": ROOT / "cards/zjets_lgatr.yaml"}
REFERENCE = ROOT / "data/zjets_validation.root"


def one(name: str, args) -> dict:
    """Calibrate, train, generate, validate and time one model (in its own process)."""
    from hepgen.generate import generate
    from hepgen.runs import build_for, load_run
    from hepgen.train import train
    from hepgen.trainingdata import prepare_data
    from hepgen.validate.report import validate

    torch.set_num_threads(1)
    out = Path(args.out) / name
    out.mkdir(parents=True, exist_ok=True)
    overrides = ["train.threads=1", f"train.runs_dir={out / 'runs'}", "train.validate=false",
                 f"generate.events={args.events}", f"data.path={ROOT / 'data/zjets_reference.root'}"]
    card = load_card(MODELS[name], overrides)
    data = prepare_data(card, lambda m: None)
    _, model = build_for(card)
    model.attach_coords(data.coords)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], card.train.lr)
    batch = card.train.batch_size
    g = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(args.calib_steps):
        idx = torch.randint(0, len(data.x_train), (batch,), generator=g)
        loss = model.loss(data.x_train[idx], data.c_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    per_step = (time.perf_counter() - start) / args.calib_steps
    steps_per_epoch = math.ceil(len(data.x_train) / batch)
    # the training also validates each epoch and writes checkpoints: ~5 % on top of the steps
    epochs = max(1, int(args.minutes * 60 / (1.05 * per_step * steps_per_epoch)))
    card = load_card(MODELS[name], overrides + [f"train.epochs={epochs}"])

    start = time.perf_counter()
    path = train(card, progress=False, after=False, run_dir=out / "run")
    train_s = time.perf_counter() - start
    run = load_run(path)
    generate(run, args.events, output=out / "generated.root", force=True, progress=False)
    report = validate(out / "generated.root", reference=REFERENCE, output=out / "validation", force=True,
                      card=run.card, progress=False)
    metrics = json.loads((report / "metrics.json").read_text())
    auc = {k: round(v["auc"], 4) for k, v in metrics["classifier"]["per_multiplicity"].items()}

    sampler = run.model.sampler()
    n = 10000
    noise, c = run.model.draw_noise(n, torch.Generator().manual_seed(1)), torch.eye(run.coords.cond_dim)[
        torch.randint(0, run.coords.cond_dim, (n,), generator=torch.Generator().manual_seed(2))]
    best = math.inf
    with torch.no_grad():
        for _ in range(3):
            t0 = time.process_time()
            sampler(noise, c)
            best = min(best, time.process_time() - t0)
    return {"model": name, "params": sum(p.numel() for p in run.model.parameters()),
            "seconds_per_step": round(per_step, 4), "epochs": epochs, "train_wall_s": round(train_s, 1),
            "auc_total": round(metrics["classifier"]["auc_total"], 4), "auc_per_multiplicity": auc,
            "events_per_cpu_s": round(n / best, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="training wall time per model")
    parser.add_argument("--events", type=int, default=20000, help="generated events per model")
    parser.add_argument("--calib-steps", type=int, default=30)
    parser.add_argument("--out", default="bench/lgatr_vs_mlp")
    parser.add_argument("--one", choices=sorted(MODELS), help=argparse.SUPPRESS)  # a worker process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args)))
        return
    argv = [sys.executable, __file__, "--minutes", str(args.minutes), "--events", str(args.events),
            "--calib-steps", str(args.calib_steps), "--out", args.out]
    procs = {name: subprocess.Popen(argv + ["--one", name], stdout=subprocess.PIPE, text=True) for name in MODELS}
    results = []
    for name, proc in procs.items():
        stdout, _ = proc.communicate()
        if proc.returncode:
            sys.exit(f"{name}: worker failed with exit code {proc.returncode}")
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    Path(args.out, "results.json").write_text(json.dumps(results, indent=2) + "\n")
    keys = sorted(results[0]["auc_per_multiplicity"])
    print(f"| model | params | s/step | epochs | train s | AUC {' | AUC '.join(keys)} | AUC all | events/CPU s |")
    print("|---" * (7 + len(keys)) + "|")
    for r in results:
        aucs = " | ".join(f"{r['auc_per_multiplicity'][k]:.3f}" for k in keys)
        print(f"| {r['model']} | {r['params']} | {r['seconds_per_step']} | {r['epochs']} | {r['train_wall_s']} | "
              f"{aucs} | {r['auc_total']:.3f} | {r['events_per_cpu_s']:.0f} |")


if __name__ == "__main__":
    main()
