"""A small synthetic Z -> mu mu + jets sample in memory (for tests; not physics-accurate).

Muons from a Z of mass ~91 GeV with a Breit-Wigner width, recoiling against 1-3 jets with
pT > 20 GeV; jets pT-ordered, Delta R_jj > 0.4 is NOT enforced (so tests can count it).
"""

from __future__ import annotations

import numpy as np

from hepgen.events import EventSample, make_collection


def zjets_like(n: int, seed: int = 0, fractions=(0.6, 0.3, 0.1)) -> EventSample:
    rng = np.random.default_rng(seed)
    nj = rng.choice([1, 2, 3], size=n, p=fractions)
    mz = 91.19 + 2.5 * np.tan(np.pi * (rng.uniform(size=n) - 0.5)).clip(-8, 8) / 2
    ptz = 20 + rng.exponential(25, size=n)
    phiz = rng.uniform(-np.pi, np.pi, size=n)
    # muons: back to back in the Z frame, crude boost
    pt1 = mz / 2 + 0.5 * ptz * rng.uniform(0.3, 1, size=n)
    pt2 = np.maximum(mz / 2 - 0.2 * ptz * rng.uniform(0, 1, size=n), 5.0)
    eta1, eta2 = rng.normal(0, 1.2, n), rng.normal(0, 1.2, n)
    phi1 = phiz + rng.normal(0, 0.4, n)
    phi2 = phi1 + np.pi + rng.normal(0, 0.3, n)
    wrap = lambda a: np.remainder(a + np.pi, 2 * np.pi) - np.pi
    mpt = np.stack([pt1, pt2], 1)
    order = np.argsort(-mpt, axis=1)
    take = lambda a: np.take_along_axis(a, order, 1)
    flat = lambda a: np.asarray(a).reshape(-1)
    mu = make_collection(flat(take(mpt)), flat(take(np.stack([eta1, eta2], 1))),
                         flat(wrap(take(np.stack([phi1, phi2], 1)))), np.full(2 * n, 0.1056583755),
                         counts=np.full(n, 2), charge=flat(take(np.stack([np.ones(n), -np.ones(n)], 1))).astype(np.int32))
    jpt, jeta, jphi, jm, counts = [], [], [], [], []
    for i in range(n):
        k = nj[i]
        pts = np.sort(20 + rng.exponential(30, size=k))[::-1]
        pts[0] = max(pts[0], ptz[i] * 0.7)
        jpt += list(pts)
        jeta += list(rng.normal(0, 2, k))
        jphi += list(wrap(phiz[i] + np.pi + rng.normal(0, 1, k)))
        jm += list(np.abs(rng.normal(0.12, 0.05, k)) * pts + 0.5)
        counts.append(k)
    jets = make_collection(np.array(jpt), np.array(jeta), np.array(jphi), np.array(jm), counts=np.array(counts))
    return EventSample.build({"Muon": mu, "Jet": jets}, info={"source": "tests.zjets_like"})
