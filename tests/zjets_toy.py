"""A fast toy Z -> mumu + jets sample for validation tests (smeared Gaussian kinematics).

Not physics: just events with the right structure (two muons near the Z peak, 1-3 jets above
20 GeV, pT-ordered) so that validation code can be tested in memory, without Pythia.
"""

from __future__ import annotations

import numpy as np

from hepgen.events import EventSample, make_collection


def toy_zjets(n: int, seed: int, jet_pt_scale: float = 1.0, fractions=(0.6, 0.3, 0.1)) -> EventSample:
    rng = np.random.default_rng(seed)
    nj = rng.choice([1, 2, 3], size=n, p=fractions)
    mu_pt = np.sort(rng.gamma(4.0, 12.0, size=(n, 2)) + 10.0, axis=1)[:, ::-1]
    mu_eta = np.clip(rng.normal(0, 1.2, size=(n, 2)), -2.4, 2.4)
    mu_phi = rng.uniform(-np.pi, np.pi, size=(n, 2))
    mu_m = np.full((n, 2), 0.1056583755)
    counts = nj
    tot = int(counts.sum())
    jpt = 20.0 + rng.exponential(25.0, size=tot) * jet_pt_scale
    jeta = np.clip(rng.normal(0, 1.5, size=tot), -2.5, 2.5)
    jphi = rng.uniform(-np.pi, np.pi, size=tot)
    jm = jpt * rng.uniform(0.05, 0.15, size=tot)
    # pT-order jets inside each event
    ev = np.repeat(np.arange(n), counts)
    order = np.lexsort((-jpt, ev))
    two = np.full(n, 2)
    muons = make_collection(mu_pt.ravel(), mu_eta.ravel(), mu_phi.ravel(), mu_m.ravel(), counts=two,
                            charge=np.tile([1, -1], n).astype(np.int32))
    jets = make_collection(jpt[order], jeta[order], jphi[order], jm[order], counts=counts)
    return EventSample.build({"Muon": muons, "Jet": jets}, info={"generator": "toy", "seed": str(seed)})
