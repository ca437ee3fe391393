"""Cost of the detector stage next to Pythia's, on the same events, in one run.

Batch by batch, one Pythia instance with the card's settings generates Z+jets events
(``nextBatch``), hepgen's particle-level selection runs on them (``selection.select``: Z muons
from the history, FastJet jets, cuts), and the detector reconstructs the same batch
(``FlatRecord.from_batch`` + ``hepgen.detector.reconstruct``: smearing, efficiencies,
isolation, FastJet jets of the particle-flow candidates). Times are CPU seconds of this process
(one core), also wall seconds, per generated event.

    python benchmarks/detector.py [--events 10000] [--batch 1000] [--card cards/zjets.yaml]

Prints microseconds per event for each step and the ratio detector / (Pythia + selection), then
(outside the timed blocks, on the same events) the jet response: particle-level anti-kT jets of
the visible particles except the Z muons (pT > 30 GeV) matched to the nearest reco jet
(Delta R < 0.2), per |eta| range, and the reco - particle m_mumu of events with two reco muons.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import awkward as ak
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hepgen.cards import load_card  # noqa: E402
from hepgen.detector import detector_config, reconstruct  # noqa: E402
from hepgen.kinematics import MUON_MASS, delta_r, invariant_mass  # noqa: E402
from hepgen.simulate import pythia as P  # noqa: E402
from hepgen.simulate import selection as S  # noqa: E402
from simulate_throughput import Clock  # noqa: E402  (this folder: CPU and wall seconds of with-blocks)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--card", default=str(Path(__file__).resolve().parents[1] / "cards" / "zjets.yaml"))
    ap.add_argument("--events", type=int, default=10000, help="Pythia events")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=12345)
    args = ap.parse_args(argv)

    card = load_card(args.card)
    det = detector_config(card)
    pythia = P.make_pythia(P.settings(card), args.seed)
    rng = np.random.default_rng(args.seed)
    warm = pythia.nextBatch(50)  # imports, FastJet set-up
    S.select(warm, card.process)
    reconstruct(S.FlatRecord.from_batch(warm), det, card.process, rng)

    gen, select, flatten, reco = (Clock() for _ in range(4))
    rounds = max(1, args.events // args.batch)
    n_particles = n_jets = n_muons = 0
    responses, masses = [], []
    for _ in range(rounds):
        with gen:
            batch = pythia.nextBatch(args.batch)
        with select:
            S.select(batch, card.process)
        with flatten:
            rec = S.FlatRecord.from_batch(batch)
        with reco:
            out = reconstruct(rec, det, card.process, rng)
        responses.append(_jet_response(rec, out, card.process))
        masses.append(_mass_shift(rec, out))
        n_particles += int((rec.status > 0).sum())
        n_jets += len(out.jet_pt)
        n_muons += len(out.muon_pt)

    n = rounds * args.batch
    detector = Clock()
    detector.cpu, detector.wall = flatten.cpu + reco.cpu, flatten.wall + reco.wall
    pythia_path = Clock()
    pythia_path.cpu, pythia_path.wall = gen.cpu + select.cpu, gen.wall + select.wall
    print(f"card {args.card}: {n} Pythia events, batch {args.batch}, {n_particles / n:.0f} final-state "
          f"particles/event; reco: {n_muons / n:.2f} muons, {n_jets / n:.2f} jets per event")
    print(f"{'':44s}{'us/event (CPU)':>16s}{'us/event (wall)':>17s}")
    for label, clock in (("pythia8mc nextBatch", gen), ("hepgen selection (select)", select),
                         ("  = Pythia + selection", pythia_path),
                         ("FlatRecord.from_batch", flatten), ("detector reconstruct", reco),
                         ("  = detector (flatten + reconstruct)", detector)):
        print(f"{label:44s}{1e6 * clock.cpu / n:16.1f}{1e6 * clock.wall / n:17.1f}")
    print(f"detector / (Pythia + selection): {detector.cpu / pythia_path.cpu:.3f} (CPU), "
          f"{detector.wall / pythia_path.wall:.3f} (wall)")

    eta, matched, ratio = (np.concatenate(x) for x in zip(*responses))
    print("particle jets pT > 30 GeV -> nearest reco jet (Delta R < 0.2):")
    for lo, hi in ((0.0, 1.5), (1.5, 2.5), (2.5, 3.0), (3.0, 5.0)):
        sel = (np.abs(eta) >= lo) & (np.abs(eta) < hi)
        q16, q50, q84 = np.percentile(ratio[sel & matched], [16, 50, 84])
        print(f"  {lo:.1f} <= |eta| < {hi:.1f}: {sel.sum():5d} jets, matched {matched[sel].mean():.2f}, "
              f"median pT_reco/pT_part {q50:.3f}, (q84 - q16)/2 {(q84 - q16) / 2:.3f}")
    shift = np.concatenate(masses)
    q16, q50, q84 = np.percentile(shift, [16, 50, 84])
    print(f"m_mumu reco - particle (particle 81-101 GeV, {len(shift)} events): median {q50:+.3f} GeV, "
          f"(q84 - q16)/2 {(q84 - q16) / 2:.3f} GeV")


def _jet_response(rec, out, process):
    """|eta| of the particle jets with pT > 30 GeV, whether a reco jet lies within Delta R < 0.2,
    and pT_reco / pT_particle of the nearest one."""
    _, z_mu = S.z_decay_products(rec)
    (pt, eta, phi, _), counts = S.cluster_jets(rec, S.jet_inputs(rec, z_mu, process), process)
    part = ak.unflatten(np.stack([pt, eta, phi], axis=1), counts)
    part = part[part[..., 0] > 30.0]
    reco = ak.unflatten(np.stack([out.jet_pt, out.jet_eta, out.jet_phi], axis=1), out.jet_counts)
    p, r = ak.unzip(ak.cartesian([part, reco], axis=1, nested=True))
    dr = delta_r(p[..., 1], p[..., 2], r[..., 1], r[..., 2])
    best = ak.argmin(dr, axis=2, keepdims=True)
    dr_best = ak.to_numpy(ak.fill_none(ak.flatten(ak.flatten(dr[best], axis=2), axis=1), np.inf))
    pt_best = ak.to_numpy(ak.fill_none(ak.flatten(ak.flatten(r[..., 0][best], axis=2), axis=1), 0.0))
    flat = ak.to_numpy(ak.flatten(part, axis=1))
    return flat[:, 1], dr_best < 0.2, pt_best / flat[:, 0]


def _mass_shift(rec, out):
    """m_mumu(reco) - m_mumu(Z muons) of the events with two reco muons and 81 < m(Z muons) < 101."""
    _, z_mu = S.z_decay_products(rec)
    i = np.flatnonzero(z_mu)
    p = [np.bincount(rec.event[i], weights=x[i], minlength=rec.n_events) for x in (rec.e, rec.px, rec.py, rec.pz)]
    m_part = np.sqrt(np.maximum(p[0] ** 2 - p[1] ** 2 - p[2] ** 2 - p[3] ** 2, 0.0))
    two = out.muon_counts == 2
    first = (np.cumsum(out.muon_counts) - out.muon_counts)[two]
    mu = [(out.muon_pt[k], out.muon_eta[k], out.muon_phi[k], MUON_MASS) for k in (first, first + 1)]
    window = (m_part[two] > 81.0) & (m_part[two] < 101.0)
    return (invariant_mass(*mu) - m_part[two])[window]


if __name__ == "__main__":
    main()
