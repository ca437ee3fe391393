"""Throughput of the tt̄ simulation against bare Pythia, side by side in one run, both cards.

Per card, two Pythia instances with the card's settings and the same seed generate the same
events. Batch by batch, alternately, one is timed bare (``nextBatch`` only) and the other through
hepgen's path (``nextBatch`` + the unweighted check + the decay products from the record history
+ the GenPart sample, :func:`hepgen.simulate.run.select_batch`); the kept events are then written
to a ROOT file through hepgen's writer, and that time is added to hepgen's path. Interleaving
makes slow drifts of the machine's load hit both alike. CPU seconds of this process (one core).
A third instance times bare ``nextBatch`` with the settings a first try would use (beam remnants
and Pythia's event check on), to show what ``PartonLevel:Remnants = off`` buys.

    python benchmarks/ttbar_simulation.py [--events 20000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hepgen.cards import load_card  # noqa: E402
from hepgen.events import EventSample  # noqa: E402
from hepgen.io.root import RootWriter  # noqa: E402
from hepgen.simulate import pythia as P  # noqa: E402
from hepgen.simulate.run import select_batch  # noqa: E402
from hepgen.simulate.ttbar import ttbar_simulation  # noqa: E402

CARDS = Path(__file__).resolve().parents[1] / "cards"
WITH_REMNANTS = {"PartonLevel:Remnants = off": "PartonLevel:Remnants = on", "Check:event = off": "Check:event = on"}


class Clock:
    """Accumulates CPU seconds of ``with`` blocks."""

    def __init__(self):
        self.cpu = 0.0

    def __enter__(self):
        self._c = time.process_time()
        return self

    def __exit__(self, *exc):
        self.cpu += time.process_time() - self._c


def measure(card_path: Path, events: int, batch: int, seed: int) -> None:
    card = load_card(card_path)
    sim = ttbar_simulation(card)
    lines = list(sim.settings)
    bare_pythia, full_pythia = P.make_pythia(lines, seed), P.make_pythia(lines, seed)
    remnants_pythia = P.make_pythia([WITH_REMNANTS.get(s, s) for s in lines], seed)
    for p in (bare_pythia, full_pythia, remnants_pythia):
        p.nextBatch(50)  # warm-up
    select_batch(full_pythia.nextBatch(50), card.process, sim.select)
    bare_pythia.nextBatch(50)

    bare, full, remnants, write = Clock(), Clock(), Clock(), Clock()
    samples = []
    rounds = max(1, events // batch)
    for r in range(rounds):
        if r % 2 == 0:
            with bare:
                bare_pythia.nextBatch(batch)
        with full:
            sample, _ = select_batch(full_pythia.nextBatch(batch), card.process, sim.select)
            samples.append(sample)
        if r % 2 == 1:
            with bare:
                bare_pythia.nextBatch(batch)
        with remnants:
            remnants_pythia.nextBatch(batch)
    with tempfile.TemporaryDirectory() as tmp, full, write:
        with RootWriter(Path(tmp) / "bench.root", info={"benchmark": "1"}) as w:
            w.write(EventSample.concatenate(samples))
    n = rounds * batch
    kept = sum(len(s) for s in samples)
    print(f"{card_path.name}: {n} Pythia events per path, batch {batch}, {kept} kept")
    print(f"  {'bare pythia8mc nextBatch':44s}{n / bare.cpu:10.0f} events/s/core")
    print(f"  {'hepgen simulation (+ GenPart, ROOT write)':44s}{kept / full.cpu:10.0f} events/s/core"
          f"   ratio {bare.cpu / full.cpu:.2f} of bare (ROOT write {write.cpu / full.cpu:.0%} of it)")
    print(f"  {'bare nextBatch with remnants + event check':44s}{n / remnants.cpu:10.0f} events/s/core")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20000, help="Pythia events per path and card")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=12345)
    args = ap.parse_args(argv)
    for name in ("ttbar_onshell.yaml", "ttbar_offshell.yaml"):
        measure(CARDS / name, args.events, args.batch, args.seed)


if __name__ == "__main__":
    main()
