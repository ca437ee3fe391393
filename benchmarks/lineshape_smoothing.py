"""The dimuon line shape a Z+jets run draws its masses from (``process.settings.mass_sampling:
marginal``, hepgen/coords/marginal.py): smoothed (the default) against the training histogram,
scored as benchmarks/zjets_floor.py scores generated events, without a network.

    python benchmarks/lineshape_smoothing.py [--training data/zjets_reference.root]
        [--holdout data/zjets_holdout.root] [--splits 7 8 9] [--events 100000] [--seeds 8]

For each split seed, a random 80 % of the training file (the card's split fraction) is fitted as
``ZJetsCoords.fit`` fits it (the knots chosen per multiplicity are printed). ``--events`` masses
are then drawn from each table, the 1 / 2 / 3-jet shares as in the training sample, for ``--seeds``
generation seeds, and the m_mumu chi2/ndf against ``--holdout`` is taken in 20 bulk bins (the
5-95 % holdout quantiles, benchmarks/zjets_agreement.compare). A last column draws 3 000 000
masses: the chi2 then holds almost only the line shape's own error (the training sample's
fluctuations that survive the fit, and any bias), which generating more events cannot remove.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from zjets_agreement import compare  # noqa: E402

from hepgen import observables  # noqa: E402
from hepgen.coords.marginal import MassMarginal  # noqa: E402
from hepgen.io.root import read_events  # noqa: E402


def draw(table: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` masses (GeV) from one row of a table of log m."""
    u = np.random.default_rng(seed).random(n)
    return np.exp(np.interp(u, np.linspace(0.0, 1.0, len(table)), table))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--training", type=Path, default=Path("data/zjets_reference.root"))
    ap.add_argument("--holdout", type=Path, default=Path("data/zjets_holdout.root"))
    ap.add_argument("--splits", type=int, nargs="+", default=[7, 8, 9])
    ap.add_argument("--events", type=int, default=100000)
    ap.add_argument("--seeds", type=int, default=8)
    args = ap.parse_args()
    train, hold = read_events(args.training), read_events(args.holdout)
    m = observables.compute(train, ["m_mumu"])["m_mumu"]
    mh = observables.compute(hold, ["m_mumu"])["m_mumu"]
    print("| split | knots 1j / 2j / 3j | line shape | χ²/ndf m_μμ 1j / 2j / 3j (mean ± sd over seeds) | 3 M drawn |")
    print("|---|---|---|---|---|")
    for split in args.splits:
        sel = np.random.default_rng(split).random(len(m)) < 0.8
        mt, nt = m[sel], train.n_jets[sel]
        smooth = MassMarginal(3)
        smooth.fit(torch.from_numpy(np.log(mt)), nt, (1, 2, 3), np.ones(len(mt)), torch.from_numpy(mt))
        knots = " / ".join(str(int(np.isfinite(k).sum())) for k in smooth.knots.numpy())
        hist = MassMarginal(3)
        hist.load_state_dict(smooth.state_dict())
        hist.knots.fill_(float("nan"))  # the training histogram itself
        for name, marginal in (("smoothed", smooth), ("histogram", hist)):
            table, cells, big = marginal.table(seed=1), [], []
            for i, k in enumerate((1, 2, 3)):
                ref = mh[(hold.n_jets == k) & np.isfinite(mh)]
                edges = np.linspace(*np.quantile(ref, [0.05, 0.95]), 21)
                n = int(round(args.events * np.mean(nt == k)))
                chi2 = [compare(draw(table[i], n, 100 + s), ref, edges)[3] for s in range(args.seeds)]
                cells.append(f"{np.mean(chi2):.2f} ± {np.std(chi2):.2f}")
                big.append(f"{compare(draw(table[i], 3_000_000, 1), ref, edges)[3]:.2f}")
            print(f"| {split} | {knots} | {name} | {' / '.join(cells)} | {' / '.join(big)} |", flush=True)


if __name__ == "__main__":
    main()
