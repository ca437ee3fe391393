"""HepMC3 reading and writing speed next to Pythia's own, on the card's Z+jets events.

Pythia generates ``--events`` hadron-level events (timed), :func:`hepgen.io.hepmc.write_hepmc`
writes them (timed), :func:`hepgen.io.hepmc.read_hepmc` reads them back (timed) and the Z+jets
selection runs on the read-back batches (timed; the same events as on Pythia's). Times are CPU
seconds of this process (one core), so a busy machine does not change them much.

    python benchmarks/hepmc_io.py [--events 4000] [--batch 1000] [--card cards/zjets.yaml] [--gzip]

Prints events/s per core for each step, the file size per event and the particles per event.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import awkward as ak  # noqa: E402
import numpy as np  # noqa: E402

from hepgen.cards import load_card  # noqa: E402
from hepgen.io.hepmc import read_hepmc, write_hepmc  # noqa: E402
from hepgen.simulate import pythia as P  # noqa: E402
from hepgen.simulate import selection as S  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--card", default="cards/zjets.yaml")
    ap.add_argument("--gzip", action="store_true", help="write and read a .hepmc.gz")
    args = ap.parse_args()
    card = load_card(args.card)
    pythia = P.make_pythia(P.settings(card), 1)

    t = time.process_time()
    batches = [pythia.nextBatch(args.batch) for _ in range(args.events // args.batch)]
    generate = time.process_time() - t
    n = sum(len(b) for b in batches)
    particles = np.mean(np.concatenate([ak.to_numpy(ak.num(b["prt"])) for b in batches]))

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("z.hepmc.gz" if args.gzip else "z.hepmc")
        t = time.process_time()
        write_hepmc(path, batches)
        write = time.process_time() - t
        size = path.stat().st_size
        t = time.process_time()
        back = list(read_hepmc(path, args.batch))
        read = time.process_time() - t
    t = time.process_time()
    kept = [S.select(b, card.process)[0] for b in back]
    select = time.process_time() - t
    same = sum(len(k) for k in kept) == sum(len(S.select(b, card.process)[0]) for b in batches)

    print(f"{n} Pythia Z+jets events, {particles:.0f} particles each (hadron level), CPU seconds of one core:")
    for name, seconds in (("Pythia nextBatch", generate), ("write_hepmc", write), ("read_hepmc", read),
                          ("select (read-back)", select)):
        print(f"  {name:20s} {n / seconds:8.0f} events/s")
    print(f"  file: {size / n / 1024:.1f} kB/event ({path.name}); selected events the same as Pythia's: {same}")


if __name__ == "__main__":
    main()
