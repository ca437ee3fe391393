"""Named observables of dileptonic tt̄, from the truth assignment of the six decay products.

Every observable here reads the six particles through :func:`hepgen.dilepton.assign` (by PDG id,
from any collections of the sample, so a hepgen GenPart file and an LHE file of any generator
give the same numbers) and returns float64 ``[N]``. :mod:`hepgen.observables` serves them by
name next to the Z+jets ones.

Particles: ``b``, ``lp`` (l+), ``nu``, ``bbar``, ``lm`` (l-), ``nubar``. Systems: ``t`` (b l+ nu),
``tbar`` (bbar l- nubar), ``Wp`` (l+ nu), ``Wm`` (l- nubar), ``tt`` (all six), ``blp`` (b l+),
``bbarlm`` (bbar l-). Names:

* ``pt_<particle>``, ``eta_<particle>``, ``phi_<particle>``;
* ``m_<system>``, ``pt_<system>``, ``eta_<system>``;
* ``dm_t``, ``dm_tbar``, ``dm_Wp``, ``dm_Wm``: the signed mass offset from the pole in widths,
  ``(m - M) / Gamma`` with Pythia's M and Gamma (:data:`hepgen.kinematics.TOP_MASS` ...): the
  tails of the line shapes on one scale;
* ``bw_t``, ``bw_tbar``, ``bw_Wp``, ``bw_Wm``: ``arctan(dm)``, the line shape's own coordinate:
  uniform in (-pi/2, pi/2) for a Breit-Wigner (Cauchy) mass, 0 on the pole. Bounded, so a
  classifier resolves the peak and the tails alike (standardised masses squeeze the peak, as
  the Cauchy tails inflate the spread);
* ``dR_<a>_<b>``, ``deta_<a>_<b>``, ``dphi_<a>_<b>`` for two particles.
"""

from __future__ import annotations

import re
from typing import Callable

import numpy as np

from . import dilepton
from . import kinematics as kin
from .events import EventSample

PARTICLES = {"b": "b", "lp": r"\ell^+", "nu": r"\nu", "bbar": r"\bar{b}", "lm": r"\ell^-", "nubar": r"\bar{\nu}"}
_INDEX = {name: i for i, name in enumerate(PARTICLES)}  # the order of dilepton.ROLES
SYSTEMS = {
    "t": ((0, 1, 2), "t"),
    "tbar": ((3, 4, 5), r"\bar{t}"),
    "Wp": ((1, 2), "W^+"),
    "Wm": ((4, 5), "W^-"),
    "tt": ((0, 1, 2, 3, 4, 5), r"t\bar{t}"),
    "blp": ((0, 1), r"b\ell^+"),
    "bbarlm": ((3, 4), r"\bar{b}\ell^-"),
}
POLES = {  # system: (pole mass, width) in GeV
    "t": (kin.TOP_MASS, kin.TOP_WIDTH),
    "tbar": (kin.TOP_MASS, kin.TOP_WIDTH),
    "Wp": (kin.W_MASS, kin.W_WIDTH),
    "Wm": (kin.W_MASS, kin.W_WIDTH),
}
_P = "|".join(PARTICLES)

Definition = tuple[str, str, Callable[[EventSample], np.ndarray]]  # (LaTeX label, unit, compute)

_last: list = [None, None]  # the last sample assigned and its particles: observables share one assign


def particles(sample: EventSample) -> np.ndarray:
    """float64 ``[N, 6, 4]`` (pt, eta, phi, m) in :data:`hepgen.dilepton.ROLES` order."""
    if _last[0] is not sample:
        p, _ = dilepton.assign(sample)
        _last[:] = [sample, p]
    return _last[1]


def _objects(sample: EventSample, idx) -> list[tuple]:
    p = particles(sample)
    return [tuple(p[:, i, k] for k in range(4)) for i in idx]


def _system_four_vector(sample: EventSample, idx) -> tuple:
    """The summed (pt, eta, phi, m) of the particles ``idx``."""
    e = px = py = pz = 0.0
    for obj in _objects(sample, idx):
        ei, xi, yi, zi = kin.ptetaphim_to_epxpypz(*obj)
        e, px, py, pz = e + ei, px + xi, py + yi, pz + zi
    return kin.epxpypz_to_ptetaphim(e, px, py, pz)


def _single(var: str, part: str) -> Definition:
    k = {"pt": 0, "eta": 1, "phi": 2}[var]
    tex = {"pt": "p_{T,%s}", "eta": r"\eta_{%s}", "phi": r"\phi_{%s}"}[var] % PARTICLES[part]
    return tex, "GeV" if var == "pt" else "", lambda s: particles(s)[:, _INDEX[part], k].copy()


def _system(var: str, system: str) -> Definition:
    idx, tex = SYSTEMS[system]
    if var == "m":
        return f"m_{{{tex}}}", "GeV", lambda s: kin.invariant_mass(*_objects(s, idx))
    if var == "pt":
        return f"p_{{T,{tex}}}", "GeV", lambda s: kin.system_pt(*_objects(s, idx))
    return rf"\eta_{{{tex}}}", "", lambda s: _system_four_vector(s, idx)[1]


def _offset(system: str) -> Definition:
    idx, tex = SYSTEMS[system]
    mass, width = POLES[system]
    label = rf"(m_{{{tex}}} - {mass:g}\,\mathrm{{GeV}})/\Gamma_{{{tex}}}"
    return label, "", lambda s: (kin.invariant_mass(*_objects(s, idx)) - mass) / width


def _bw(system: str) -> Definition:
    label, _, offset = _offset(system)
    return rf"\arctan[{label}]", "", lambda s: np.arctan(offset(s))


def _pair(var: str, a: str, b: str) -> Definition:
    tex = {"dR": r"\Delta R_{%s%s}", "deta": r"\Delta\eta_{%s%s}", "dphi": r"\Delta\phi_{%s%s}"}[var]
    ia, ib = _INDEX[a], _INDEX[b]

    def compute(s: EventSample) -> np.ndarray:
        p = particles(s)
        if var == "dR":
            return kin.delta_r(p[:, ia, 1], p[:, ia, 2], p[:, ib, 1], p[:, ib, 2])
        if var == "deta":
            return p[:, ia, 1] - p[:, ib, 1]
        return kin.delta_phi(p[:, ia, 2], p[:, ib, 2])

    return tex % (PARTICLES[a], PARTICLES[b]), "", compute


def get(name: str) -> Definition | None:
    """(label, unit, compute) of the tt̄ observable ``name``, or None when it is none of them."""
    m = re.fullmatch(rf"(pt|eta|phi)_({_P})", name)
    if m:
        return _single(m.group(1), m.group(2))
    m = re.fullmatch(rf"(m|pt|eta)_({'|'.join(SYSTEMS)})", name)
    if m:
        return _system(m.group(1), m.group(2))
    m = re.fullmatch(rf"(dm|bw)_({'|'.join(POLES)})", name)
    if m:
        return (_offset if m.group(1) == "dm" else _bw)(m.group(2))
    m = re.fullmatch(rf"(dR|deta|dphi)_({_P})_({_P})", name)
    if m and m.group(2) != m.group(3):
        return _pair(m.group(1), m.group(2), m.group(3))
    return None


HELP = (f"tt̄: pt|eta|phi_<particle>, m|pt|eta_<system>, dm|bw_{'|'.join(POLES)}, dR|deta|dphi_<particle>_<particle> "
        f"with <particle> = {', '.join(PARTICLES)} and <system> = {', '.join(SYSTEMS)}")
