"""The HepMC vertices of Pythia's mother indices, for :mod:`hepgen.io.hepmc`'s writer.

A particle's production vertex is the end vertex of its ``mother1``, which is the vertex's
first incoming particle: a HepMC reader that takes each particle's first parent as its
``mother1`` gets the same chains back. A further mother (``mother2``; the whole
``mother1..mother2`` range for Pythia's string fragmentation and R-hadrons) joins that vertex
as another incoming particle where it does not end in a vertex of its own (a particle has one
end vertex). Particles are ordered so that every incoming particle precedes the particles of
its vertex, as the HepMC3 ASCII reader needs (Pythia's initial-state shower lists mothers
after their daughters), and ``mother1`` precedes the further mothers of its vertex: HepMC3
writes a vertex's incoming particles in the order of their ids. Everything is computed for a whole batch at once.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

SYSTEM_ID = 90  # Pythia's system entry, index 0 of every event; not a HepMC particle
FINAL = 1  # HepMC status of a final-state particle

_STRING = ((81, 86), (101, 106))  # Pythia statuses whose mother1..mother2 is a range (strings, R-hadrons)


def flat_fields(batch: ak.Array) -> dict[str, np.ndarray]:
    """The fields of a batch that the writer needs, as flat numpy arrays [P], and counts [N]."""
    prt = batch["prt"]
    get = lambda x: ak.to_numpy(ak.flatten(x, axis=1))  # noqa: E731
    fields = prt.fields
    out = {"counts": ak.to_numpy(ak.num(prt, axis=1)).astype(np.int64), "id": get(prt["id"]).astype(np.int32),
           "status": get(prt["status"]).astype(np.int32), "mother1": get(prt["mother1"]).astype(np.int64),
           "mother2": get(prt["mother2"]).astype(np.int64) if "mother2" in fields else None,
           "m": get(prt["m"]).astype(np.float64)}
    for name in ("px", "py", "pz", "e"):
        out[name] = get(prt["p"][name]).astype(np.float64)
    return out


def hepmc_status(status: np.ndarray) -> np.ndarray:
    """HepMC status codes [P] of Pythia status codes [P]: 1 final, 4 beam (-12), 2 decayed at
    hadron level (-81..-99), else the code without its sign."""
    decayed = (status <= -81) & (status >= -99)
    return np.where(status > 0, FINAL, np.where(status == -12, 4, np.where(decayed, 2, np.abs(status)))).astype(np.int32)


class EventGraph:
    """The HepMC vertices of one batch without its system entries (arrays over the P' particles).

    ``order`` [P']: the written order (every mother before its daughters, per event);
    ``parents`` [P', 2]: 1-based positions in that order of each particle's mother1 (both
    columns; 0 without), for ``GenEvent.from_hepevt``; ``extra`` [X, 2]: (mother1's, further
    mother's) positions of the vertices' further incoming particles; ``counts`` [N].
    """

    def __init__(self, f: dict[str, np.ndarray]):
        counts = f["counts"]
        n = len(counts)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        if n and (np.any(counts < 1) or np.any(f["id"][offsets[:-1]] != SYSTEM_ID)):
            raise ValueError("index 0 of every event must be the system entry (id 90)")
        event = np.repeat(np.arange(n), counts)
        keep = np.ones(len(event), dtype=bool)
        keep[offsets[:-1]] = False
        m1 = f["mother1"]
        m2 = f["mother2"] if f["mother2"] is not None else np.zeros_like(m1)
        if np.any((m1 < 0) | (m1 >= counts[event]) | (m2 < 0) | (m2 >= counts[event])):
            raise ValueError("a mother index outside its event")
        base = offsets[event]
        g1 = np.where(m1 > 0, base + m1, -1)  # global index of mother1, -1 for none

        # further incoming particles of the vertex of mother a: mother2, or a string's range
        status = f["status"]
        string = np.zeros(len(status), dtype=bool)
        for lo, hi in _STRING:
            string |= (np.abs(status) >= lo) & (np.abs(status) <= hi)
        sel = keep & (m1 > 0) & (m2 > 0) & (m2 != m1)
        rng = sel & string & (m2 > m1)
        two = sel & ~rng
        length = (m2 - m1)[rng]
        ea = np.concatenate([np.repeat(g1[rng], length), g1[two]])
        start = np.repeat(np.cumsum(length) - length, length)
        ek = np.concatenate([np.repeat(g1[rng], length) + 1 + np.arange(int(length.sum())) - start, (base + m2)[two]])
        key = np.zeros(len(event), dtype=bool)
        key[g1[g1 >= 0]] = True
        ok = ~key[ek] & (ek != ea) & keep[ek]  # a further mother must not end in a vertex of its own
        ea, ek = ea[ok], ek[ok]
        size = len(event) + 1
        pairs = np.unique(ek * size + ea)  # sorted by ek, then ea
        ek, ea = pairs // size, pairs % size
        _, first = np.unique(ek, return_index=True)  # one end vertex per particle: the first
        ek, ea = ek[first], ea[first]

        # depth: 1 + the deepest incoming particle of the production vertex. HepMC3 writes a
        # vertex's incoming particles in the order of their ids, so mother1 comes first and the
        # last further mother (Pythia's mother2) last: they get the least and the most depth.
        last = np.full(len(event), -1, dtype=np.int64)
        np.maximum.at(last, ea, ek)
        inner = ek != last[ea]
        depth = np.zeros(len(event), dtype=np.int64)
        has = g1 >= 0
        for _ in range(3 * int(counts.max(initial=1)) + 3):
            vertex = depth.copy()
            np.maximum.at(vertex, ea, depth[ek])
            new = np.where(has, vertex[np.maximum(g1, 0)] + 1, 0)
            new[ek] = np.maximum(new[ek], new[ea] + 1)  # ek: one end vertex each, so distinct
            before_last = new.copy()
            np.maximum.at(before_last, ea[inner], new[ek[inner]])
            new[ek[~inner]] = np.maximum(new[ek[~inner]], before_last[ea[~inner]] + 1)
            if np.array_equal(new, depth):
                break
            depth = new
        else:
            raise ValueError("the mother graph has a cycle")

        kept = np.flatnonzero(keep)
        self.order = kept[np.lexsort((depth[kept], event[kept]))]  # global indices, written order
        self.counts = counts - 1
        pos = np.zeros(len(event), dtype=np.int64)  # 1-based position in its event's written order
        starts = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(self.counts, out=starts[1:])
        pos[self.order] = np.arange(len(self.order)) - starts[event[self.order]] + 1
        parent = np.where(g1[self.order] >= 0, pos[np.maximum(g1[self.order], 0)], 0)
        self.parents = np.stack([parent, parent], 1).astype(np.int32)
        self.extra_event = event[ea]
        self.extra = np.stack([pos[ea], pos[ek]], 1) if len(ea) else np.zeros((0, 2), dtype=np.int64)
        self.starts = starts
