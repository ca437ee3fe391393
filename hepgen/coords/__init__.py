"""Physics <-> network coordinates: chains of invertible transforms, float64 inside.

Each process has a coordinates module with ``dim``, ``cond_dim``, ``fit(data)``,
``encode(data) -> (x [N, D] float64, c [N, C] float64)``, ``active_columns()`` and an
exportable inverse module for generation (float32 buffers, elementary ops):

* :mod:`hepgen.coords.chain`: the generic pieces, :class:`Transform`, the named :class:`Chain`,
  :class:`LogShift`, :class:`Standardize`.
* :mod:`hepgen.coords.zjets`: Z -> mu mu + jets, :class:`ZJetsCoords` (p ``[N, 2 + J, 4]`` in
  (pT GeV, eta, phi rad, m GeV) <-> x ``[N, 5 + 4 J]``) and :class:`ZJetsInverse`
  (x, uniform azimuth noise -> p).
* :mod:`hepgen.coords.toys`: toys, :class:`ToyCoords` (standardisation only) and
  :class:`ToyInverse` (x -> data).

The exportable angle wrap is :func:`hepgen.kinematics.wrap_angle`.
"""

from ..kinematics import wrap_angle
from .azimuth import RelativeAzimuth, pair_gap
from .chain import Chain, LogShift, Standardize, Transform
from .dimuon import DimuonMass
from .toys import ToyCoords, ToyInverse
from .zjets import ZJetsCoords, ZJetsInverse

__all__ = [
    "Chain", "DimuonMass", "LogShift", "RelativeAzimuth", "Standardize", "ToyCoords", "ToyInverse",
    "Transform", "ZJetsCoords", "ZJetsInverse", "pair_gap", "wrap_angle",
]
