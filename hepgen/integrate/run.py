"""``hepgen integrate CARD``: sigma(pp -> gamma*/Z -> mu mu (+ one parton)) at LO with MadNIS and VEGAS, and the samples.

:func:`integrate` runs MadNIS (:func:`~hepgen.integrate.samplers.run_madnis`), then VEGAS with
the training calls MadNIS spent (:func:`~hepgen.integrate.samplers.run_vegas`), optionally
Pythia's sigmaGen for the same process (``integrate.pythia_events``), and writes the output
folder (``integrate.output``, or ``output``) at once through
:func:`hepgen.outputs.atomic_directory` (refused if it exists, without ``force``)::

    metrics.json      sigma +- error per method, the unweighting metrics, calls, times (report.py),
                      Pythia's sigmaGen and the pull when asked, the PDF set and the channels
    weighted.lhe      MadNIS's weighted events (up to integrate.weighted_events, a uniform random
                      subset of the points inside the kinematic limits, their weights multiplied
                      by that fraction, so <w> stays sigma), XWGTUP at full precision, sigma in <init>
    weighted.root     the same events, weights in a float64 ``genWeight`` branch (NanoAOD's name)
    unweighted.root   hit-or-miss unweighted MadNIS events (weight 1), sigma in the provenance
    log_weights.png   log10(w / <w>) of VEGAS and MadNIS
    card.yaml         the resolved card

The events are hepgen event records (:class:`~hepgen.events.EventSample`): a ``Muon``
collection (mu- and mu+ with charge and the muon mass), and with ``integrate.emission: real``
the outgoing parton as a one-entry ``Jet`` collection (:mod:`hepgen.integrate.emission`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import __version__
from ..cards import Card, card_hash, dump_card
from ..io import write_lhe
from ..io.root import write_events
from ..outputs import atomic_directory
from .config import integrate_config
from .emission import DrellYanJet
from .integrand import DrellYan, process_name, sample_info
from .pdf import lhapdf_id
from .pythia_check import pythia_cross_section
from .report import method_metrics, plot_log_weights, unweight
from .samplers import WeightedRun, run_madnis, run_vegas


def integrate(card: Card, output: str | os.PathLike | None = None, force: bool = False,
              progress: bool | None = None, log: Callable[[str], None] = print) -> Path:
    """Run the card's integration and write its output folder (see the module docstring)."""
    cfg = integrate_config(card)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    path = Path(output if output is not None else cfg.output)
    sqrt_s = card.process.sqrt_s
    with atomic_directory(path, force) as tmp:
        dy = (DrellYanJet if cfg.emission == "real" else DrellYan)(cfg, sqrt_s)
        total = 2 * (cfg.training_calls + cfg.sample_calls) + cfg.pythia_events
        with tqdm(total=total, desc="integrate", unit="call", disable=progress is False, leave=False) as bar:
            madnis = run_madnis(dy, cfg, card.seed, bar.update)
            vegas = run_vegas(dy, cfg, card.seed, bar.update, training_calls=madnis.training_calls)
            pythia = (pythia_cross_section(cfg, sqrt_s, cfg.pythia_events, card.seed, bar.update)
                      if cfg.pythia_events else None)
        runs = [vegas, madnis]
        metrics = {
            "process": process_name(cfg), "sqrt_s_gev": sqrt_s,
            "m_mumu_window_gev": [cfg.m_min, cfg.m_max], "pdf_set": cfg.pdf, "channels": list(cfg.channels),
            "hepgen_version": __version__, "card_hash": card_hash(card), "seed": card.seed,
            **{r.method: method_metrics(r, dy.channel_count) for r in runs},
        }
        if pythia is not None:
            pull = (madnis.sigma - pythia["sigma_pb"]) / float(np.hypot(madnis.error, pythia["error_pb"]))
            metrics["pythia"] = {**pythia, "madnis_over_pythia": madnis.sigma / pythia["sigma_pb"],
                                 "pull_madnis": pull}
        _write_samples(tmp, dy, madnis, card, cfg)
        plot_log_weights(runs, tmp / "log_weights.png")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        (tmp / "card.yaml").write_text(dump_card(card))
    for r in runs:
        m = metrics[r.method]
        log(f"{r.method:>6}: sigma = {m['sigma_pb']:.3f} +- {m['error_pb']:.3f} pb, unweighting efficiency "
            f"{m['unweighting_efficiency']:.3f}, {m['calls']} calls")
    if pythia is not None:
        log(f"pythia: sigmaGen = {pythia['sigma_pb']:.3f} +- {pythia['error_pb']:.3f} pb "
            f"(MadNIS / Pythia = {metrics['pythia']['madnis_over_pythia']:.5f})")
    return path


def _write_samples(folder: Path, dy: DrellYan, run: WeightedRun, card: Card, cfg) -> None:
    rng = np.random.default_rng(card.seed)
    # points outside the kinematic limits (weight 0: x > 1 with a real emission) are no events; the
    # others' mean weight is sigma / (their fraction f), so their weights are multiplied by f and
    # <w> stays sigma (the Born has none: f = 1)
    inside = np.flatnonzero(run.weights != 0)
    fraction = len(inside) / len(run.weights)
    n = min(cfg.weighted_events, len(inside))
    pick = inside[np.sort(rng.choice(len(inside), size=n, replace=False))]
    info = {**sample_info(cfg, run.sigma, run.error, run.method), "card_hash": card_hash(card), "seed": str(card.seed)}
    weighted = dy.to_events(run.r[pick], run.channels[pick], run.weights[pick] * fraction, info)
    write_lhe(folder / "weighted.lhe", weighted, sqrt_s=card.process.sqrt_s, pdf_id=lhapdf_id(cfg.pdf))
    write_events(folder / "weighted.root", weighted, weight_branch="genWeight")
    if cfg.unweighted_events:
        keep = unweight(run.weights, rng, cfg.unweighted_events)
        events = dy.to_events(run.r[keep], run.channels[keep], np.ones(len(keep)), info)
        write_events(folder / "unweighted.root", events)
