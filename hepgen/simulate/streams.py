"""Where a simulate worker's events come from: its own Pythia, or a HepMC file.

A stream hands out ``nextBatch``-layout batches (``next()``; None when it has no more), the
cross section of the events it has handed out (``cross_section()``, pb, or None when it knows
none), its lines of the output's provenance (``provenance()``), the kept events with the
stream's shower variation weights (``psweights(batch, sample, keep)``; PSWeight); ``close()`` ends it.
:func:`open_stream` picks one for a :class:`~hepgen.simulate.run.WorkerTask`: a HepMC file
when the task names one (``task.input``, read with :func:`hepgen.io.hepmc.read_hepmc`), else
Pythia with the task's settings and seed. The file's events go through the same selection as
Pythia's; the file must be unweighted (every event the same nominal weight, which need not be
1): its batches are handed on with unit weights. :func:`hepmc_copy` is where a worker also
writes the events it generated, as HepMC3.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

import awkward as ak
import numpy as np

from ..errors import InputError
from ..io.hepmc import HepmcBatches, HepmcWriter, read_hepmc
from ..io.variations import PSWEIGHT
from ..outputs import temporary
from . import pythia as _pythia

MB_TO_PB = 1e9


class PythiaStream:
    """``task.batch`` Pythia events per ``next()``, with the task's settings and seed."""

    def __init__(self, settings, seed: int, batch: int):
        self.pythia = _pythia.make_pythia(list(settings), seed)
        self.batch = batch
        self.psweight_columns = _pythia.psweight_columns(self.pythia)  # None: no shower variations

    def next(self) -> ak.Array:
        return self.pythia.nextBatch(self.batch)

    def psweights(self, batch: ak.Array, sample, keep: np.ndarray):
        """``sample`` (the kept events of ``batch``) with the PSWeight variations, w_var / w_nominal
        (:data:`hepgen.io.variations.PSWEIGHT`), when this Pythia computes them."""
        if self.psweight_columns is None:
            return sample
        w = ak.to_numpy(batch["info"]["weights"][keep]).astype(np.float64).reshape(int(keep.sum()), -1)
        ratios = {wid: w[:, j] / w[:, 0] for (wid, _), j in zip(PSWEIGHT, self.psweight_columns)}
        return replace(sample, variations={**sample.variations, **ratios})

    def cross_section(self) -> tuple[float, float]:
        """Pythia's sigmaGen and its error over the events so far, pb."""
        info = self.pythia.infoPython()
        return float(info.sigmaGen()) * MB_TO_PB, float(info.sigmaErr()) * MB_TO_PB

    def provenance(self) -> dict[str, str]:
        return {}  # produce writes Pythia's

    def close(self) -> None:
        pass


class HepmcStream:
    """The events of a HepMC file, ``batch`` per ``next()``; its ``GenCrossSection``."""

    def __init__(self, path: str, batch: int):
        self.reader: HepmcBatches = read_hepmc(path, batch)
        self._weight: float | None = None

    def next(self) -> ak.Array | None:
        batch = next(self.reader, None)
        if batch is None:
            return None
        w = ak.to_numpy(ak.firsts(batch["info"]["weights"], axis=1))
        if self._weight is None:
            self._weight = float(w[0])
        differ = np.flatnonzero(w != self._weight)
        if len(differ):
            k = self.reader.events - len(w) + int(differ[0]) + 1
            raise InputError(f"{self.reader.path}: event {k} has weight {w[differ[0]]:g}, the first {self._weight:g}; "
                             "the simulation takes unweighted events only")
        ones = ak.unflatten(np.ones(len(w)), np.ones(len(w), dtype=np.int64))
        return ak.with_field(batch, ak.zip({"weights": ones}, depth_limit=1), "info")

    def cross_section(self) -> tuple[float, float] | None:
        return self.reader.cross_section

    def psweights(self, batch, sample, keep):
        return sample  # a file's events carry no shower variations here

    def close(self) -> None:
        self.reader.close()

    def provenance(self) -> dict[str, str]:
        """The output file's lines about the input: the file, its format and generator."""
        r = self.reader
        return {"input_file": str(r.path), "input_format": r.format, "input_events_read": str(r.events),
                "generator": f"{r.generator or 'a generator the file does not name'} (HepMC file {r.path.name})",
                "process": f"the events of {r.path.name}"}


def open_stream(task) -> PythiaStream | HepmcStream:
    """The stream of a worker task: its HepMC file (``task.input``) or its own Pythia."""
    if task.input:
        return HepmcStream(task.input, task.batch)
    return PythiaStream(task.settings, task.seed, task.batch)


@contextlib.contextmanager
def hepmc_copy(task):
    """(writer or None, its path): where a worker writes its generated events as HepMC3 when
    ``task.save_hepmc`` names a file: the parent's temporary when the worker is the only one,
    else the worker's own temporary of it (:func:`hepgen.outputs.temporary`, uncompressed),
    which the parent merges. Event numbers: worker index + jobs * k, distinct across the parts."""
    if not task.save_hepmc:
        yield None, ""
        return
    part = task.save_hepmc if task.jobs == 1 else str(temporary(task.save_hepmc, suffix=False))  # uncompressed
    with HepmcWriter(part, info=dict(task.hepmc_info), atomic=False, first_event=task.index, step=task.jobs) as w:
        yield w, part
