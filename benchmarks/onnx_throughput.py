"""Events per CPU second of an exported Z+jets generator (torch, ONNX Runtime, ONNX Runtime C++,
SOFIE C++) at the batch sizes a framework uses, against Pythia 8 + FastJet, with the precision.

In one run on one machine, for each configuration (solver, steps, network size) and each batch
size in ``--batches`` (1000: a production job; 1: a framework's per-event call), in events per
CPU second of one thread (robust against other load on a shared machine):

- torch eager: ``hepgen.generate.pipeline`` in float32, 1 thread;
- ONNX Runtime (Python API), 1 intra- and 1 inter-op thread, no spinning;
- ONNX Runtime C++: ``export/onnxruntime/generate_events`` built with CMake against the vendored
  headers (../shared/vendor, as tests/test_export.py builds it), inference CPU time only;
- SOFIE C++: ``export/sofie/generate_events`` compiled with ``--cxxflags`` (noise drawn in C++,
  inference time only);
- the solver error of the configuration: median and 99% quantile over events of the largest
  |delta p| / max(|p|, 1) of the four-momenta against the same network integrated with RK4 x 64
  steps (same noise), i.e. what fewer steps / a cheaper solver cost in precision;
- with ``--reference FILE`` (an independent sample, another seed, >= 100 000 events) and a trained
  ``--run``: the classifier AUC per jet multiplicity of ``--auc-events`` events generated with
  the configuration, so every speed carries its precision: the report's (``hepgen validate``, the
  card's observable set with pT_mumu and pt_all) and the two-sample test of
  benchmarks/zjets_floor.py (its default features, the precision study's measure);

and once, Pythia 8 + FastJet through ``hepgen.simulate`` with cards/zjets.yaml (selected events
per CPU second, one process), with the reference settings (MPI off) and with MPI on.

    python benchmarks/onnx_throughput.py [--run RUN] [--events 20000] [--batches 1000,1]
        [--configs rk4:20,midpoint:10,euler:10,rk4:4] [--small] [--sim-events 2000]
        [--reference data/zjets_validation.root --auc-events 100000]

Without ``--run`` a run with the card's default network (256 x 4 residual blocks; ``--small``
adds a 64 x 2 run) is trained for one epoch on synthetic Z+jets-like events: throughput does
not depend on how well the network is trained (no AUC then).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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


def _ort_cpp_build(tmp: Path) -> tuple[Path | None, str]:
    """(the built ONNX Runtime C++ consumer, "") or (None, why it was skipped)."""
    import pytest

    from tests.toolchain import onnxruntime_root

    if shutil.which("cmake") is None:
        return None, "no cmake"
    try:
        root = onnxruntime_root(tmp)
    except pytest.skip.Exception as why:
        return None, str(why)
    build = tmp / "ort-cpp"
    for cmd in (["cmake", "-S", str(ROOT / "export/onnxruntime"), "-B", str(build), f"-DONNXRUNTIME_ROOT={root}",
                 "-DCMAKE_BUILD_TYPE=Release"], ["cmake", "--build", str(build)]):
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            return None, f"the ONNX Runtime C++ build failed: {(run.stderr.strip().splitlines() or ['?'])[-1]}"
    return build / "generate_events", ""


def _ort_cpp_rate(exe: Path, out: Path, tmp: Path, events: int, batch: int) -> float:
    run = subprocess.run([str(exe), str(out), "-o", str(tmp / "ortcpp"), "-n", str(events), "--batch", str(batch),
                          "--weights", str(out / (out / "weights.txt").read_text().split()[0])],
                         check=True, capture_output=True, text=True)
    return float(re.search(r"([0-9.]+) events per CPU second", run.stdout).group(1))


def _auc(run, solver: str, steps: int, reference: Path, events: int, tmp: Path) -> tuple[dict, dict]:
    """Classifier AUCs per jet multiplicity of ``events`` generated with (solver, steps) vs ``reference``:
    (the report's, ``hepgen validate`` with the card's observable set, pT_mumu and pt_all included;
    the two-sample test of benchmarks/zjets_floor.py, its default features, mean of 3 trainings)."""
    from hepgen.generate import generate
    from hepgen.io.root import read_events
    from hepgen.validate.classifier import two_sample_test
    from hepgen.validate.report import validate

    gen = tmp / "auc.root"
    generate(run, events, output=gen, force=True, progress=False, solver=solver, steps=steps)
    report = validate(gen, reference=reference, output=tmp / "auc", force=True, card=run.card,
                      progress=False)
    per = json.loads((report / "metrics.json").read_text())["classifier"]["per_multiplicity"]
    two = two_sample_test(read_events(reference), read_events(gen), runs=3).per_multiplicity
    gen.unlink()
    return {k: v["auc"] for k, v in sorted(per.items())}, {str(k): float(r.auc) for k, r in sorted(two.items())}


def _simulation_rate(events: int, tmp: Path, mpi: bool = False) -> float | None:
    try:
        from hepgen.simulate import produce
    except ImportError:
        return None
    from hepgen.cards import load_card

    c0 = time.process_time()  # jobs=1 runs Pythia in this process
    card = load_card(ROOT / "cards/zjets.yaml", [f"simulate.mpi={str(mpi).lower()}"])
    produce(card, events=events, seed=1, output=tmp / "sim.root", jobs=1, force=True, quiet=True)
    return events / (time.process_time() - c0)  # selected events per CPU second


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, action="append", default=[],
                    help="a trained Z+jets run, repeatable (default: train a 1-epoch one); a CFM run is measured at "
                         "every --configs solver, any other family (gan, vae, ...) with its own one-pass sampler")
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--batches", default="1000,1", help="batch sizes, comma-separated")
    ap.add_argument("--configs", default="rk4:20,midpoint:10,euler:10,rk4:4", help="solver:steps,...")
    ap.add_argument("--small", action="store_true", help="also a 64 x 2 network at the first config")
    ap.add_argument("--sim-events", type=int, default=2000)
    ap.add_argument("--cxxflags", default="-O2")
    ap.add_argument("--reference", type=Path, help="independent reference for the AUC per multiplicity (needs --run)")
    ap.add_argument("--auc-events", type=int, default=100000)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # SOFIE's OpenBLAS: one thread too
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    configs = [(s.split(":")[0], int(s.split(":")[1])) for s in args.configs.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    rows, skipped = [], {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        runs = args.run or [_train(tmp, 256, 4)]
        jobs = [(r, solver, steps) for r in runs
                for solver, steps in (configs if load_run(r).card.model.family == "cfm" else [(None, None)])]
        if args.small:
            small = _train(tmp, 64, 2)
            jobs.append((small, *configs[0]))
        ort_cpp, why = _ort_cpp_build(tmp)
        if why:
            skipped["ORT C++"] = why
        for run_dir, solver, steps in jobs:
            run = load_run(run_dir)
            net = f"{run.card.model.family} {run.card.model.network.hidden}x{run.card.model.network.layers}"
            out = tmp / f"exp-{len(rows)}"
            export(run_dir, output=out, solver=solver, steps=steps)
            pipe = pipeline(run, None, solver=solver, steps=steps)
            noise_t = pipe.draw_noise(args.events, torch.Generator().manual_seed(7))
            sampler = OnnxSampler(out, threads=1)
            med, q99 = _solver_error(run, solver, steps) if solver else (None, None)
            auc, auc2 = _auc(run, solver, steps, args.reference, args.auc_events, tmp) if args.reference and args.run else ({}, {})
            for batch in batches:
                n = min(args.events, max(batch * 200, 2000))  # batch 1: fewer events, as many calls
                with torch.no_grad():
                    r_torch = _rate(pipe, noise_t[:n], batch)
                r_ort = _rate(sampler.run, noise_t[:n].numpy(), batch)
                r_cpp = _ort_cpp_rate(ort_cpp, out, tmp, n, batch) if ort_cpp else None
                r_sofie, _, why = _sofie_rate(out, tmp / f"build-{out.name}", n, batch, args.cxxflags)
                if why:
                    skipped["SOFIE"] = why
                rows.append({"network": net, "solver": solver, "steps": steps, "batch": batch, "torch": r_torch,
                             "ort": r_ort, "ort_cpp": r_cpp, "sofie": r_sofie, "err_median": med, "err_q99": q99,
                             "auc": auc, "auc_two_sample": auc2})
                print(f"done {net} {solver}/{steps} batch {batch}", file=sys.stderr, flush=True)
        sim = {"MPI off": _simulation_rate(args.sim_events, tmp), "MPI on": _simulation_rate(args.sim_events, tmp, True)}

    def num(v, fmt=".0f"):
        return "n/a" if v is None else format(v, fmt)

    print("events per CPU second, 1 thread; solver error vs RK4 x 64 (median / 99% of events); "
          "AUC per multiplicity vs the reference (the report's features; the two-sample test of zjets_floor.py)")
    print("| network | solver × steps | batch | torch | ORT | ORT C++ | SOFIE C++ | ORT / Pythia (MPI off) | "
          "err median / 99% | AUC 1 / 2 / 3 jets (report) | AUC 1 / 2 / 3 jets (two-sample) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---|---|")
    ref = sim["MPI off"]
    for r in rows:
        auc = " / ".join(f"{v:.3f}" for v in r["auc"].values()) or "n/a"
        auc2 = " / ".join(f"{v:.3f}" for v in r["auc_two_sample"].values()) or "n/a"
        config = f"{r['solver']} × {r['steps']}" if r["solver"] else "one pass"
        err = f"{r['err_median']:.1e} / {r['err_q99']:.1e}" if r["solver"] else "n/a"
        print(f"| {r['network']} | {config} | {r['batch']} | {num(r['torch'])} | {num(r['ort'])} | "
              f"{num(r['ort_cpp'])} | {num(r['sofie'])} | {num(ref and r['ort'] / ref, '.1f')}× | "
              f"{err} | {auc} | {auc2} |")
    for what, why in skipped.items():
        print(f"{what} skipped: {why}")
    for setting, rate in sim.items():
        print(f"Pythia 8 + FastJet (hepgen.simulate, cards/zjets.yaml, {setting}): "
              f"{num(rate)} selected events per CPU second" if rate else "Pythia 8 + FastJet: skipped (no pythia8mc)")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "simulation": sim, "skipped": skipped}, indent=2) + "\n")


if __name__ == "__main__":
    main()
