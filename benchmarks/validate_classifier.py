"""Classifier two-sample test: time per training, one torch thread vs the default thread count.

    python benchmarks/validate_classifier.py [--events 10000] [--epochs 20]

Runs the same cross-fitted test (3 multiplicities x 3 folds, one run) on two toy Z+jets samples
twice, side by side: with hepgen's setting (one thread per small-MLP training) and with torch's
default thread count, and prints the wall time of each. hepgen.validate.classifier always trains
with one thread; this script patches that to compare.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from zjets_toy import toy_zjets  # noqa: E402

from hepgen.validate import classifier  # noqa: E402


def run(n: int, epochs: int, threads: int | None) -> float:
    a, b = toy_zjets(n, 1), toy_zjets(n, 2)
    original = torch.set_num_threads
    if threads is None:  # keep torch's default: make the library's set_num_threads(1) a no-op
        torch.set_num_threads = lambda k: None
    try:
        t0 = time.perf_counter()
        classifier.two_sample_test(a, b, runs=1, epochs=epochs, seed=1)
        return time.perf_counter() - t0
    finally:
        torch.set_num_threads = original


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=20)
    args = ap.parse_args()
    default = torch.get_num_threads()
    t1 = run(args.events, args.epochs, 1)
    td = run(args.events, args.epochs, None)
    print(f"{args.events} vs {args.events} events, {args.epochs} epochs, 9 trainings")
    print(f"  1 thread (hepgen):          {t1:7.2f} s")
    print(f"  {default} threads (torch default): {td:7.2f} s   ratio {td / t1:.2f}")


if __name__ == "__main__":
    main()
