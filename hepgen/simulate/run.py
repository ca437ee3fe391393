"""Produce a reference sample: workers, progress, provenance, one atomic ROOT file.

What is simulated is a :class:`~hepgen.simulate.simulation.Simulation` (Pythia settings, the
batch function, provenance and summary): the caller's, or the one :data:`SIMULATIONS` names
for the card's ``process.name`` (Z+jets: :mod:`.zjets`, tt̄: :mod:`.ttbar`).
``jobs`` worker processes (spawned, so no Pythia or FastJet state is shared) each run their
own Pythia, seeded with :func:`~hepgen.simulate.pythia.worker_seed` (run seed, worker
index), and select events batch by batch until they have their share: worker ``i`` of ``J``
keeps the first ``N // J (+1 for i < N % J)`` selected events of its own event stream. The
output is worker 0's events, then worker 1's, ... . Pythia's event stream does not depend on
the batch size, so the file is a function of (card, seed, jobs) only: bit-reproducible.

The events may come from a HepMC file instead (``input``, the card's ``simulate.input``; one
worker, :mod:`.streams`): the same selection and output, with the file's generator and cross
section in the provenance. ``save_hepmc`` also writes the generated events (all tried events
up to the last one kept) as a HepMC3 file, one part per worker merged in worker order:
``input`` on it gives the same selected events.

Nothing is written until every worker is done; the file then appears atomically (see
:class:`hepgen.io.root.RootWriter`), with the resolved card beside it. Workers die with their
parent (a parent-death signal and a watchdog thread), so a SIGKILL of hepgen leaves no orphan
running; SIGINT and SIGTERM stop the pool before the parent goes.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import multiprocessing
import os
import queue as queue_module
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import crosssection as xsec
from ..cards import Card, ProcessConfig, card_hash, dump_card
from ..errors import CardError, HepgenError, InputError, OutputError
from ..events import EventSample
from ..io import check_data_format
from ..io.hepmc import HepmcWriter, merge_hepmc
from ..io.root import RootWriter
from ..io.variations import groups_record, psweight_group
from ..outputs import atomic_output, check_output, stale_temporaries
from . import pythia as _pythia
from .selection import select
from .simulation import Simulation, batch_weights, select_batch  # noqa: F401 (select_batch: the benchmarks')
from .paired import paired_simulation
from .streams import hepmc_copy, open_stream
from .ttbar import ttbar_simulation
from .zjets import GIVE_UP_HINT, zjets_simulation

NOTHING_PASSES_AFTER = 20_000  # generated events without one selected: the cuts are wrong

# process.name -> the card's simulation; produce() takes this one unless given another
SIMULATIONS: dict[str, Callable[[Card], Simulation]] = {
    "zjets": zjets_simulation, "ttbar": ttbar_simulation,
    "zjets_unfold": paired_simulation,  # the paired particle/reco events unfolding trains on
}


def simulation_for(card: Card) -> Simulation:
    """The simulation of the card's ``process.name`` (:data:`SIMULATIONS`); a one-line
    :class:`CardError` for a process that has none."""
    try:
        make = SIMULATIONS[card.process.name]
    except KeyError:
        raise CardError(f"card {card.name}: process.name {card.process.name!r} has no Pythia simulation "
                        f"(hepgen simulates {', '.join(sorted(SIMULATIONS))})") from None
    return make(card)


@dataclass(frozen=True)
class WorkerTask:
    """What one worker does: ``events`` selected events from Pythia seeded ``seed``, each batch
    through ``select(batch, process)`` (a module-level batch function, :mod:`.simulation`)."""

    index: int
    events: int
    seed: int
    settings: tuple[str, ...]
    process: ProcessConfig
    batch: int
    give_up_after: int = NOTHING_PASSES_AFTER  # generated events without a selected one
    select: Callable = select  # the Z+jets selection unless a simulation gives its own
    give_up_hint: str = GIVE_UP_HINT
    input: str = ""  # a HepMC file whose events are selected instead of Pythia's
    save_hepmc: str = ""  # the generated events as HepMC3 ("": not written; streams.hepmc_copy)
    hepmc_info: tuple[tuple[str, str], ...] = ()  # the HepMC file's run attributes
    jobs: int = 1  # workers in the run (the step of the HepMC event numbers)
    weighted: bool = False  # simulate.bias_pt: events keep Pythia's weights (else weights != 1 are refused)


@dataclass
class WorkerResult:
    index: int
    sample: EventSample
    stats: Any  # the batch function's counts (tried, accepted, ...)
    sigma_pb: tuple[float, float] | None  # the stream's cross section and error (Pythia's sigmaGen), pb
    seconds: float
    hepmc_part: str = ""  # the worker's HepMC part (save_hepmc), to merge
    weight_sum: float = 0.0  # sum of the tried events' weights (= tried for unweighted events)
    provenance: dict = dataclasses.field(default_factory=dict)  # the stream's lines (a HepMC file's)


# progress messages from workers: (accepted, tried) increments, through this queue
_PROGRESS = None
PR_SET_PDEATHSIG = 1  # linux/prctl.h
WATCHDOG_SECONDS = 0.5  # how often a worker checks that its parent is alive


def _init_worker(progress_queue, parent: int) -> None:
    """Set up a pool worker: Ctrl-C is the parent's to handle, and the worker dies with the
    parent (``parent``: its pid), also when that is killed with SIGKILL (OOM killer, batch
    system), which runs no clean-up in the parent."""
    global _PROGRESS
    _PROGRESS = progress_queue
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(parent)


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel sends SIGKILL when the parent exits (prctl PR_SET_PDEATHSIG); the check
    after it catches a parent that died before. Everywhere: a daemon thread that exits the
    worker once its parent pid changes (the orphan is adopted by another process)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCHDOG_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="hepgen-parent-watchdog", daemon=True).start()


def run_worker(task: WorkerTask, progress=None) -> WorkerResult:
    """Generate and select until ``task.events`` events are kept (deterministic).

    ``progress(accepted, tried)`` is called after each batch (default: the worker queue).
    """
    report = progress or (lambda a, t: _PROGRESS.put((a, t)) if _PROGRESS is not None else None)
    start = time.perf_counter()
    with contextlib.closing(open_stream(task)) as stream, hepmc_copy(task) as (copy, part):
        sample, stats, weight_sum = _select_stream(task, stream, copy, report)
    return WorkerResult(index=task.index, sample=sample, stats=stats, sigma_pb=stream.cross_section(),
                        seconds=time.perf_counter() - start, hepmc_part=part, provenance=stream.provenance(),
                        weight_sum=weight_sum)


def _select_stream(task: WorkerTask, stream, copy: HepmcWriter | None, report):
    """(kept events, counts, sum of the tried events' weights) of ``stream`` until ``task.events``
    are kept or it ends."""
    samples: list[EventSample] = []
    stats = None
    accepted = tried = 0
    weight_sum = 0.0
    while accepted < task.events:
        batch = stream.next()
        if batch is None:  # a file has ended
            break
        sample, flags = select_batch(batch, task.process, task.select, task.weighted)
        sample = stream.psweights(batch, sample, flags.keep)
        need = task.events - accepted
        if len(sample) > need:  # keep the first `need`; count tried events up to the last one
            stop = int(np.flatnonzero(flags.keep)[need - 1]) + 1
            sample = sample.select(np.arange(need))
        else:
            stop = None
        batch_stats = flags.stats(stop)
        weight_sum += float(batch_weights(batch)[:stop].sum())
        if stats is None:
            stats = batch_stats
        else:
            stats += batch_stats
        accepted, tried = accepted + batch_stats.accepted, tried + batch_stats.tried
        samples.append(sample)
        if copy is not None:
            copy.write(batch if stop is None else batch[:stop], stream.cross_section())
        report(batch_stats.accepted, batch_stats.tried)
        if accepted == 0 and tried >= task.give_up_after:
            raise HepgenError(f"no event passed the selection in {tried} generated events; {task.give_up_hint}")
    return EventSample.concatenate(samples), stats, weight_sum


def _worker_entry(task: WorkerTask) -> WorkerResult:
    return run_worker(task)


def _shares(events: int, jobs: int) -> list[int]:
    return [events // jobs + (1 if i < events % jobs else 0) for i in range(jobs)]


def _progress_bar(total: int, quiet: bool):
    from tqdm import tqdm

    return tqdm(
        total=total, unit="ev", desc="simulate", file=sys.stderr, dynamic_ncols=True,
        disable=quiet or not sys.stderr.isatty(), smoothing=0.1,
    )


def _run_all(tasks: list[WorkerTask], jobs: int, quiet: bool) -> list[WorkerResult]:
    total = sum(t.events for t in tasks)
    bar = _progress_bar(total, quiet)
    tried = [0]
    t0 = time.perf_counter()

    def update(accepted: int, n_tried: int) -> None:
        tried[0] += n_tried
        bar.update(accepted)
        rate = tried[0] / max(time.perf_counter() - t0, 1e-9)
        bar.set_postfix_str(f"generated {tried[0]} ({rate:.0f}/s)", refresh=False)

    try:
        if jobs == 1:  # in this process: no start-up cost, same events
            return [run_worker(tasks[0], progress=update)]
        return _run_pool(tasks, jobs, update)
    finally:
        bar.close()


class _Stop(Exception):
    """A stop signal reached the parent while the workers ran."""


def _run_pool(tasks: list[WorkerTask], jobs: int, update) -> list[WorkerResult]:
    """Run ``tasks`` on ``jobs`` spawned workers; Ctrl-C and SIGTERM stop them all first.

    SIGINT and SIGTERM only record the signal, which the loop below turns into a stop: a signal
    that lands inside a finalizer or a library's own handler would otherwise be swallowed, and
    the parent would wait for the workers' whole run (seen once in CI: 1M events, no exit).
    Once the pool is gone, SIGINT is raised as KeyboardInterrupt and SIGTERM is delivered again
    to the handler that was there before (the CLI's clean exit, or the default: terminate).
    """
    received: list[int] = []
    restore = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(signum) not in (signal.SIG_IGN, None):  # None: set outside Python
                restore[signum] = signal.signal(signum, lambda n, _: received.append(n))
    ctx = multiprocessing.get_context("spawn")
    progress_queue = ctx.Queue()
    try:
        pool = ctx.Pool(jobs, initializer=_init_worker, initargs=(progress_queue, os.getpid()))
        try:
            pending = [pool.apply_async(_worker_entry, (t,)) for t in tasks]
            while not all(r.ready() for r in pending):
                if received:
                    raise _Stop
                try:
                    update(*progress_queue.get(timeout=0.2))
                except queue_module.Empty:
                    pass
            results = [r.get() for r in pending]  # re-raises a worker's error
            pool.close()
        except BaseException:
            pool.terminate()  # a signal or a failed worker: stop the others now
            raise
        finally:
            pool.join()
    except _Stop:
        pass
    finally:
        for signum, handler in restore.items():
            signal.signal(signum, handler)
    if received:
        if signal.SIGTERM in received:
            signal.raise_signal(signal.SIGTERM)  # the handler before ours decides
        raise KeyboardInterrupt
    while True:  # the last progress messages
        try:
            update(*progress_queue.get_nowait())
        except queue_module.Empty:
            break
    return sorted(results, key=lambda r: r.index)


def _combine_sigma(results: list[WorkerResult]) -> tuple[float, float] | None:
    """Tried-event-weighted mean of the workers' cross sections and its error, in pb (None
    when a stream knows none: a HepMC file without ``GenCrossSection``)."""
    if any(r.sigma_pb is None for r in results):
        return None
    n = np.array([r.stats.tried for r in results], dtype=np.float64)
    s, e = np.array([r.sigma_pb for r in results]).T
    w = n / n.sum()
    return float(np.sum(w * s)), float(np.sqrt(np.sum((w * e) ** 2)))


def produce(
    card: Card,
    *,
    events: int | None = None,
    seed: int | None = None,
    output: Path | str | None = None,
    jobs: int | None = None,
    force: bool = False,
    quiet: bool = False,
    simulation: Simulation | None = None,
    input: Path | str | None = None,
    save_hepmc: Path | str | None = None,
) -> Path:
    """Simulate ``events`` selected events and write them as a ROOT file.

    ``simulation``: what to simulate (None: :func:`simulation_for` the card, e.g. Z -> mu mu +
    jets for ``process.name: zjets``). ``None`` for the others takes the card's value
    (``simulate.events``, ``seed``, ``simulate.output``, ``simulate.jobs``, ``simulate.input``); ``jobs
    = 0`` means one worker per CPU core. Returns the output path. The file holds the simulation's
    collections (Z+jets: "Muon", 2 per event, and "Jet"; tt̄: "GenPart", the six decay
    products), unit weights, and the provenance (the selected events' cross section as
    ``cross_section_pb`` / ``cross_section_error_pb``, :mod:`hepgen.crosssection`; sigmaGen as
    ``sigma_gen_pb``; counts, seeds, settings, versions, the simulation's own lines, the resolved
    card); the resolved card is also written beside it as ``<output stem>.card.yaml``.

    ``input``: a HepMC file whose events are selected instead of Pythia's ("" = Pythia), in one
    worker, until ``events`` are kept or the file ends; the cross section is the file's
    ``GenCrossSection``, absent without one. ``save_hepmc``: the generated events also as HepMC3.
    """
    sim = card.simulate
    events = sim.events if events is None else int(events)
    seed = card.seed if seed is None else int(seed)
    output = Path(sim.output if output is None else output)
    source = str(sim.input if input is None else input)
    jobs = 1 if source else sim.jobs if jobs is None else int(jobs)
    if jobs == 0:
        jobs = os.cpu_count() or 1
    jobs = max(1, min(jobs, events))
    simulation = simulation or simulation_for(card)
    if source and save_hepmc:
        raise HepgenError("--save-hepmc writes the events Pythia generates; with --input there are none")
    check_output(output, force)  # fail now, not after minutes of simulation
    card_path = output.with_name(output.stem + ".card.yaml")
    if card_path.is_dir():
        raise OutputError(f"{card_path} is a directory; it is where the resolved card goes")
    if save_hepmc:
        check_output(save_hepmc, force)

    resolved = dataclasses.replace(
        card, seed=seed,
        simulate=dataclasses.replace(sim, events=events, output=str(output), jobs=jobs, input=source),
    )
    lines = simulation.settings
    if sim.bias_pt > 0 and (source or _pythia.BIAS_ON not in lines):
        raise CardError(f"simulate.bias_pt: {'--input events' if source else f'the {card.process.name} simulation'} "
                        "cannot be biased in pT-hat; set simulate.bias_pt: 0")
    if not source:
        _pythia.make_pythia(list(lines), 1, source="card")  # bad settings: fail before spawning
    seeds = [_pythia.worker_seed(seed, i) for i in range(jobs)]
    pythia_info = {"seed": str(seed), "jobs": str(jobs), "worker_seeds": json.dumps(seeds),
                   "pythia_settings": json.dumps(list(lines))}
    # the process section travels to spawned workers: its settings as a plain dict (a card's
    # read-only mapping, types.MappingProxyType, does not pickle)
    process = dataclasses.replace(resolved.process, settings=dict(resolved.process.settings))
    with contextlib.ExitStack() as stack:
        hepmc = stack.enter_context(atomic_output(save_hepmc, force)) if save_hepmc else None
        if hepmc and jobs > 1:  # the workers' parts, merged below; none outlives the run
            stack.callback(lambda: [p.unlink(missing_ok=True) for p in stale_temporaries(save_hepmc)])
        hepmc_info = tuple({"generator": "Pythia", "generator_version": _pythia.versions(False)["pythia8mc_version"],
                            **pythia_info, "card": dump_card(resolved), "card_hash": card_hash(resolved)}.items())
        tasks = [
            WorkerTask(i, n, s, lines, process, sim.batch, select=simulation.select,
                       give_up_hint=simulation.give_up_hint, input=source, jobs=jobs, hepmc_info=hepmc_info,
                       save_hepmc=str(hepmc if jobs == 1 else save_hepmc) if hepmc else "", weighted=sim.bias_pt > 0)
            for i, (n, s) in enumerate(zip(_shares(events, jobs), seeds))
        ]
        start = time.perf_counter()
        everything = _run_all(tasks, jobs, quiet)
        seconds = time.perf_counter() - start
        if hepmc and jobs > 1:
            merge_hepmc([r.hepmc_part for r in everything], hepmc)
        results = [r for r in everything if len(r.sample)]
        if not results:
            raise InputError(f"{source}: none of its {everything[0].stats.tried} events passed the selection; "
                             f"{simulation.give_up_hint}")
        _write(output, force, resolved, card_path, simulation, results, source, pythia_info, seconds, quiet)
    return output


def _write(output, force, resolved, card_path, simulation, results, source, pythia_info, seconds, quiet) -> None:
    """The ROOT file (provenance included), the resolved card and the summary line."""
    stats = results[0].stats
    for r in results[1:]:
        stats += r.stats
    sigma = _combine_sigma(results)
    eff = stats.accepted / stats.tried
    sample = EventSample.concatenate([r.sample for r in results])
    weighted = resolved.simulate.bias_pt > 0  # the kept part of sigma: its share of the tried events' weights
    passed = stats.tried * float(sample.weight.sum()) / sum(r.weight_sum for r in results) if weighted else stats.accepted
    info = {
        **(pythia_info if not source else {"seed": pythia_info["seed"], "jobs": "1"}),
        "events": str(len(sample)),
        "events_tried": str(stats.tried),
        "efficiency": repr(eff),
        **({"sigma_gen_pb": repr(sigma[0]), "sigma_gen_err_pb": repr(sigma[1]),
            **xsec.record(*xsec.scaled(*sigma, passed, stats.tried))} if sigma else {}),  # the selected events'
        "weights": _pythia.weights_line(resolved.simulate),
        "seconds": f"{seconds:.1f}",
        "card": dump_card(resolved),
        "card_hash": card_hash(resolved),
        **simulation.provenance(sample, stats),
        **results[0].provenance,  # a HepMC input: the file, its generator
    }
    if sample.variations:  # simulate.psweight: Pythia's shower variations, the PSWeight branch
        info.update(groups_record([psweight_group()]))
    if source:
        info.pop("pythia8mc_version", None)  # not Pythia's events
    with RootWriter(output, force=force, info=info, weight_branch="genWeight" if weighted else "weight") as writer:
        chunk = 100_000
        for lo in range(0, len(sample), chunk):
            writer.write(sample.select(np.arange(lo, min(lo + chunk, len(sample)))))
    with atomic_output(card_path, force=True) as tmp:
        tmp.write_text(dump_card(resolved))
    if not quiet:
        if sigma is None:
            print(f"simulate: {source} carries no cross section (GenCrossSection): {output} names none", file=sys.stderr)
        jobs = int(info["jobs"])
        print(
            f"simulate: {len(sample)} events from {stats.tried} {'read' if source else 'generated'} ({eff:.1%}) in "
            f"{seconds:.0f} s with {jobs} worker{'s' if jobs > 1 else ''}; "
            f"{f'sigma_gen = {sigma[0]:.4g} +- {sigma[1]:.2g} pb' if sigma else 'no cross section'}; "
            f"{simulation.summary(sample, stats)}",
            file=sys.stderr,
        )


def training_file(card: Card, log: Callable[[str], None] = print) -> Path:
    """The card's training sample ``data.path``; when it is absent and is the card's own
    ``simulate.output``, the card's simulation (:func:`simulation_for`) makes it first. Any other
    absent path is a one-line :class:`InputError`, a suffix that is not ``data.format`` a :class:`CardError`."""
    check_data_format(card.data)
    path = Path(card.data.path)
    if not path.exists():
        if Path(card.simulate.output) != path:
            raise InputError(f"data.path {path} does not exist (and is not the card's simulate.output to produce)")
        log(f"{path} is absent: running the card's simulation first ({card.simulate.events} events)")
        produce(card)
    return path
