"""Event I/O throughput: ROOT (uproot TTree) and LHE, write and read, side by side.

    python benchmarks/io_throughput.py [--events 200000] [--lhe-events 20000]

Prints events/s for each, on one core, for a Z->mumu + 1-3 jets-like sample (2 muons with
charge, 1-3 jets). Files go to a temporary directory that is removed afterwards.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import awkward as ak
import numpy as np

from hepgen.events import EventSample, make_collection
from hepgen.io.lhe import read_lhe, write_lhe
from hepgen.io.root import read_events, write_events
from hepgen.kinematics import MUON_MASS


def sample(n: int, seed: int = 1) -> EventSample:
    rng = np.random.default_rng(seed)

    def coll(counts, mass, **extra):
        t = int(counts.sum())
        pt = ak.sort(ak.unflatten(20 + rng.exponential(30, t), counts), axis=1, ascending=False)
        return make_collection(
            pt, ak.unflatten(np.clip(rng.normal(0, 1.2, t), -3, 3), counts),
            ak.unflatten(rng.uniform(-np.pi, np.pi, t), counts), ak.unflatten(mass(t), counts),
            **{k: ak.unflatten(v, counts) for k, v in extra.items()},
        )

    q = rng.choice(np.array([-1, 1], np.int32), n)
    mu = coll(np.full(n, 2), lambda t: np.full(t, MUON_MASS), charge=np.stack([q, -q], 1).ravel())
    return EventSample.build({"Muon": mu, "Jet": coll(rng.integers(1, 4, n), lambda t: rng.uniform(2, 15, t))},
                             weight=rng.normal(1, 0.3, n))


def timed(fn, *args, **kw):
    t = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--lhe-events", type=int, default=20_000)
    a = ap.parse_args()
    big, small = sample(a.events), sample(a.lhe_events, seed=2)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        _, tw = timed(write_events, d / "ev.root", big)
        _, tr = timed(read_events, d / "ev.root")
        size = (d / "ev.root").stat().st_size
        _, lw = timed(write_lhe, d / "ev.lhe", small, weights={"v0": small.weight, "v1": small.weight})
        _, lr = timed(read_lhe, d / "ev.lhe")
        lsize = (d / "ev.lhe").stat().st_size
    print(f"{'format':<6} {'events':>8} {'write ev/s':>12} {'read ev/s':>12} {'bytes/event':>12}")
    print(f"{'ROOT':<6} {a.events:>8} {a.events / tw:>12.0f} {a.events / tr:>12.0f} {size / a.events:>12.1f}")
    print(f"{'LHE':<6} {a.lhe_events:>8} {a.lhe_events / lw:>12.0f} {a.lhe_events / lr:>12.0f} {lsize / a.lhe_events:>12.1f}")


if __name__ == "__main__":
    main()
