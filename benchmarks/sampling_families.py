"""Sampling speed of every generator family and sampler setting, side by side in one run.

Same problem for all: D = 13 coordinates (Z + 2 jets), a 3-column condition (one-hot jet
multiplicity), the card's default network (``--hidden``, ``--layers``). Untrained weights: the
speed does not depend on them. Each setting samples ``--events`` events in batches of
``--batch`` with ``torch.no_grad()``; the best of ``--repeat`` runs is reported, as events/s
and relative to CFM rk4.

    python benchmarks/sampling_families.py [--threads 1] [--events 4000] [--device cpu] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hepgen.cards import ModelConfig, NetworkConfig  # noqa: E402
from hepgen.models import build_model  # noqa: E402

DIM, COND = 13, 3

SETTINGS = [  # (label, family, sampler options, network evaluations per event)
    ("CFM euler 20", "cfm", {"solver": "euler", "steps": 20}, 20),
    ("CFM midpoint 10", "cfm", {"solver": "midpoint", "steps": 10}, 20),
    ("CFM rk4 5", "cfm", {"solver": "rk4", "steps": 5}, 20),
    ("CFM rk4 20", "cfm", {"solver": "rk4", "steps": 20}, 80),
    ("CFM rk4 10 (zjets card)", "cfm", {"solver": "rk4", "steps": 10}, 40),
    ("CFM reflow euler 2 (hepgen distill)", "cfm", {"solver": "euler", "steps": 2}, 2),
    ("CFM reflow euler 1 (hepgen distill)", "cfm", {"solver": "euler", "steps": 1}, 1),
    ("DDPM ancestral 1000", "ddpm", {"sampler": "ancestral"}, 1000),
    ("DDPM ancestral 100", "ddpm", {"sampler": "ancestral", "steps": 100}, 100),
    ("DDPM ddim 50", "ddpm", {"sampler": "ddim", "steps": 50}, 50),
    ("DDPM ddim 10", "ddpm", {"sampler": "ddim", "steps": 10}, 10),
    ("INN spline 8 blocks", "inn", {}, 8),
    ("INN affine 8 blocks", "inn-affine", {}, 8),
    ("JetGPT (13 AR steps)", "jetgpt", {}, 13),
    ("VAE gaussian prior", "vae", {}, 1),
    ("VAE flow prior 4 affine blocks", "vae-flow", {}, 5),
    ("GAN (one pass)", "gan", {}, 1),
    ("Student (one pass, hepgen distill)", "student", {}, 1),
]


def make(family: str, net: NetworkConfig, device: str):
    cfg = ModelConfig(family=family.split("-")[0], network=net)
    if family in ("inn-affine", "vae-flow"):
        cfg = dataclasses.replace(cfg, inn=dataclasses.replace(cfg.inn, coupling="affine"))
    if family == "vae-flow":  # as cards/zjets_vae.yaml's flow option
        cfg = dataclasses.replace(cfg, vae=dataclasses.replace(cfg.vae, prior="flow"),
                                  inn=dataclasses.replace(cfg.inn, blocks=4))
    torch.manual_seed(0)
    return build_model(cfg, DIM, COND).to(device).eval()


def rate(model, opts, events: int, batch: int, repeat: int, device: str) -> float:
    sampler = model.sampler(**opts)
    best = float("inf")
    gen = torch.Generator().manual_seed(1)
    for _ in range(repeat):
        chunks = []
        for start in range(0, events, batch):
            n = min(batch, events - start)
            noise = model.draw_noise(n, gen, **opts).to(device)
            c = torch.nn.functional.one_hot(torch.randint(0, COND, (n,), generator=gen), COND).float().to(device)
            chunks.append((noise, c))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.no_grad():
            for noise, c in chunks:
                sampler(noise, c)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return events / best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=4000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (CMSSW/Athena run one)")
    ap.add_argument("--hidden", type=int, default=NetworkConfig.hidden)
    ap.add_argument("--layers", type=int, default=NetworkConfig.layers)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", default="", help="comma-separated substrings of setting labels")
    ap.add_argument("--json", default="", help="also write the results here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    net = NetworkConfig(hidden=args.hidden, layers=args.layers)
    rows = []
    for label, family, opts, evals in SETTINGS:
        if args.only and not any(s.strip().lower() in label.lower() for s in args.only.split(",")):
            continue
        model = make(family, net, args.device)
        # the slowest settings get fewer events so the run stays short
        events = max(args.events // 10, 100) if evals >= 1000 else args.events
        r = rate(model, opts, events, args.batch, args.repeat, args.device)
        params = sum(p.numel() for p in model.parameters())
        rows.append({"setting": label, "family": family, "options": opts, "network_evals": evals,
                     "events_per_s": r, "parameters": params, "events": events})
        print(f"{label:24s} {r:12.0f} events/s  ({evals} evals, {params} parameters)", file=sys.stderr)
    ref = next((row["events_per_s"] for row in rows if row["setting"] == "CFM rk4 5"), None)
    print(f"\nD = {DIM}, condition {COND}, hidden {args.hidden}, layers {args.layers}, "
          f"threads {args.threads}, device {args.device}, torch {torch.__version__}\n")
    print("| setting | network evals / event | events/s | vs CFM rk4 5 |")
    print("|---|---:|---:|---:|")
    for row in rows:
        rel = f"{row['events_per_s'] / ref:.2f}" if ref else "-"
        print(f"| {row['setting']} | {row['network_evals']} | {row['events_per_s']:,.0f} | {rel} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
