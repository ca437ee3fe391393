"""The mixture sample of an ensemble's (or a Bayesian run's) draws, for benchmarks/zjets_floor.py.

    hepgen generate RUN -n 200000 --bayes-samples K -o RUN/gen200k.root
    python benchmarks/ensemble_mixture.py RUN --draws K [--events 95000] [--stem gen200k]
    python benchmarks/zjets_floor.py RUN --seeds 1 2

An ensemble has no weight mean: its predictive distribution is the mixture of its members. The
K draw files share their noise rows, so for generation seed s this takes ``events / K`` events of
draw k from rows ``(s - 1) * events + k * events / K`` on: every noise row is used once, and
seeds 1 and 2 do not overlap. Writes ``RUN/generated.seed1.root`` and ``RUN/generated.seed2.root``,
the files benchmarks/zjets_floor.py scores in place of generating (it refuses nothing: existing
files are replaced).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hepgen.events import EventSample  # noqa: E402
from hepgen.io import read_sample, write_sample  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--draws", type=int, required=True, help="K: the files <stem>.draw0 .. draw<K-1>")
    ap.add_argument("--events", type=int, default=95000, help="events per mixture sample (a multiple of K)")
    ap.add_argument("--stem", default="gen200k")
    args = ap.parse_args()
    k, n = args.draws, args.events
    if n % k or n < k:
        sys.exit(f"--events {n} must be a positive multiple of --draws {k}")
    draws = [read_sample(args.run / f"{args.stem}.draw{d}.root") for d in range(k)]
    need = 2 * n
    short = [d for d, s in enumerate(draws) if len(s) < need]
    if short:
        sys.exit(f"draw {short[0]} holds {len(draws[short[0]])} events; two mixture samples of {n} need {need}")
    for seed in (1, 2):
        parts = [s.select(np.arange((seed - 1) * n + d * (n // k), (seed - 1) * n + (d + 1) * (n // k)))
                 for d, s in enumerate(draws)]
        path = write_sample(args.run / f"generated.seed{seed}.root", EventSample.concatenate(parts), force=True)
        print(f"wrote {path}: {n} events, {n // k} from each of {k} draws")


if __name__ == "__main__":
    main()
