"""Physics formulas, in one place.

Pure functions on numpy arrays *or* torch tensors (the namespace follows the input), so the
same formula serves the event representation, the observables, and the network coordinates
that are exported to ONNX. Angles in radians, momenta and masses in GeV.
"""

from __future__ import annotations

import math
import sys

import numpy as np


def _ns(x):
    # torch is not imported here: a tensor can only exist once torch is imported, so look it
    # up lazily (keeps numpy-only users, e.g. the simulation workers, free of torch's start-up)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return torch
    return np


def wrap_phi(phi):
    """Map an angle to [-pi, pi) with one remainder (exact for any angle): the wrap for data."""
    xp = _ns(phi)
    return xp.remainder(phi + math.pi, 2 * math.pi) - math.pi


def wrap_angle(phi, turns: int = 6):
    """Map an angle to [-pi, pi] with ``turns`` rounds of compare + Where: the exportable wrap.

    The wrap inside exported graphs (ONNX, SOFIE): only Greater, Less, Where, Add, Sub; no
    Floor or Mod. Exact for |phi| < (2 turns + 1) pi (13 pi with the default); larger angles
    come back short of the interval by whole turns (their cos and sin are still right).
    Inside [-pi, pi] the angle is returned unchanged, so +pi stays +pi (wrap_phi gives -pi).
    """
    xp = _ns(phi)
    for _ in range(turns):
        phi = xp.where(phi > math.pi, phi - 2 * math.pi, phi)
        phi = xp.where(phi < -math.pi, phi + 2 * math.pi, phi)
    return phi


def delta_phi(phi1, phi2):
    """phi1 - phi2 wrapped to [-pi, pi)."""
    return wrap_phi(phi1 - phi2)


def delta_r(eta1, phi1, eta2, phi2):
    """Angular distance sqrt(deta^2 + dphi^2)."""
    xp = _ns(eta1)
    return xp.sqrt((eta1 - eta2) ** 2 + delta_phi(phi1, phi2) ** 2)


def ptetaphim_to_epxpypz(pt, eta, phi, m):
    """(pT, eta, phi, m) -> (E, px, py, pz)."""
    xp = _ns(pt)
    px = pt * xp.cos(phi)
    py = pt * xp.sin(phi)
    pz = pt * xp.sinh(eta)
    e = xp.sqrt(m**2 + (pt * xp.cosh(eta)) ** 2)
    return e, px, py, pz


def epxpypz_to_ptetaphim(e, px, py, pz):
    """(E, px, py, pz) -> (pT, eta, phi, m); m is sqrt(max(m^2, 0))."""
    xp = _ns(e)
    pt = xp.sqrt(px**2 + py**2)
    eta = xp.arcsinh(pz / xp.where(pt > 0, pt, 1e-300 if xp is np else 1e-30))
    phi = xp.arctan2(py, px)
    m2 = e**2 - px**2 - py**2 - pz**2
    m = xp.sqrt(xp.clip(m2, 0.0, None)) if xp is np else xp.sqrt(xp.clamp(m2, min=0.0))
    return pt, eta, phi, m


def invariant_mass(*objects):
    """Invariant mass of a system; each object is a (pt, eta, phi, m) tuple of arrays."""
    xp = _ns(objects[0][0])
    e = px = py = pz = 0.0
    for pt, eta, phi, m in objects:
        e_i, px_i, py_i, pz_i = ptetaphim_to_epxpypz(pt, eta, phi, m)
        e, px, py, pz = e + e_i, px + px_i, py + py_i, pz + pz_i
    m2 = e**2 - px**2 - py**2 - pz**2
    return xp.sqrt(xp.clip(m2, 0.0, None)) if xp is np else xp.sqrt(xp.clamp(m2, min=0.0))


def system_pt(*objects):
    """Transverse momentum of a system of (pt, eta, phi, m) objects."""
    xp = _ns(objects[0][0])
    px = py = 0.0
    for pt, _eta, phi, _m in objects:
        px = px + pt * xp.cos(phi)
        py = py + pt * xp.sin(phi)
    return xp.sqrt(px**2 + py**2)


def beam_fractions(e, pz, beam1, beam2):
    """Beam momentum fractions ``(x1, x2)`` a final state takes from two colliding beams.

    ``e``, ``pz``: the final state's total energy and longitudinal momentum (GeV, any shape);
    ``beam1``, ``beam2``: the energies (GeV) of the beams along +z and -z (sqrt_s / 2 each for
    a symmetric collider). With incoming partons without pT, the parton along +z carries
    ``x1 = (E + pz) / (2 beam1)`` and the one along -z ``x2 = (E - pz) / (2 beam2)`` of their
    beams. The beams can make the final state only when ``x1 <= 1`` and ``x2 <= 1``; NaN and
    inf pass through.
    """
    return (e + pz) / (2 * beam1), (e - pz) / (2 * beam2)


MUON_MASS = 0.1056583755  # GeV, PDG 2024
Z_MASS = 91.1876  # GeV
# Pythia 8.317 defaults (ParticleData after init with the tt̄ settings, hepgen.dilepton): the masses,
# and the widths Pythia recomputes from the open channels, which its Breit-Wigner line shapes use
TOP_MASS, TOP_WIDTH = 173.0, 1.3568  # GeV (the table width before init: 1.4)
W_MASS, W_WIDTH = 80.385, 2.0923  # GeV (the table width before init: 2.085)
