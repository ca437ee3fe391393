"""Events/s of an exported Z+jets generator: ONNX Runtime, torch eager, SOFIE C++, vs simulation.

In one run on one machine, for each configuration (solver, steps, network size), in events per
CPU second of one thread (robust against other load on a shared machine):

- torch eager: ``hepgen.generate.pipeline`` in float32, 1 thread, batches of ``--batch``;
- ONNX Runtime (Python API), 1 intra- and 1 inter-op thread, no spinning, same batches;
- SOFIE C++: ``export/sofie/generate_events`` compiled with ``--cxxflags`` (noise drawn in C++,
  inference time only, same batches);
- the solver error of the configuration: median and 99% quantile over events of the largest
  |delta p| / max(|p|, 1) of the four-momenta against the same network integrated with RK4 x 64
  steps (same noise), i.e. what fewer steps / a cheaper solver cost in precision;

and once, Pythia 8 + FastJet through ``hepgen.simulate`` with cards/zjets.yaml (selected events
per CPU second, one process). All generator numbers are single-threaded.

    python benchmarks/onnx_throughput.py [--run RUN] [--events 20000] [--batch 1000]
        [--configs rk4:20,midpoint:10,euler:10,rk4:4] [--small] [--sim-events 2000]

Without ``--run`` a run with the card's default network (256 x 4 residual blocks; ``--small``
adds a 64 x 2 run) is trained for one epoch on synthetic Z+jets-like events: throughput does
not depend on how well the network is trained.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from hepgen.export.from_run import export  # noqa: E402
from hepgen.export.runtime import OnnxSampler  # noqa: E402
from hepgen.pipeline import pipeline  # noqa: E402
from hepgen.runs import load_run  # noqa: E402


def _train(tmp: Path, hidden: int, layers: int) -> Path:
    from hepgen.cards import card_from_dict
    from hepgen.io.root import write_events
    from hepgen.train import train
    from tests.zjets_like import zjets_like

    ref = tmp / "ref.root"
    if not ref.exists():
        write_events(ref, zjets_like(3000, seed=1))
    card = card_from_dict({
        "name": f"bench{hidden}x{layers}", "seed": 1,
        "data": {"path": str(ref)},
        "model": {"family": "cfm", "network": {"hidden": hidden, "layers": layers}},
        "train": {"epochs": 1, "batch_size": 512, "runs_dir": str(tmp / "runs")},
    })
    return train(card, progress=False, after=False, run_dir=tmp / f"run{hidden}x{layers}")


def _rate(fn, noise: np.ndarray, batch: int, min_seconds: float = 2.0) -> float:
    """Events per CPU second of ``fn(noise_batch)`` (single-threaded, so CPU time is the
    honest measure on a shared machine), repeated until ``min_seconds`` of CPU passed."""
    n, done, t0 = len(noise), 0, time.process_time()
    while True:
        for start in range(0, n, batch):
            fn(noise[start:start + batch])
        done += n
        if time.process_time() - t0 >= min_seconds:
            return done / (time.process_time() - t0)


def _solver_error(run, solver: str, steps: int, n: int = 2000) -> tuple[float, float]:
    ref = pipeline(run, None, solver="rk4", steps=64)
    pipe = pipeline(run, None, solver=solver, steps=steps)
    noise = ref.draw_noise(n, torch.Generator().manual_seed(123))
    with torch.no_grad():
        a, b = ref(noise)[0].numpy(), pipe(noise)[0].numpy()
    d = (np.abs(b - a) / np.maximum(np.abs(a), 1.0)).reshape(n, -1).max(axis=1)
    return float(np.median(d)), float(np.quantile(d, 0.99))


def _sofie_rate(out: Path, build: Path, events: int, batch: int, cxxflags: str) -> tuple[float | None, float | None, str]:
    """(events per CPU second, compile seconds, "") or (None, None, why SOFIE was skipped)."""
    if not (out / "sofie" / "generator.hxx").exists():
        return None, None, "the export has no SOFIE header (pip install 'hepgen[sofie]')"
    t0 = time.perf_counter()
    try:
        make = subprocess.run(["make", "-s", "-C", str(ROOT / "export/sofie"), f"EXPORT={out}", f"BUILD={build}",
                               f"CXXFLAGS={cxxflags}"], capture_output=True, text=True)
        failed = make.returncode != 0 and (make.stderr.strip().splitlines() or ["make failed"])[-1]
    except OSError as err:  # no make
        failed = str(err)
    if failed:
        return None, None, f"the SOFIE C++ build failed (needs g++, make, libopenblas-dev): {failed}"
    compile_s = time.perf_counter() - t0
    run = subprocess.run([str(build / "generate_events"), str(out), "-o", str(build / "ev"), "-n", str(events),
                          "--batch", str(batch)], check=True, capture_output=True, text=True)
    rate = float(re.search(r"([0-9.]+) events per CPU second", run.stdout).group(1))
    return rate, compile_s, ""


def _simulation_rate(events: int, tmp: Path) -> float | None:
    try:
        from hepgen.simulate import produce
    except ImportError:
        return None
    from hepgen.cards import load_card

    c0 = time.process_time()  # jobs=1 runs Pythia in this process
    produce(load_card(ROOT / "cards/zjets.yaml"), events=events, seed=1, output=tmp / "sim.root", jobs=1, force=True,
            quiet=True)
    return events / (time.process_time() - c0)  # selected events per CPU second


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="a trained Z+jets run (default: train a 1-epoch one)")
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--configs", default="rk4:20,midpoint:10,euler:10,rk4:4", help="solver:steps,...")
    ap.add_argument("--small", action="store_true", help="also a 64 x 2 network at the first config")
    ap.add_argument("--sim-events", type=int, default=2000)
    ap.add_argument("--cxxflags", default="-O2")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # SOFIE's OpenBLAS: one thread too
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    configs = [(s.split(":")[0], int(s.split(":")[1])) for s in args.configs.split(",")]
    rows, sofie_skipped = [], ""
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        runs = [args.run] if args.run else [_train(tmp, 256, 4)]
        jobs = [(runs[0], solver, steps) for solver, steps in configs]
        if args.small:
            small = _train(tmp, 64, 2)
            jobs.append((small, *configs[0]))
        for run_dir, solver, steps in jobs:
            run = load_run(run_dir)
            net = f"{run.card.model.network.hidden}x{run.card.model.network.layers}"
            out = tmp / f"exp-{net}-{solver}{steps}"
            t0 = time.perf_counter()
            export(run_dir, output=out, solver=solver, steps=steps)
            export_s = time.perf_counter() - t0
            pipe = pipeline(run, None, solver=solver, steps=steps)
            noise_t = pipe.draw_noise(args.events, torch.Generator().manual_seed(7))
            sampler = OnnxSampler(out, threads=1)
            with torch.no_grad():
                r_torch = _rate(pipe, noise_t, args.batch)
            r_ort = _rate(sampler.run, noise_t.numpy(), args.batch)
            r_sofie, compile_s, why = _sofie_rate(out, tmp / f"build-{out.name}", args.events, args.batch, args.cxxflags)
            sofie_skipped = sofie_skipped or why
            med, q99 = _solver_error(run, solver, steps)
            rows.append((net, solver, steps, r_torch, r_ort, r_sofie, med, q99, export_s, compile_s))
            print(f"done {net} {solver}/{steps}", file=sys.stderr)
        sim = _simulation_rate(args.sim_events, tmp)
    print(f"events per CPU second, 1 thread, batch {args.batch}; solver error vs RK4 x 64 (median / 99% of events)")
    print(f"{'network':>8} {'solver':>9} {'steps':>5} {'torch':>9} {'ORT':>9} {'SOFIE':>9} {'ORT/torch':>9} "
          f"{'SOFIE/ORT':>9} {'err med':>9} {'err 99%':>9} {'export s':>8} {'g++ s':>6}")
    def num(v, fmt):
        return "n/a" if v is None else format(v, fmt)

    for net, solver, steps, rt, ro, rs, med, q99, es, cs in rows:
        print(f"{net:>8} {solver:>9} {steps:>5} {rt:9.0f} {ro:9.0f} {num(rs, '.0f'):>9} {ro / rt:9.2f} "
              f"{num(rs and rs / ro, '.2f'):>9} {med:9.2e} {q99:9.2e} {es:8.1f} {num(cs, '.1f'):>6}")
    if sofie_skipped:
        print(f"SOFIE skipped: {sofie_skipped}")
    if sim is None:
        print("Pythia 8 + FastJet: skipped (pythia8mc is not installed)")
    else:
        print(f"Pythia 8 + FastJet (hepgen.simulate, cards/zjets.yaml): {sim:.0f} selected events per CPU second")
        for net, solver, steps, rt, ro, rs, *_ in rows:
            print(f"  {net} {solver}/{steps}: ORT {ro / sim:.0f}x, SOFIE {num(rs and rs / sim, '.0f')}x, "
                  f"torch {rt / sim:.0f}x the simulation")


if __name__ == "__main__":
    main()
