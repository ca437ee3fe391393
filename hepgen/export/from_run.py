"""``hepgen export RUN``: the export folder of a trained Z+jets run.

The graph is the run's full generation pipeline (:func:`hepgen.generate.pipeline`): the
generator's sampler with a fixed, unrolled solver, the inverse coordinate transform, the jet
multiplicity chosen from a uniform noise column with the fitted fractions, the global azimuth
and the muon charge from uniform noise columns, and the pT ordering. Its input is noise only;
its outputs are

- ``momenta`` ``[N, 5, 4]`` float32: mu1, mu2 (pT-ordered), j1, j2, j3 (pT-ordered; absent
  jets all zero) x (pT [GeV], eta, phi [rad, in [-pi, pi)], mass [GeV]),
- ``n_jets`` ``[N]`` float32: the exclusive jet multiplicity (1, 2 or 3),
- ``charge`` ``[N, 2]`` float32: the muon charges (+1 / -1).

One graph for all multiplicities (rather than one per multiplicity): a framework draws events
with one call, the multiplicity fractions (and, for a Bayesian model, their posterior draw)
travel with the weights, and the jet slots of absent jets are zero. The graph does not drop
events (its batch is fixed), so the Delta R_jj > process.jet_dr_min selection that
``hepgen generate`` applies is left to the consumer, as the manifest says.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import HepgenError
from .bundle import GraphSpec, write_export
from .graph import ExportError
from .manifest import Port

N_EXTRA_NAMES = ("jet multiplicity", "global azimuth", "leading-muon charge")


def family_noise_layout(model, **opts) -> list[str]:
    """Per noise column of ``model.sampler(**opts)``: "normal" or "uniform".

    JetGPT's first D columns are uniforms (mixture-component choice); every other family
    consumes standard normals only.
    """
    m = model.noise_dim(**opts)
    if model.family == "jetgpt":
        return ["uniform"] * model.dim + ["normal"] * (m - model.dim)
    return ["normal"] * m


def _sampler_opts(family: str, solver: str | None, steps: int | None) -> dict:
    if solver is not None and family != "cfm":
        raise ExportError(f"--solver applies to CFM only; this run is {family}")
    if steps is not None and family not in ("cfm", "ddpm"):
        raise ExportError(f"--steps applies to CFM and DDPM only; this run is {family}")
    return {k: v for k, v in (("solver", solver), ("steps", steps)) if v is not None}


def export(run_dir: str | os.PathLike, *, output: str | os.PathLike | None = None, bayes_samples: int | None = None,
           steps: int | None = None, solver: str | None = None, force: bool = False, sofie: bool = True,
           checkpoint: str = "best", progress: Callable[[str], None] | None = None) -> Path:
    """Export the trained run ``run_dir`` to the folder ``output`` (default ``exports/<run name>``).

    ``bayes_samples``: posterior draws K written as weight files (Bayesian runs; default the
    card's ``model.bayes.draws``). ``steps`` / ``solver``: the fixed sampler of the graph
    (default the card's). ``sofie=False`` skips the SOFIE C++ header. Returns the folder.
    """
    try:
        from ..generate import pipeline
        from ..runs import load_run
    except ImportError as err:  # pragma: no cover - the generation module is part of hepgen
        raise HepgenError(f"hepgen export needs hepgen.generate ({err})") from None
    from ..cards import card_hash, dump_card
    from ..nn.bayesian import is_bayesian

    run = load_run(run_dir, checkpoint)
    card, model = run.card, run.model
    if card.process.name != "zjets":
        raise ExportError(f"hepgen export writes Z+jets generators; run {run.path} is a {card.process.name} toy")
    opts = _sampler_opts(model.family, solver, steps)
    bayes = is_bayesian(model)
    if bayes_samples is not None and not bayes:
        raise ExportError(f"--bayes-samples {bayes_samples}: the model of {run.path} is not Bayesian")
    k = (bayes_samples if bayes_samples is not None else card.model.bayes.draws) if bayes else 0
    if bayes and k < 1:
        raise ExportError("--bayes-samples must be at least 1 for a Bayesian run")
    output = Path(output) if output is not None else Path("exports") / run.path.name

    default = pipeline(run, None, **opts)
    # each draw's pipeline is built once (it measures its own cut pass rates on calibration events)
    draw_pipes = [pipeline(run, d, **opts) for d in range(k)]
    draws = draw_pipes if bayes else None
    fractions_per_draw = [p.fractions for p in draw_pipes]
    pass_rates_per_draw = [p.pass_rates for p in draw_pipes]
    layout = family_noise_layout(model, **opts) + ["uniform"] * len(N_EXTRA_NAMES)
    m = len(layout) - len(N_EXTRA_NAMES)
    jets = default.max_jets
    objects = ["mu1", "mu2"] + [f"j{j + 1}" for j in range(jets)]
    spec = GraphSpec(
        inputs=(Port("noise", (len(layout),),
                     f"columns 0..{m - 1}: {model.family} noise ({_describe(layout[:m])}); then U[0,1): "
                     + ", ".join(N_EXTRA_NAMES)),),
        outputs=(Port("momenta", (len(objects), 4),
                      "mu1, mu2 (pT-ordered), then jets (pT-ordered; absent jets all zero)",
                      "pt GeV, eta, phi rad in [-pi, pi), mass GeV"),
                 Port("n_jets", (), "exclusive jet multiplicity (integer value as float32)"),
                 Port("charge", (2,), "charges of mu1, mu2 (+1 / -1 as float32)")),
        noise_layout=tuple(layout), objects=tuple(objects),
        notes=(f"Selection: drop events in which two present jets have Delta R < {card.process.jet_dr_min} "
               "(hepgen generate does; the graph cannot drop events).",
               "Absent jets (index >= n_jets) have all four components zero.",
               "Noise: 'normal' columns N(0,1), 'uniform' columns U[0,1), float32; the same noise gives the same events."),
    )
    counts = run.coords.mult_counts.numpy().astype(float)
    frac = counts / counts.sum()
    physics = {
        "process": card.process.name, "sqrt_s_GeV": card.process.sqrt_s, "n_jets": [int(v) for v in run.coords.n_values],
        "jet_selection": {"pt_min_GeV": card.process.jet_pt_min, "eta_max": card.process.jet_eta_max,
                          "r": card.process.jet_r, "dr_min": card.process.jet_dr_min},
        # the uniform multiplicity column is cut against these sampling fractions: the training
        # fractions divided by each multiplicity's pass rate of the Delta R / acceptance cuts, so
        # the events that survive the cuts carry the training fractions
        "fractions": [float(f) for f in default.fractions],
        "pass_rates": [float(r) for r in default.pass_rates],
        "training_fractions": [float(f) for f in frac],
        "fraction_stat_errors": [float(e) for e in np.sqrt(frac * (1 - frac) / counts.sum())],
        "fraction_training_counts": [int(c) for c in counts],
        "fractions_per_draw": [[float(f) for f in fr] for fr in fractions_per_draw],
        "pass_rates_per_draw": [[float(r) for r in rates] for rates in pass_rates_per_draw],
    }
    if fractions_per_draw:
        physics["fraction_draw_std"] = [float(s) for s in np.std(fractions_per_draw, axis=0, ddof=1)] if k > 1 else None
    generator = {"family": model.family, "bayesian": bayes, "draws": k,
                 "network": {"hidden": card.model.network.hidden, "layers": card.model.network.layers,
                             "backbone": card.model.network.backbone},
                 "noise_dim": len(layout)}
    if model.family == "cfm":
        generator.update(solver=opts.get("solver", card.model.cfm.solver), steps=opts.get("steps", card.model.cfm.steps))
    elif model.family == "ddpm":
        generator.update(sampler=card.model.ddpm.sampler, steps=opts.get("steps", card.model.ddpm.ddim_steps))
    provenance = {"run": str(run.path), "run_name": card.name, "card_hash": card_hash(card), "seed": card.seed,
                  "epoch": run.epoch, "checkpoint": checkpoint}
    return write_export(output, default, draws, k, spec, generator=generator, physics=physics,
                        provenance=provenance, force=force, with_sofie=sofie,
                        extra_files={"card.yaml": dump_card(card)}, progress=progress)


def _describe(layout: list[str]) -> str:
    parts, i = [], 0
    while i < len(layout):
        j = i
        while j < len(layout) and layout[j] == layout[i]:
            j += 1
        parts.append(f"{j - i} {'N(0,1)' if layout[i] == 'normal' else 'U[0,1)'}")
        i = j
    return ", ".join(parts)
