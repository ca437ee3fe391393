"""Agreement of a trained Z+jets run with its held-out reference events.

    python benchmarks/zjets_agreement.py runs/<run> [--generated FILE] [--reference test|train|all|FILE]

Reads the generated sample and the held-out test split of the card's reference file
(``split.npz``), and prints: the m_mumu peak position of both (mode of a 0.25 GeV histogram in
[80, 100] GeV refined by a parabola through the three highest bins), the jet-multiplicity
fractions, and for pT, eta and Delta R observables the ratio generated / reference per bin over
the bulk (bins between the 5 % and 95 % reference quantiles, 20 bins): mean and max |ratio - 1|
and the mean statistical uncertainty of the ratio, chi2 / ndf of the two histograms, and the
deviation beyond statistics, sqrt(max(0, mean (r - 1)^2 - mean sigma_r^2)), so "agreement to a
few percent" can be read against the statistics. ``--reference FILE`` compares with an
independent sample (e.g. ``hepgen simulate cards/zjets.yaml -n 240000 --seed 12345 -o FILE``),
which is the honest held-out reference with enough events for percent-level bins. Then the last
two columns compare the run's own training events with that reference in the same bins: the
floor a generator that reproduced its training sample exactly would reach (the training sample's
statistical fluctuations; 48 000 events hold only ~9 000 two-jet events).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hepgen import observables  # noqa: E402
from hepgen.cards import load_card  # noqa: E402
from hepgen.io.root import read_events  # noqa: E402
from hepgen import processes  # noqa: E402

BULK = ["pt_mu1", "pt_mu2", "eta_mu1", "eta_mu2", "pt_j1", "eta_j1", "pt_j2", "eta_j2", "pt_mumu", "m_mumu",
        "HT", "dR_j1j2", "dR_mu1j1"]


def peak(m: np.ndarray) -> float:
    h, e = np.histogram(m[np.isfinite(m)], bins=80, range=(80, 100))
    i = int(np.argmax(h[1:-1])) + 1
    y0, y1, y2 = h[i - 1], h[i], h[i + 1]
    denom = y0 - 2 * y1 + y2
    shift = 0.5 * (y0 - y2) / denom if denom != 0 else 0.0
    c = 0.5 * (e[1:] + e[:-1])
    return float(c[i] + shift * (e[1] - e[0]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--generated", type=Path)
    ap.add_argument("--reference", default="test",
                    help="'test': the run's held-out test split (default); 'train': its training events (how "
                         "closely the generator learned what it saw); 'all': the whole training reference file "
                         "(incl. training events: more statistics, but not independent); or a ROOT file of "
                         "independent reference events")
    args = ap.parse_args()
    card = load_card(args.run / "card.yaml")
    gen = read_events(args.generated or args.run / "generated.root")
    if args.reference in ("test", "train", "all"):
        ref_all = processes.get(card.process.name).load_data(card, log=lambda m: None)
        ref = ref_all if args.reference == "all" else ref_all.select(np.load(args.run / "split.npz")[args.reference])
        otr = None
    else:
        ref = read_events(args.reference)
        train = processes.get(card.process.name).load_data(card, log=lambda m: None).select(np.load(args.run / "split.npz")["train"])
        otr = observables.compute(train, BULK)
    print(f"generated {len(gen)} events ({gen.info.get('dropped_dR_jj', '?')} dropped for Delta R_jj, "
          f"{gen.info.get('dropped_acceptance', '?')} for acceptance), {args.reference} reference {len(ref)} events")
    og, orf = observables.compute(gen, BULK), observables.compute(ref, BULK)
    pg, pr = peak(og["m_mumu"]), peak(orf["m_mumu"])
    print(f"m_mumu peak: generated {pg:.2f} GeV, reference {pr:.2f} GeV, difference {pg - pr:+.2f} GeV")
    for k in (1, 2, 3):
        fg, fr = np.mean(gen.n_jets == k), np.mean(ref.n_jets == k)
        print(f"n_jets = {k}: generated {fg:.4f}, reference {fr:.4f} +- {np.sqrt(fr * (1 - fr) / len(ref)):.4f}")
    print(f"{'observable':10s} {'mean|r-1|':>10s} {'max|r-1|':>9s} {'stat(ratio)':>11s} {'chi2/ndf':>9s} "
          f"{'beyond stat':>11s}" + (f" {'train:mean|r-1|':>15s} {'chi2/ndf':>8s}" if otr else "")
          + "  (20 bins, 5-95% quantiles)")
    for name in BULK:
        r = orf[name][np.isfinite(orf[name])]
        lo, hi = np.quantile(r, [0.05, 0.95])
        edges = np.linspace(lo, hi, 21)
        mean_dev, max_dev, stat, chi2, beyond = compare(og[name], r, edges)
        line = f"{name:10s} {mean_dev:10.3f} {max_dev:9.3f} {stat:11.3f} {chi2:9.2f} {beyond:11.3f}"
        if otr:
            t_dev, _, _, t_chi2, _ = compare(otr[name], r, edges)
            line += f" {t_dev:15.3f} {t_chi2:8.2f}"
        print(line)


def compare(values: np.ndarray, reference: np.ndarray, edges: np.ndarray) -> tuple[float, ...]:
    """(mean |r - 1|, max |r - 1|, mean sigma_r, chi2/ndf, beyond statistics) of the normalised
    histograms of ``values`` and ``reference`` in ``edges``."""
    hg, _ = np.histogram(values[np.isfinite(values)], edges)
    hr, _ = np.histogram(reference, edges)
    ng, nr = np.isfinite(values).sum(), len(reference)
    dg, dr = hg / ng, hr / nr
    ok = (hr > 0) & (hg > 0)
    ratio = dg[ok] / dr[ok]
    stat = ratio * np.sqrt(1 / hg[ok] + 1 / hr[ok])
    chi2 = np.sum((dg[ok] - dr[ok]) ** 2 / (hg[ok] / ng**2 + hr[ok] / nr**2)) / ok.sum()
    beyond = np.sqrt(max(0.0, np.mean((ratio - 1) ** 2) - np.mean(stat**2)))
    return (float(np.mean(np.abs(ratio - 1))), float(np.max(np.abs(ratio - 1))), float(np.mean(stat)),
            float(chi2), float(beyond))


if __name__ == "__main__":
    main()
