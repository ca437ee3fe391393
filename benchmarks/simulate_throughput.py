"""Throughput of `hepgen simulate` against bare Pythia, side by side in one run.

Two Pythia instances with the card's settings and the same seed generate the same events.
Batch by batch, alternately, one is timed bare (``nextBatch`` only) and the other through the
whole simulate path (``nextBatch`` + Z-muon history + FastJet clustering + selection); the
selected events are then written to a ROOT file through hepgen's writer, and that time is
added to the simulate path. Interleaving the two makes slow drifts of the machine's load hit
both alike. Times are CPU seconds of this process (one core), also wall seconds.

    python benchmarks/simulate_throughput.py [--events 10000] [--batch 1000] [--card cards/zjets.yaml]

Prints events/s per core for both paths and the overhead fraction (target: < 25%), plus a
breakdown and the clustering cost with every particle as jet input (jet_input_eta_max = inf).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hepgen.cards import load_card  # noqa: E402
from hepgen.events import EventSample  # noqa: E402
from hepgen.io.root import RootWriter  # noqa: E402
from hepgen.simulate import pythia as P  # noqa: E402
from hepgen.simulate import selection as S  # noqa: E402
from hepgen.simulate.run import select_batch  # noqa: E402


class Clock:
    """Accumulates CPU and wall seconds of ``with`` blocks."""

    def __init__(self):
        self.cpu = 0.0
        self.wall = 0.0

    def __enter__(self):
        self._c, self._w = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.cpu += time.process_time() - self._c
        self.wall += time.perf_counter() - self._w


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--card", default=str(Path(__file__).resolve().parents[1] / "cards" / "zjets.yaml"))
    ap.add_argument("--events", type=int, default=10000, help="Pythia events per path")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=12345)
    args = ap.parse_args(argv)

    card = load_card(args.card)
    cfg = card.process
    cfg_all = dataclasses.replace(cfg, jet_input_eta_max=float("inf"))
    lines = P.settings(card)
    bare_pythia = P.make_pythia(lines, args.seed)
    full_pythia = P.make_pythia(lines, args.seed)
    S.select(full_pythia.nextBatch(50), cfg)  # warm-up: imports, FastJet set-up
    bare_pythia.nextBatch(50)

    bare, full, gen, history, cluster, cluster_all, write = (Clock() for _ in range(7))
    samples, n_kept = [], 0
    rounds = max(1, args.events // args.batch)
    for r in range(rounds):
        if r % 2 == 0:  # alternate which path goes first
            with bare:
                bare_pythia.nextBatch(args.batch)
        with full:
            with gen:
                batch = full_pythia.nextBatch(args.batch)
            sample, flags = select_batch(batch, cfg, S.select)
            samples.append(sample)
            n_kept += len(sample)
        if r % 2 == 1:
            with bare:
                bare_pythia.nextBatch(args.batch)
        # breakdown (outside the timed path, on the same batch)
        with history:
            rec = S.FlatRecord.from_batch(batch)
            products, _ = S.z_decay_products(rec)
        with cluster:
            S.cluster_jets(rec, S.jet_inputs(rec, products, cfg), cfg)
        with cluster_all:
            S.cluster_jets(rec, S.jet_inputs(rec, products, cfg_all), cfg_all)

    with tempfile.TemporaryDirectory() as tmp, full, write:  # as hepgen.simulate.run does
        with RootWriter(Path(tmp) / "bench.root", info={"benchmark": "1"}) as w:
            w.write(EventSample.concatenate(samples))

    n = rounds * args.batch
    sel_cpu = full.cpu - gen.cpu - write.cpu
    print(f"card {args.card}: {n} Pythia events per path, batch {args.batch}, "
          f"{n_kept} selected ({n_kept / n:.1%})")
    print(f"{'':34s}{'events/s/core (CPU)':>22s}{'events/s (wall)':>18s}")
    print(f"{'bare pythia8mc nextBatch':34s}{n / bare.cpu:22.0f}{n / bare.wall:18.0f}")
    print(f"{'hepgen simulate path':34s}{n / full.cpu:22.0f}{n / full.wall:18.0f}")
    print(f"{'  selected events of it':34s}{n_kept / full.cpu:22.0f}{n_kept / full.wall:18.0f}")
    print(f"overhead on top of bare Pythia: {full.cpu / bare.cpu - 1:.1%} (CPU), "
          f"{full.wall / bare.wall - 1:.1%} (wall); target < 25%")
    # both paths generate the same events, so their Pythia time differs only by the machine's
    # noise (other jobs, caches); the extra work over the Pythia time of the same path is
    # the estimate that noise affects least
    print(f"  extra work / Pythia work in the simulate path: {(full.cpu - gen.cpu) / gen.cpu:.1%} (CPU)")
    print("breakdown, as a fraction of bare Pythia CPU time:")
    print(f"  Pythia in the simulate path       {gen.cpu / bare.cpu:7.1%}")
    print(f"  selection (all steps)             {sel_cpu / bare.cpu:7.1%}")
    print(f"    of which record + Z history     {history.cpu / bare.cpu:7.1%}")
    print(f"    of which FastJet (|eta| < {cfg.jet_input_eta_max:g})    {cluster.cpu / bare.cpu:7.1%}")
    print(f"  writing ROOT                      {write.cpu / bare.cpu:7.1%}")
    print(f"  (FastJet with every particle      {cluster_all.cpu / bare.cpu:7.1%}: "
          f"overhead would be {(full.cpu - cluster.cpu + cluster_all.cpu) / bare.cpu - 1:.1%})")


if __name__ == "__main__":
    main()
