"""The detector's response formulas, in one place: efficiencies, resolutions, smearing, thresholds.

Pure numpy functions of flat arrays [P] (pT and E in GeV); the parametrisations are the
sections of :mod:`hepgen.detector.config`, the formulas are written out in docs/detector.md.
Random numbers come in as arguments (uniforms ``u`` in [0, 1), standard normals ``z``), so
every function is deterministic and the caller decides the order of the draws.

* |eta| regions: region i holds ``eta_regions[i-1] < |eta| <= eta_regions[i]`` (region 0 from
  0); :func:`region` is ``len(eta_regions)`` outside the acceptance.
* Efficiency tables: ``pt_edges[j] < pT <= pt_edges[j+1]`` is pT bin j (the last bin open
  above); 0 at or below the first edge and outside the regions (Delphes's ``(pt <= 0.1) * 0``
  and ``(abs(eta) > 2.5) * 0`` terms).
* Tracks: sigma(pT)/pT = sqrt(a^2 + (b pT)^2); the measured pT is Gaussian around the true pT,
  ``pT' = pT (1 + z sigma/pT)``, as Delphes's MomentumSmearing (``gRandom->Gaus(pt, sigma*pt)``);
  a track with pT' <= 0 is lost.
* Calorimeters: sigma(E) = s(eta) sqrt(a^2 E^2 + b^2 E + c^2), s = c0 + c2 (|eta| - eta0)^2; the
  measured energy is log-normal with mean E and standard deviation sigma(E), as Delphes's
  SimpleCalorimeter (``LogNormal(energy, sigma)``), and is kept when E' >= energy_min and
  E' >= significance_min sigma(E') (sigma at the measured energy, as Delphes).
"""

from __future__ import annotations

import numpy as np

from .config import CaloResolution, Efficiency, TrackResolution


def region(abs_eta: np.ndarray, eta_regions) -> np.ndarray:
    """The |eta| region of each particle [P] (int), ``len(eta_regions)`` beyond the last edge."""
    return np.searchsorted(np.asarray(eta_regions, dtype=np.float64), abs_eta, side="left")


def _per_region(values, reg: np.ndarray) -> np.ndarray:
    """``values[reg]`` with 0 outside the regions (reg == len(values))."""
    table = np.append(np.asarray(values, dtype=np.float64), 0.0)
    return table[reg]


def efficiency(eff: Efficiency, pt: np.ndarray, abs_eta: np.ndarray) -> np.ndarray:
    """The efficiency [P] of particles with transverse momentum ``pt`` and ``abs_eta``."""
    n_bins = len(eff.pt_edges)
    table = np.zeros((len(eff.eta_regions) + 1, n_bins + 1))  # extra row: outside; column 0: below
    table[:-1, 1:] = np.asarray(eff.efficiency, dtype=np.float64).reshape(len(eff.eta_regions), n_bins)
    col = np.searchsorted(np.asarray(eff.pt_edges, dtype=np.float64), pt, side="left")
    return table[region(abs_eta, eff.eta_regions), col]


def passes(eff: Efficiency, pt: np.ndarray, abs_eta: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Bool [P]: the particle is kept, ``u < efficiency`` (Delphes's Efficiency module)."""
    return u < efficiency(eff, pt, abs_eta)


def track_sigma(res: TrackResolution, pt: np.ndarray, abs_eta: np.ndarray) -> np.ndarray:
    """Relative resolution sigma(pT)/pT [P] (0 outside the regions)."""
    reg = region(abs_eta, res.eta_regions)
    a, b = _per_region(res.a, reg), _per_region(res.b, reg)
    return np.sqrt(a * a + (b * pt) ** 2)


def smear_pt(res: TrackResolution, pt: np.ndarray, abs_eta: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Measured track pT [P]: Gaussian, mean pT, width sigma(pT) (<= 0: the track is lost)."""
    return pt * (1.0 + z * track_sigma(res, pt, abs_eta))


def calo_sigma(calo: CaloResolution, e: np.ndarray, abs_eta: np.ndarray) -> np.ndarray:
    """Absolute energy resolution sigma(E) [P] in GeV (0 outside the regions)."""
    reg = region(abs_eta, calo.eta_regions)
    shape = np.vstack([np.asarray(calo.shape, dtype=np.float64).reshape(-1, 3), np.zeros(3)])[reg]
    d = np.where(reg < len(calo.eta_regions), abs_eta - shape[:, 2], 0.0)  # |eta| = inf outside
    s = shape[:, 0] + shape[:, 1] * d * d
    a, b, c = (_per_region(getattr(calo, k), reg) for k in ("a", "b", "c"))
    return s * np.sqrt(a * a * e * e + b * b * e + c * c)


def smear_energy(calo: CaloResolution, e: np.ndarray, abs_eta: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Measured energy [P]: log-normal with mean E and standard deviation sigma(E).

    ``E' = E exp(w z - w^2 / 2)`` with ``w^2 = log(1 + sigma^2 / E^2)``: exactly E when sigma = 0.
    """
    sigma = calo_sigma(calo, e, abs_eta)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.sqrt(np.log1p(np.where(e > 0, (sigma / e) ** 2, 0.0)))
    return np.where(e > 0, e * np.exp(w * z - 0.5 * w * w), 0.0)


def calo_seen(calo: CaloResolution, e_meas: np.ndarray, abs_eta: np.ndarray) -> np.ndarray:
    """Bool [P]: inside the calorimeter's regions and the measured energy passes its
    thresholds, E' >= energy_min and E' >= significance_min sigma(E')."""
    inside = region(abs_eta, calo.eta_regions) < len(calo.eta_regions)
    sigma = calo_sigma(calo, e_meas, abs_eta)
    return inside & (e_meas > 0) & (e_meas >= calo.energy_min) & (e_meas >= calo.significance_min * sigma)
