"""The one in-memory event representation.

An :class:`EventSample` holds N events as named collections of physics objects. Each
collection is an awkward array of shape ``[N, var]`` whose records carry ``pt`` (GeV),
``eta``, ``phi`` (rad) and ``mass`` (GeV), with ``vector``'s ``Momentum4D`` behaviour, plus
optional integer fields (``charge``, ``pdgId``) and, only where a file's (E, pz) cannot be
rebuilt from (pt, eta, phi, mass) (pT = 0 along the beam, E < 0, a record whose M column
disagrees with E), the float64 fields ``given_E`` and ``given_pz`` (GeV, the values as the
file gave them, NaN for the objects whose (E, pz) the kinematics reproduce; see
:data:`GIVEN_FIELDS` and ``docs/io.md``). Objects are ordered by decreasing pT inside
each event, except in the collections of :data:`RECORD_ORDER` (``GenPart``: a generator's
particles in a fixed order, as in NanoAOD; :mod:`hepgen.dilepton`), which readers keep as
stored (:func:`reader_order`). Collection names follow NanoAOD (``Muon``, ``Jet``), so writers map them 1:1 to
branches ``nMuon, Muon_pt, ...``.

Per-event weights are float64 ``[N]``; ``variations`` are named weight variations (LHE
``<wgt id=..>``: scale, PDF, ... ; id -> float64 ``[N]``, NaN where an event lacks the id);
``info`` is the provenance (hepgen version, card, seed, generator, cross section, beams, the
variations' groups and descriptions, Bayesian draw, ...), string to string, written into every
output file. ``scalars`` are named per-event values, bool or int64 ``[N]``: flags (``pass_gen``,
``pass_reco`` of a paired particle/reco sample: which level's selection the event passes) and
indices (``event``, ``sample`` of unfolded posterior samples).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import awkward as ak
import numpy as np
import vector

from .errors import InputError

vector.register_awkward()

KINEMATIC_FIELDS = ("pt", "eta", "phi", "mass")
INT_FIELDS = ("charge", "pdgId")
GIVEN_FIELDS = ("given_E", "given_pz")  # E and pz as a file gave them (NaN: rebuilt from pt, eta, m)
GENPART = "GenPart"  # generator-level particles in a fixed order (NanoAOD's name)
RECORD_ORDER = (GENPART,)  # collections in record order, never re-sorted by pT


def scalar_array(values) -> np.ndarray:
    """A per-event scalar as stored: bool stays bool, any integer becomes int64; other types are
    a ValueError (a float per event is a weight variation or a collection)."""
    values = np.asarray(values)
    if values.dtype == bool:
        return values
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    raise ValueError(f"a per-event scalar is bool or integer, not {values.dtype}")


def reader_order(name: str, coll: ak.Array) -> ak.Array:
    """A collection as readers return it: sorted by decreasing pT inside each event (stable),
    or as stored for a collection of :data:`RECORD_ORDER`."""
    if name in RECORD_ORDER:
        return coll
    return coll[ak.argsort(coll.pt, axis=1, ascending=False, stable=True)]


def make_collection(pt, eta, phi, mass, counts=None, **extra) -> ak.Array:
    """Build a ``Momentum4D`` collection.

    With ``counts`` (int ``[N]``), the field arrays are flat (``[sum(counts)]``) and are split
    into events; without, they are already ``[N, var]`` (awkward or a rectangular numpy
    ``[N, P]``).
    """
    fields = {"pt": pt, "eta": eta, "phi": phi, "mass": mass, **extra}
    if counts is not None:
        counts = np.asarray(counts, dtype=np.int64)
        fields = {k: ak.unflatten(np.asarray(v), counts) for k, v in fields.items()}
    else:
        fields = {k: ak.Array(v) if not isinstance(v, ak.Array) else v for k, v in fields.items()}
    return ak.zip(fields, with_name="Momentum4D")


@dataclass(frozen=True)
class EventSample:
    """N events: named object collections, weights and provenance.

    collections: name -> awkward ``[N, var]`` Momentum4D records (pT-ordered; GenPart in
    record order).
    weight: float64 ``[N]`` (1.0 for unweighted samples).
    info: provenance, str -> str.
    variations: weight variations, id -> float64 ``[N]`` (NaN: the event lacks that id).
    scalars: per-event values, name -> bool or int64 ``[N]`` (:func:`scalar_array`).
    """

    collections: Mapping[str, ak.Array]
    weight: np.ndarray
    info: Mapping[str, str] = field(default_factory=dict)
    variations: Mapping[str, np.ndarray] = field(default_factory=dict)
    scalars: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.weight)
        for name, coll in self.collections.items():
            if len(coll) != n:
                raise ValueError(f"collection {name!r} has {len(coll)} events, weights have {n}")
        for name, v in self.variations.items():
            if len(v) != n:
                raise ValueError(f"weight variation {name!r} has {len(v)} events, weights have {n}")
        for name, v in self.scalars.items():
            if len(v) != n:
                raise ValueError(f"scalar {name!r} has {len(v)} events, weights have {n}")

    @classmethod
    def build(cls, collections: Mapping[str, ak.Array], weight=None, info=None, variations=None,
              scalars=None) -> "EventSample":
        n = len(next(iter(collections.values()))) if collections else 0
        w = np.ones(n) if weight is None else np.asarray(weight, dtype=np.float64)
        var = {str(k): np.asarray(v, dtype=np.float64) for k, v in (variations or {}).items()}
        per_event = {str(k): scalar_array(v) for k, v in (scalars or {}).items()}
        return cls(dict(collections), w, dict(info or {}), var, per_event)

    def __len__(self) -> int:
        return len(self.weight)

    def __getitem__(self, name: str) -> ak.Array:
        try:
            return self.collections[name]
        except KeyError:
            raise InputError(
                f"the sample has no collection {name!r} (it has: {', '.join(self.collections) or 'none'})"
            ) from None

    def multiplicity(self, name: str) -> np.ndarray:
        """Objects per event in collection ``name``, int64 ``[N]``."""
        return ak.to_numpy(ak.num(self[name], axis=1)).astype(np.int64)

    @property
    def n_jets(self) -> np.ndarray:
        return self.multiplicity("Jet")

    def select(self, which) -> "EventSample":
        """Events by boolean mask or integer index array."""
        which = np.asarray(which)
        return replace(
            self,
            collections={k: v[which] for k, v in self.collections.items()},
            weight=self.weight[which],
            variations={k: v[which] for k, v in self.variations.items()},
            scalars={k: v[which] for k, v in self.scalars.items()},
        )

    def with_info(self, **info: str) -> "EventSample":
        return replace(self, info={**self.info, **{k: str(v) for k, v in info.items()}})

    @classmethod
    def concatenate(cls, samples: Sequence["EventSample"]) -> "EventSample":
        if not samples:
            raise ValueError("nothing to concatenate")
        names = list(samples[0].collections)
        ids = list(samples[0].variations)
        for s in samples[1:]:
            if list(s.variations) != ids:
                raise ValueError(f"weight variations {list(s.variations)} differ from the first sample's {ids}")
            if list(s.scalars) != list(samples[0].scalars):
                raise ValueError(f"scalars {list(s.scalars)} differ from the first sample's {list(samples[0].scalars)}")
        return cls(
            {k: ak.concatenate([s.collections[k] for s in samples]) for k in names},
            np.concatenate([s.weight for s in samples]),
            dict(samples[0].info),
            {k: np.concatenate([s.variations[k] for s in samples]) for k in ids},
            {k: np.concatenate([s.scalars[k] for s in samples]) for k in samples[0].scalars},
        )

    def padded(self, name: str, n: int, fields: Sequence[str] = KINEMATIC_FIELDS) -> np.ndarray:
        """Collection as float64 ``[N, n, len(fields)]``; missing objects are NaN."""
        coll = self[name]
        out = np.full((len(self), n, len(fields)), np.nan)
        for j, f in enumerate(fields):
            arr = ak.pad_none(coll[f], n, axis=1, clip=True)
            out[:, :, j] = ak.to_numpy(ak.fill_none(arr, np.nan)).astype(np.float64)
        return out

    def check_finite(self, source: str = "sample") -> None:
        """Raise :class:`InputError` naming the first collection/field with NaN or inf."""
        for name, coll in self.collections.items():
            for f in KINEMATIC_FIELDS:
                flat = ak.to_numpy(ak.flatten(coll[f], axis=None))
                bad = ~np.isfinite(flat)
                if bad.any():
                    raise InputError(
                        f"{source}: {int(bad.sum())} non-finite values in {name}_{f} (NaN or inf momenta)"
                    )
        if not np.isfinite(self.weight).all():
            raise InputError(f"{source}: non-finite event weights")
        for k, v in self.variations.items():
            if np.isinf(v).any():
                raise InputError(f"{source}: infinite values in weight variation {k!r}")
