"""``hepgen generate``: events from a trained run, streamed in chunks into ROOT or LHE files.

The events come from the run's exportable pipeline (:mod:`hepgen.pipeline`; for an export
folder, the same pipeline run by ONNX Runtime, :class:`hepgen.export.runtime.OnnxRun`): this
module keeps what is not part of the graph — noise blocks and their seeds, shards, the
process's selection, provenance and writing.

Noise comes in blocks of :data:`BLOCK` events; block b is drawn from a ``torch.Generator``
seeded with ``block_seed(seed, b)`` and evaluated as a whole, so the events do not depend on the
chunk size, and shard k of n (events [k N/n, (k+1) N/n)) is exactly that slice of the
unsharded run. All Bayesian draws use the same noise, so their spread is the training
uncertainty, not sampling noise.

Each block goes through the process's selection (:meth:`hepgen.processes.base.Process.select`);
dropped events are counted per reason in the file's provenance (``dropped_<reason>`` and
``dropped_<reason>_fraction``; Z+jets: ``dR_jj`` and ``acceptance``), and the file holds
``events`` = requested - dropped events.

The file's cross section (:mod:`hepgen.crosssection`: ``cross_section_pb``,
``cross_section_error_pb``; LHE ``XSECUP``/``XERRUP``) is that of the sample the run learned
(the run's ``data_info``) times the fraction of requested events the selection keeps, with the
binomial error of that fraction added in quadrature; absent when the training data named none.
The output's suffix and the format must agree (``.root``; ``.lhe``, ``.lhe.gz``).

A run whose generator maps samples (DiDi) takes its input from a source file instead of noise
(``source``, :mod:`hepgen.sources`): the blocks are the file's events in order, every event is
mapped, and the files record the source (``source_file``, its ``source_card_hash`` / ``source_seed``).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from . import __version__
from . import crosssection as xsec
from .cards import card_hash
from .distributed import resolve_device
from .errors import HepgenError, InputError
from .io import format_of
from .io.lhe import LheWriter
from .io.root import RootWriter
from .nuisance import Setting, setting
from .outputs import check_output
from .rngstate import derived_seed
from .runs import load_run
from .sources import SOURCE_EVENT, SourceInput, complete, read_source

BLOCK = 4096  # events per noise block: the unit of seeding and of network evaluation


def block_seed(seed: int, block: int) -> int:
    return derived_seed("generate", seed, block, bits=63)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'k/n' -> (k, n) with 0 <= k < n (shards are numbered from 0)."""
    if text is None:
        return None
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise HepgenError(f"--shard {text!r}: expected k/n, e.g. 0/10") from None
    if not (n >= 1 and 0 <= k < n):
        raise HepgenError(f"--shard {text!r}: need 0 <= k < n")
    return k, n


def _as_tuple(out) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


def _blocks(start: int, stop: int, pipe, seed: int, source: torch.Tensor | None = None, nus: Setting | None = None,
            device: torch.device | None = None):
    """Yield the pipeline outputs (a tuple of CPU tensors) for the blocks covering events [start, stop):
    from seeded noise, or from the rows of ``source`` (block b = its rows [b BLOCK, (b+1) BLOCK));
    ``nus`` sets the nuisance columns (drawn after the noise: the other columns stay the same).
    The noise is always drawn on the CPU (the same numbers on every machine); ``device``: where a
    torch pipeline evaluates it."""
    for b in range(start // BLOCK, (stop + BLOCK - 1) // BLOCK if stop > start else start // BLOCK):
        gen = torch.Generator().manual_seed(block_seed(seed, b))
        if source is None:
            inputs = pipe.draw_noise(BLOCK, gen)
        else:  # the block's source rows, completed with seeded noise where the input asks for it
            inputs = complete(source[b * BLOCK:(b + 1) * BLOCK], pipe.noise_layout, gen)
        if nus is not None:
            inputs = nus.fill(inputs, pipe.noise_layout, gen)
        if device is not None:
            inputs = inputs.to(device)
        with torch.no_grad():
            out = tuple(t.cpu() for t in _as_tuple(pipe(inputs)))
        lo, hi = max(start - b * BLOCK, 0), min(stop - b * BLOCK, BLOCK)
        yield tuple(t[lo:hi] for t in out)


def _output_paths(run, output: Path | None, fmt: str, draws: list[int | None]) -> list[Path]:
    if output is None:
        output = run.path / f"generated.{fmt}"
    output = Path(output)
    if len(draws) == 1 and draws[0] is None:
        return [output]
    return [output.with_name(f"{output.stem}.draw{d}{output.suffix}") for d in draws]


def _draw_label(draw: int | None, ensemble: bool) -> str:
    """What a generated file of draw ``draw`` holds, for its header: the draw's index; for None the
    weight mean ("mean") of a Bayesian or plain model, member 0 of an ensemble (it has no mean)."""
    if draw is not None:
        return str(int(draw))
    return "member 0" if ensemble else "mean"


def generate(run, n: int | None, *, bayes_samples: int = 0, fmt: str | None = None,
             output: str | os.PathLike | None = None, seed: int | None = None, shard: str | None = None,
             force: bool = False, chunk: int | None = None, solver: str | None = None, steps: int | None = None,
             progress: bool | None = None, log: Callable[[str], None] | None = None,
             source: str | os.PathLike | None = None, nuisance=(), device: str = "auto") -> list[Path]:
    """Generate ``n`` events (or shard ``k/n`` of them) from ``run`` into ROOT or LHE file(s).

    ``run``: a :class:`~hepgen.runs.Run`, a run folder, or an
    :class:`~hepgen.export.runtime.OnnxRun` (ONNX Runtime). ``bayes_samples`` = K > 0 (Bayesian
    model): one file per posterior draw, ``<stem>.draw<k><suffix>``, each with the same noise;
    0: one file with the weight means. Returns the written paths. Memory stays bounded by
    ``chunk`` (default card.generate.chunk).

    ``source``: for a run whose generator maps samples (DiDi), the source event file
    (:func:`hepgen.sources.read_source`); every source event is mapped, in file order (event i
    of the output is the image of source event i; ``n`` None = all, else at most ``n``), the
    same for every draw. A noise run refuses a source, a mapping run needs one.

    ``nuisance``: ``NAME=VALUE`` / ``NAME=prior`` strings (or a mapping) for a run with
    ``model.nuisance`` (:func:`hepgen.nuisance.setting`): nu fixed, or drawn per event from its
    prior; the others nominal (0). Every file records ``nuisance_<name>``.

    ``device`` (auto, cpu, cuda, cuda:N): where a torch run's pipeline runs (auto: a CUDA GPU when
    there is one); the noise is drawn on the CPU either way, so a GPU changes the events only by
    floating-point rounding. An :class:`~hepgen.export.runtime.OnnxRun` has its device (execution
    provider) from its construction. Every file records ``device``.
    """
    log = log or (lambda msg: None)
    if isinstance(run, (str, os.PathLike)):
        run = load_run(run)
    card, process = run.card, run.process
    if not process.writes_events:
        raise InputError(f"hepgen generate writes event files; run {run.path} is the {card.process.name} process, "
                         "which has none (sample it with hepgen.pipeline.pipeline)")
    fmt = fmt or (format_of(output) if output else "") or card.generate.format
    if fmt not in ("root", "lhe"):
        raise HepgenError(f"--format {fmt!r}: choose root or lhe")
    if output and format_of(output) != fmt:
        raise HepgenError(f"-o {output}: a {fmt} file needs a name ending in "
                          f"{'.root' if fmt == 'root' else '.lhe or .lhe.gz'} (the suffix and --format must agree)")
    nus = setting(card.model.nuisance, nuisance)  # a name or value the run does not have: before any output
    src = _source_for(run, source)
    if src is not None:
        n = len(src) if n is None else min(int(n), len(src))
    elif n is None:
        n = card.generate.events
    seed = card.seed if seed is None else int(seed)
    chunk = int(chunk or card.generate.chunk)
    sh = parse_shard(shard)
    start, stop = (0, n) if sh is None else (sh[0] * n // sh[1], (sh[0] + 1) * n // sh[1])
    if bayes_samples and not run.bayesian:
        raise HepgenError(f"--bayes-samples {bayes_samples}: the model of {run.path} is not Bayesian")
    draws: list[int | None] = list(range(bayes_samples)) if bayes_samples else [None]
    paths = _output_paths(run, Path(output) if output else None, fmt, draws)
    for path in paths:  # fail before any work if an output exists
        check_output(path, force)
    show = progress if progress is not None else os.isatty(2)
    requested = stop - start
    written = []
    dev = None
    for draw, path in zip(draws, paths):
        pipe = run.pipeline(draw, solver, steps)
        if isinstance(pipe, torch.nn.Module):
            dev = resolve_device(device, "--device")
            pipe = pipe.to(dev)
        info = {
            "hepgen_version": __version__, **run.record(solver, steps), "card": card.name, "card_hash": card_hash(card),
            "seed": str(seed), "bayesian": str(run.bayesian), "bayes_draw": _draw_label(draw, run.ensemble),
            "bayes_draws": str(len(draws)) if bayes_samples else "0", "events_requested": str(requested),
            "event_range": f"{start}:{stop}", "shard": shard or "", "noise_block": str(BLOCK),
            "device": str(dev) if dev is not None else pipe.device,
        }
        info.update(pipe.record(), **nus.record())
        if src is not None:
            info.update(src.record)
        dropped: dict[str, int] = {}
        t0 = time.perf_counter()
        with _writer(path, fmt, force, card) as writer, tqdm(total=requested, disable=not show, unit="ev",
                                                            desc=path.name, leave=False) as bar:
            buf, index, nbuf, at = [], [], 0, start
            for out in _blocks(start, stop, pipe, seed, None if src is None else src.x, nus, dev):
                sel = process.select(tuple(t.double().numpy() for t in out), card)
                for reason, mask in sel.dropped.items():
                    dropped[reason] = dropped.get(reason, 0) + int(mask.sum())
                keep = torch.from_numpy(sel.keep)
                buf.append(tuple(t[keep] for t in out))
                index.append(at + np.flatnonzero(sel.keep))
                at += len(sel.keep)
                nbuf += len(sel.keep)
                bar.update(len(sel.keep))
                if nbuf >= chunk:
                    writer.write(_events(process, buf, index, info, src is not None and fmt == "root"))
                    buf, index, nbuf = [], [], 0
            if buf:
                writer.write(_events(process, buf, index, info, src is not None and fmt == "root"))
            kept = requested - sum(dropped.values())
            info["events"] = str(kept)
            info.update(xsec.scaled_record(run.data_info, kept, requested))
            for reason, count in dropped.items():
                info[f"dropped_{reason}"] = str(count)
                info[f"dropped_{reason}_fraction"] = f"{count / max(requested, 1):.6g}"
            dt = time.perf_counter() - t0
            info.update(generation_seconds=f"{dt:.6g}", seconds_per_event=f"{dt / max(requested, 1):.6g}")
            writer.update_info(info)
        if not xsec.cross_section(info):
            log(f"{path}: the training data of {run.path} names no cross section; the file names none")
        why = ", ".join(f"{c} ({100 * c / max(requested, 1):.2f}%) for {r}" for r, c in dropped.items())
        log(f"wrote {path}: {kept} events{f' ({why} dropped)' if why else ''}, "
            f"{requested / max(time.perf_counter() - t0, 1e-9):.0f} events/s")
        written.append(path)
    return written


def _events(process, buf, index, info, mapped: bool):
    """The buffered blocks as one EventSample; a mapped ROOT sample carries the int64 scalar
    ``source_event``: the index of the source event each kept event is the image of (events
    the selection drops leave gaps, :func:`hepgen.validate.mapping.pair_with_source`)."""
    sample = process.to_events(_cat(buf), info)
    if not mapped:
        return sample
    return replace(sample, scalars={**sample.scalars, SOURCE_EVENT: np.concatenate(index).astype(np.int64)})


def _source_for(run, source) -> SourceInput | None:
    """The source events of a run that maps samples (None for a noise run); one-line errors
    for a missing or unwanted ``--source``."""
    if run.maps_samples and source is None:
        raise HepgenError(f"the {run.family} generator of {run.path} maps source events; give --source FILE")
    if source is not None and not run.maps_samples:
        raise HepgenError(f"--source {source}: the {run.family} generator of {run.path} starts from noise, "
                          "not from source events")
    return None if source is None else read_source(source, run.process, run.card)


def _cat(parts):
    return tuple(torch.cat([p[i] for p in parts]) for i in range(len(parts[0])))


class _writer:
    """ROOT or LHE writer whose provenance can be completed before closing."""

    def __init__(self, path: Path, fmt: str, force: bool, card):
        self.path, self.fmt, self.force, self.card = path, fmt, force, card
        self.info: dict[str, str] = {}

    def __enter__(self):
        if self.fmt == "root":
            self.w = RootWriter(self.path, force=self.force, info=self.info, chunk_size=self.card.generate.chunk)
        else:
            self.w = LheWriter(self.path, force=self.force, info=self.info, sqrt_s=self.card.process.sqrt_s)
        self.w.__enter__()
        return self

    def write(self, sample):
        self.w.write(sample)

    def update_info(self, info: dict[str, str]):
        self.w.update_info(info)

    def __exit__(self, *exc):
        return self.w.__exit__(*exc)
