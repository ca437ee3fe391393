"""Named physics observables, defined once.

Each observable has a name (``pt_j1``, ``m_mumu``, ``dR_j1j2``, ...), a LaTeX label and a
unit, and is computed from an :class:`~hepgen.events.EventSample` as a float64 ``[N]``
array; NaN where the event lacks the object (e.g. ``pt_j3`` in a 1-jet event). Plots,
classifier features, precision tables and writers all use these names.

Object references: ``mu1, mu2`` (muons by pT), ``j1, j2, j3`` (jets by pT). The dileptonic
tt̄ observables (``m_t``, ``dm_Wp``, ``dR_b_lp``, ...) are defined in :mod:`hepgen.observables_ttbar`
and served here by the same :func:`get`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from . import kinematics as kin
from . import observables_ttbar
from .errors import HepgenError
from .events import EventSample

_OBJ = {"mu": ("Muon", r"\mu"), "j": ("Jet", "j")}
_OBJ_RE = r"(mu|j)(\d)"


@dataclass(frozen=True)
class Observable:
    name: str
    label: str  # LaTeX, without unit
    unit: str  # "GeV" or "" (dimensionless)
    compute: Callable[[EventSample], np.ndarray]

    @property
    def axis_label(self) -> str:
        return f"${self.label}$" + (f" [{self.unit}]" if self.unit else "")


def _object(sample: EventSample, ref: str):
    """(pt, eta, phi, m) float64 arrays [N] for e.g. 'j2'; NaN where absent."""
    m = re.fullmatch(_OBJ_RE, ref)
    coll, _ = _OBJ[m.group(1)]
    i = int(m.group(2)) - 1
    arr = sample.padded(coll, i + 1)[:, i, :]
    return arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3]


def _label(ref: str) -> str:
    m = re.fullmatch(_OBJ_RE, ref)
    return f"{_OBJ[m.group(1)][1]}_{m.group(2)}"


def _single(var: str, ref: str) -> Observable:
    idx = {"pt": 0, "eta": 1, "phi": 2, "m": 3}[var]
    tex = {"pt": "p_{T,%s}", "eta": r"\eta_{%s}", "phi": r"\phi_{%s}", "m": "m_{%s}"}[var]
    unit = "GeV" if var in ("pt", "m") else ""
    return Observable(
        f"{var}_{ref}", tex % _label(ref), unit, lambda s: _object(s, ref)[idx]
    )


def _pair(var: str, a: str, b: str) -> Observable:
    tex = {"dR": r"\Delta R_{%s}", "deta": r"\Delta\eta_{%s}", "dphi": r"\Delta\phi_{%s}", "m": "m_{%s}"}[var]
    unit = "GeV" if var == "m" else ""

    def compute(s: EventSample) -> np.ndarray:
        p, q = _object(s, a), _object(s, b)
        if var == "dR":
            return kin.delta_r(p[1], p[2], q[1], q[2])
        if var == "deta":
            return p[1] - q[1]
        if var == "dphi":
            return kin.delta_phi(p[2], q[2])
        return kin.invariant_mass(p, q)

    return Observable(f"{var}_{a}{b}", tex % (_label(a) + _label(b)), unit, compute)


def _dimuon(s: EventSample):
    return _object(s, "mu1"), _object(s, "mu2")


def _ht(s: EventSample) -> np.ndarray:
    import awkward as ak

    return ak.to_numpy(ak.sum(s["Jet"].pt, axis=1)).astype(np.float64)


def _pt_all(s: EventSample) -> np.ndarray:
    """|vector sum of pT| of both muons and all jets: the recoil the selected objects do not balance."""
    import awkward as ak

    px = ak.sum(s["Muon"].pt * np.cos(s["Muon"].phi), axis=1) + ak.sum(s["Jet"].pt * np.cos(s["Jet"].phi), axis=1)
    py = ak.sum(s["Muon"].pt * np.sin(s["Muon"].phi), axis=1) + ak.sum(s["Jet"].pt * np.sin(s["Jet"].phi), axis=1)
    return np.hypot(ak.to_numpy(px).astype(np.float64), ak.to_numpy(py).astype(np.float64))


_FIXED = {
    o.name: o
    for o in [
        Observable("m_mumu", r"m_{\mu\mu}", "GeV", lambda s: kin.invariant_mass(*_dimuon(s))),
        Observable("pt_mumu", r"p_{T,\mu\mu}", "GeV", lambda s: kin.system_pt(*_dimuon(s))),
        Observable("HT", r"H_T", "GeV", _ht),
        Observable("pt_all", r"p_{T,\mu\mu+\mathrm{jets}}", "GeV", _pt_all),
        Observable("n_jets", r"n_\mathrm{jets}", "", lambda s: s.n_jets.astype(np.float64)),
    ]
}


def get(name: str) -> Observable:
    """The observable called ``name``; unknown names are a :class:`HepgenError`."""
    if name in _FIXED:
        return _FIXED[name]
    ttbar = observables_ttbar.get(name)
    if ttbar is not None:
        return Observable(name, *ttbar)
    m = re.fullmatch(rf"(pt|eta|phi|m)_{_OBJ_RE}", name)
    if m:
        return _single(m.group(1), m.group(2) + m.group(3))
    m = re.fullmatch(rf"(dR|deta|dphi|m)_{_OBJ_RE}{_OBJ_RE}", name)
    if m:
        return _pair(m.group(1), m.group(2) + m.group(3), m.group(4) + m.group(5))
    raise HepgenError(
        f"unknown observable {name!r}: use m_mumu, pt_mumu, pt_all, HT, n_jets, "
        "pt|eta|phi|m_<obj>, dR|deta|dphi|m_<obj><obj> with <obj> = mu1, mu2, j1, j2, j3; "
        + observables_ttbar.HELP
    )


def compute(sample: EventSample, names: Iterable[str]) -> dict[str, np.ndarray]:
    """Named observables of ``sample`` as float64 ``[N]`` arrays (NaN where undefined)."""
    return {n: np.asarray(get(n).compute(sample), dtype=np.float64) for n in names}


def zjets_default(max_jets: int = 3) -> list[str]:
    """The standard Z+jets observable list: every object, the dimuon system, all pairs."""
    objs = ["mu1", "mu2"] + [f"j{i}" for i in range(1, max_jets + 1)]
    names = [f"{v}_{o}" for o in objs for v in ("pt", "eta", "phi")]
    names += [f"m_j{i}" for i in range(1, max_jets + 1)]
    names += ["m_mumu", "pt_mumu", "HT", "n_jets"]
    jets = [f"j{i}" for i in range(1, max_jets + 1)]
    for i, a in enumerate(jets):
        for b in jets[i + 1 :]:
            names += [f"dR_{a}{b}", f"deta_{a}{b}", f"dphi_{a}{b}"]
    for mu in ("mu1", "mu2"):
        names += [f"dR_{mu}{j}" for j in jets]
    return names
