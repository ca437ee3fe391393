"""Anti-kT jets of flat per-particle arrays: the one FastJet call of hepgen.

Particle-level jets (:func:`hepgen.simulate.selection.cluster_jets`) and detector-level jets
(:func:`hepgen.detector.reconstruct`, from smeared particle-flow candidates) both cluster here,
so the two levels differ only in their inputs. Input: flat arrays [P] of the particles of a
batch of ``n_events`` events, grouped by event in ascending event order (``event`` [P] the
event index), four-momenta in GeV. FastJet's multi-event awkward interface clusters the whole
batch in C++ (it wants the energy field named ``E``).

Also here: the awkward helpers both levels use to go between flat arrays and ``[N, var]``
records without per-field copies (:func:`jagged`, :func:`field_reader`).
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from .kinematics import epxpypz_to_ptetaphim

_JETDEFS: dict[float, object] = {}


def jagged(values: dict[str, np.ndarray], counts: np.ndarray, record: str | None = None) -> ak.Array:
    """``[N, var]`` records from flat field arrays [sum(counts)], built from the buffers.

    With ``record="Momentum4D"`` this is exactly what :func:`hepgen.events.make_collection`
    builds (tested), without its per-field ``ak.unflatten`` (a few % of Pythia's time here).
    """
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    content = ak.contents.RecordArray(
        [ak.contents.NumpyArray(np.ascontiguousarray(v)) for v in values.values()], list(values),
        length=int(offsets[-1]), parameters={"__record__": record} if record else None,
    )
    return ak.Array(ak.contents.ListOffsetArray(ak.index.Index64(offsets), content))


def field_reader(prt: ak.Array):
    """A function (field path) -> flat numpy array of a ``[N, var]`` record field.

    Reads the buffers of a list-offset array of plain records (Pythia's layout, FastJet's
    jets) without copying through awkward; any other layout goes the general way
    (``ak.flatten``).
    """
    layout = prt.layout
    if isinstance(layout, ak.contents.ListOffsetArray):
        offsets = np.asarray(layout.offsets)
        lo, hi = int(offsets[0]), int(offsets[-1])

        def get(*path):
            node = layout.content
            for name in path:
                if not isinstance(node, ak.contents.RecordArray):
                    break
                node = node.content(name)
            else:
                if isinstance(node, ak.contents.NumpyArray) and node.data.ndim == 1:
                    data = np.asarray(node.data)[lo:hi]
                    return data.astype(np.int64) if data.dtype.kind == "i" else data
            return _generic(*path)
    else:
        get = None

    def _generic(*path):
        x = prt
        for name in path:
            x = x[name]
        data = ak.to_numpy(ak.flatten(x, axis=1))
        return data.astype(np.int64) if data.dtype.kind == "i" else data

    return get or _generic


def _jet_definition(r: float):
    import fastjet

    if r not in _JETDEFS:
        fastjet._swig.ClusterSequence.set_fastjet_banner_stream(None)  # no banner on stdout
        _JETDEFS[r] = fastjet.JetDefinition(fastjet.antikt_algorithm, r)
    return _JETDEFS[r]


def cluster(event: np.ndarray, px: np.ndarray, py: np.ndarray, pz: np.ndarray, e: np.ndarray,
            n_events: int, r: float, pt_min: float):
    """Anti-kT jets (radius ``r``) with pT > ``pt_min`` of the particles [P] of ``n_events`` events.

    ``event`` [P] must be non-decreasing (particles grouped by event). Returns flat jet arrays
    (pt, eta, phi, mass), float64 [J], in FastJet's order inside each event, and counts [N].
    Events whose scalar sum of input pT is below ``pt_min`` cannot have such a jet (a jet's pT
    is at most the scalar sum of its constituents' pT), so they are not clustered: an exact
    shortcut, not an approximation.
    """
    import fastjet

    ht = np.bincount(event, weights=np.sqrt(px * px + py * py), minlength=n_events)
    busy = ht >= pt_min
    sel = busy[event]
    counts_in = np.bincount(event[sel], minlength=n_events)[busy]
    counts = np.zeros(n_events, dtype=np.int64)
    if len(counts_in) == 0:
        empty = np.zeros(0)
        return (empty, empty, empty, empty), counts
    particles = jagged({"px": px[sel], "py": py[sel], "pz": pz[sel], "E": e[sel]}, counts_in)
    jets = fastjet.ClusterSequence(particles, _jet_definition(r)).inclusive_jets(min_pt=pt_min)
    counts[busy] = ak.to_numpy(ak.num(jets, axis=1))
    get = field_reader(jets)
    return epxpypz_to_ptetaphim(get("E"), get("px"), get("py"), get("pz")), counts
