"""``hepgen validate``: histograms, maps, classifier test, precision table and an index page.

Output folder (written atomically: it appears complete or not at all)::

    index.html          every plot on one page, with the precision table
    metrics.json        the precision table, machine readable
    metrics.md          the same as Markdown
    histograms.root     every 1-D histogram as TH1D (unnormalised, sum w^2 errors):
                        reference_<observable>, generated_<observable>, and for a run folder
                        compared with a file heldout_<observable> (its held-out split, the
                        second check, also in the metrics; see :func:`validate`)
    plots/<set>/<observable>.png|pdf
    maps/<map>.png|pdf
    classifier/calibration.png|pdf, logw_<k>j.png|pdf, extreme_events.md
"""

from __future__ import annotations

import html
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import __version__, observables, processes
from ..cards import Card, load_card
from ..errors import InputError
from ..events import EventSample
from ..io.root import write_histograms
from ..outputs import atomic_directory
from . import amplification, histograms, metrics, plots
from .classifier import ClassifierResult, two_sample_test
from .inputs import Generated, ReadAs, read_generated, read_run, read_sample
from .obsset import ObservableSet, default_path, load_observable_set

EXTREME_COLUMNS = ("n_jets", "pt_mu1", "pt_mu2", "m_mumu", "pt_mumu", "pt_j1", "eta_j1", "pt_j2", "dR_j1j2", "HT")
REWEIGHT_MAX_AUC = 0.75  # show the reweighted sample only for a classifier AUC up to this
REWEIGHT_MIN_EFFECTIVE = 0.1  # ... and an effective sample fraction (sum w)^2 / (N sum w^2) at least this
AMPLIFICATION_OBSERVABLES = ("pt_mu1", "eta_mu1", "m_mumu", "pt_mumu", "pt_j1", "eta_j1", "dR_j1j2", "HT")


def _fmt(x, digits=3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


class _Progress:
    """One tqdm bar on stderr (disabled when stderr is not a terminal or when asked)."""

    def __init__(self, total: int, enabled: bool | None):
        from tqdm import tqdm

        show = sys.stderr.isatty() if enabled is None else enabled
        self.bar = tqdm(total=total, disable=not show, desc="validate", unit="step", file=sys.stderr, leave=False)

    def step(self, what: str) -> None:
        self.bar.set_postfix_str(what[:60], refresh=False)
        self.bar.update(1)

    def close(self):
        self.bar.close()


def _extreme_table(sample: EventSample, logw: np.ndarray, which: str, n: int = 10) -> str:
    ok = np.flatnonzero(np.isfinite(logw))
    if ok.size == 0:
        return ""
    order = ok[np.argsort(logw[ok])]
    idx = order[:n] if which == "lowest" else order[::-1][:n]
    vals = observables.compute(sample.select(idx), EXTREME_COLUMNS)
    head = "| log w | " + " | ".join(EXTREME_COLUMNS) + " |\n|" + "---|" * (len(EXTREME_COLUMNS) + 1) + "\n"
    rows = ["| " + f"{logw[i]:+.2f} | " + " | ".join(_fmt(float(vals[c][j]), 0 if c == "n_jets" else 2) for c in EXTREME_COLUMNS) + " |"
            for j, i in enumerate(idx)]
    return head + "\n".join(rows) + "\n"


def _jsonable(x):
    """numpy scalars -> Python, NaN/inf -> None (strict JSON)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def _observable_table(observables: dict) -> list[str]:
    lines = ["| observable | max abs(gen/ref − 1) | χ²/ndf | ndf | band coverage | pull width |", "|---|---|---|---|---|---|"]
    for name, r in observables.items():
        lines.append(f"| {name} | {_fmt(r.get('max_abs_dev'))} | {_fmt(r.get('chi2_ndf'), 2)} | {r.get('ndf', 0)} | "
                     f"{_fmt(r.get('coverage'), 2)} | {_fmt(r.get('pull_width'), 2)} |")
    return lines


def _markdown(m: dict) -> str:
    inp = m["inputs"]
    against = f"Against the reference: {inp['reference']}, {inp['n_reference']} events."
    lines = [f"# Precision table: {inp['generated']} vs {inp['reference']}", ""]
    lines.append(f"{inp['n_generated']} generated events ({inp['n_draws'] or 'no'} Bayesian draws), "
                 f"{inp['n_reference']} reference events ({inp['reference']}); bins trusted with ≥ {m['min_bin_events']} "
                 "events in both histograms.")
    if m.get("heldout"):
        lines.append(f"The tables compare with this reference; the last section repeats the histogram comparison "
                     f"against the {m['heldout']['reference']} ({m['heldout']['n_reference']} events).")
    lines.append("")
    c = m.get("classifier")
    if c:
        lines += ["## Classifier two-sample test (calibrated, out-of-fold)", "", against, "",
                  "| jets | AUC | spread over runs | null σ | ref. events | gen. events |", "|---|---|---|---|---|---|"]
        for k, r in c["per_multiplicity"].items():
            lines.append(f"| {k} | {r['auc']:.4f} | {r['auc_std']:.4f} | {r['null_sigma']:.4f} | {r['n_reference']} | {r['n_generated']} |")
        lines.append(f"| all | {c['auc_total']:.4f} | {c['auc_total_std']:.4f} | {c['null_sigma_total']:.4f} | | |")
        rw = c.get("reweighting")
        if rw:
            lines += ["", f"DCTR weights: effective sample fraction {rw['effective_sample_fraction']:.3f}; reweighted curve "
                      + ("shown in the plots." if rw["shown_in_plots"] else
                         f"not shown (needs AUC ≤ {REWEIGHT_MAX_AUC} and effective fraction ≥ {REWEIGHT_MIN_EFFECTIVE}).")]
        lines.append("")
    lines += ["## Multiplicities and cuts", "", against, "", "| | reference | generated |", "|---|---|---|"]
    for k in m["multiplicity"]["reference"]:
        lines.append(f"| fraction {k} jets | {m['multiplicity']['reference'][k]:.4f} | {m['multiplicity']['generated'][k]:.4f} |")
    for k in m["cuts"]["reference"]:
        lines.append(f"| cut violation: {k} | {m['cuts']['reference'][k]:.4f} | {m['cuts']['generated'][k]:.4f} |")
    tpe = m.get("time_per_event_s")
    lines.append(f"| generation time per event | | {('%.3g s' % tpe) if tpe else 'unknown'} |")
    lines += ["", "## Observables", "", against, ""] + _observable_table(m["observables"])
    amp = m.get("amplification")
    if amp:
        lines += ["", f"## Amplification (quantile MSE, {amp['n_quantiles']} quantiles; training events: {amp['n_train'] or 'unknown'})", "",
                  against, "", "| observable | equivalent reference events | amplification |", "|---|---|---|"]
        for name, r in amp["observables"].items():
            neq = (">" if r["lower_bound"] else "") + f"{r['n_equiv']:.3g}"
            lines.append(f"| {name} | {neq} | {_fmt(r['amplification'], 2)} |")
    h = m.get("heldout")
    if h:
        lines += ["", f"## Second check: the {h['reference']}", "",
                  f"Against the {h['reference']}: {h['n_reference']} events, never trained on (histograms only, "
                  "no classifier).", "", "| | held-out | generated |", "|---|---|---|"]
        for k, f in h["multiplicity"].items():
            lines.append(f"| fraction {k} jets | {f:.4f} | {m['multiplicity']['generated'][k]:.4f} |")
        lines += [""] + _observable_table(h["observables"])
    return "\n".join(lines) + "\n"


def _index_html(m: dict, entries: list[tuple[str, str, str]], md_table: str) -> str:
    """entries: (section, title, png path relative to the folder)."""
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>hepgen validation</title>",
           "<style>body{font-family:sans-serif;margin:1.5em} figure{display:inline-block;margin:4px;text-align:center}"
           " img{width:420px} img.wide{width:860px} pre{background:#f4f4f4;padding:1em;overflow-x:auto}</style></head><body>",
           f"<h1>hepgen validation</h1><p>generated: <code>{html.escape(str(m['inputs']['generated']))}</code><br>"
           f"reference: <code>{html.escape(str(m['inputs']['reference']))}</code><br>hepgen {__version__}, "
           f"{html.escape(m['created'])}. <a href='metrics.json'>metrics.json</a> · <a href='metrics.md'>metrics.md</a></p>"]
    section = None
    for sec, title, png in entries:
        if sec != section:
            out.append(f"<h2>{html.escape(sec)}</h2>")
            section = sec
        cls = " class='wide'" if sec == "2-D maps" else ""
        pdf = png[:-4] + ".pdf"
        out.append(f"<figure><a href='{html.escape(pdf)}'><img{cls} src='{html.escape(png)}' alt='{html.escape(title)}'></a>"
                   f"<figcaption>{html.escape(title)}</figcaption></figure>")
    out.append("<h2>Precision table</h2><pre>" + html.escape(md_table) + "</pre></body></html>")
    return "\n".join(out)


def run_report(
    output: Path,
    generated: Generated,
    reference: EventSample,
    *,
    obsset: ObservableSet,
    training: EventSample | None = None,
    heldout: EventSample | None = None,
    style: str = "CMS",
    min_bin_events: int = 100,
    classifier: bool = True,
    classifier_runs: int = 3,
    classifier_epochs: int = 30,
    classifier_folds: int = 3,
    n_quantiles: int = 20,
    n_train: int | None = None,
    jet_pt_min: float = 20.0,
    jet_dr_min: float = 0.4,
    multiplicities: Sequence[int] = (1, 2, 3),
    seed: int = 1,
    labels: dict | None = None,
    force: bool = False,
    progress: bool | None = None,
) -> Path:
    """Write the validation folder for ``generated`` vs ``reference``; returns ``output``.

    ``heldout``: a second, smaller reference (a run's held-out split when ``reference`` is the
    independent one): its histogram comparison and multiplicities go into ``metrics.json`` /
    ``metrics.md`` (``heldout``) and ``histograms.root`` (``heldout_<observable>``), not the plots.
    """
    if style not in plots.STYLES:
        raise InputError(f"--style {style!r}: choose one of {', '.join(plots.STYLES)}")
    gen = generated.sample
    names = obsset.names()
    n_clf = (classifier_runs * classifier_folds * len(multiplicities)) if classifier else 0
    bar = _Progress(len(obsset.hists) + len(obsset.maps) + n_clf + 3, progress)
    t0 = time.perf_counter()
    try:
        with atomic_directory(output, force) as tmp:
            bar.step("observables")
            v_ref = observables.compute(reference, names)
            v_gen = observables.compute(gen, names)
            v_train = observables.compute(training, names) if training is not None else None
            v_held = observables.compute(heldout, names) if heldout is not None else None
            m: dict = {
                "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                "hepgen_version": __version__,
                "inputs": {"generated": "generated", "reference": "reference", **(labels or {}), "n_generated": len(gen), "n_reference": len(reference),
                           "n_draws": generated.n_draws, "n_training": None if training is None else len(training),
                           "generated_info": dict(gen.info)},
                "min_bin_events": min_bin_events,
            }
            if heldout is not None:
                m["heldout"] = {"reference": "held-out split", "n_reference": len(heldout), "observables": {},
                                "multiplicity": metrics.multiplicity_fractions(heldout, multiplicities)}
            entries: list[tuple[str, str, str]] = []
            clf: ClassifierResult | None = None
            if classifier:
                clf = two_sample_test(reference, gen, multiplicities=tuple(multiplicities), extra=obsset.classifier_extra,
                                      pairs=obsset.classifier_pairs, runs=classifier_runs, folds=classifier_folds,
                                      epochs=classifier_epochs, seed=seed, jet_pt_min=jet_pt_min,
                                      progress=bar.step)
                (tmp / "classifier").mkdir()
                curves = {f"{k} jet{'s' if k > 1 else ''}": r.calibration for k, r in clf.per_multiplicity.items()}
                if curves:
                    plots.calibration_curve(tmp / "classifier" / "calibration", curves, style=style)
                    entries.append(("Classifier test", "calibration curve", "classifier/calibration.png"))
                for k, r in clf.per_multiplicity.items():
                    sel_r, sel_g = reference.n_jets == k, gen.n_jets == k
                    title = f"{k} jet{'s' if k > 1 else ''}: AUC = {r.auc:.3f} ± {r.auc_std:.3f}"
                    plots.log_weights(tmp / "classifier" / f"logw_{k}j", clf.logw_ref[sel_r], clf.logw_gen[sel_g], title, style=style)
                    entries.append(("Classifier test", title, f"classifier/logw_{k}j.png"))
                m["classifier"] = {
                    "auc_total": clf.auc_total, "auc_total_std": clf.auc_total_std, "null_sigma_total": clf.null_sigma_total,
                    "runs": classifier_runs, "folds": classifier_folds, "epochs": classifier_epochs,
                    "per_multiplicity": {str(k): {"auc": r.auc, "auc_std": r.auc_std, "auc_runs": r.auc_runs,
                                                  "null_sigma": r.null_sigma, "n_reference": r.n_ref, "n_generated": r.n_gen}
                                         for k, r in clf.per_multiplicity.items()},
                }
                ext = ("# Events with the most extreme classifier weights\n\nw = p_ref/p_gen. Reference events with "
                       "the largest w lie where the generator puts too few events; generated events with the smallest "
                       "w lie where it puts too many (a missing cut).\n\n## Reference events, largest w\n\n"
                       + _extreme_table(reference, clf.logw_ref, "highest")
                       + "\n## Generated events, smallest w\n\n" + _extreme_table(gen, clf.logw_gen, "lowest"))
                (tmp / "classifier" / "extreme_events.md").write_text(ext)
            rew_w = None
            if clf is not None:
                lw = np.where(np.isfinite(clf.logw_gen), clf.logw_gen, 0.0)
                w_try = gen.weight * np.exp(np.clip(lw, -20, 20))
                eff = float(w_try.sum() ** 2 / np.sum(w_try**2) / len(w_try)) if len(w_try) else 0.0
                # DCTR reweighting corrects a good generator; for a poor one (AUC far from 1/2) a few
                # huge weights dominate and the reweighted curve would only mislead
                show = clf.auc_total <= REWEIGHT_MAX_AUC and eff >= REWEIGHT_MIN_EFFECTIVE
                m["classifier"]["reweighting"] = {"effective_sample_fraction": eff, "shown_in_plots": bool(show)}
                rew_w = w_try if show else None
            m["observables"] = {}
            root_hists = {}
            for h in obsset.hists:
                edges = h.edges
                b_ref = histograms.binned(v_ref[h.name], edges, reference.weight)
                b_gen = histograms.binned(v_gen[h.name], edges, gen.weight)
                band = histograms.band(v_gen[h.name], edges, generated.draw, gen.weight) if generated.draw is not None else None
                b_tr = histograms.binned(v_train[h.name], edges, training.weight) if v_train is not None else None
                b_rw = histograms.binned(v_gen[h.name], edges, rew_w) if rew_w is not None else None
                m["observables"][h.name] = metrics.compare(b_ref, b_gen, band, min_bin_events)
                if v_held is not None:
                    b_held = histograms.binned(v_held[h.name], edges, heldout.weight)
                    m["heldout"]["observables"][h.name] = metrics.compare(b_held, b_gen, band, min_bin_events)
                    root_hists[f"heldout_{h.name}"] = histograms.to_hist(v_held[h.name], edges, heldout.weight, h.name)
                (tmp / "plots" / h.set).mkdir(parents=True, exist_ok=True)
                plots.comparison(tmp / "plots" / h.set / h.name, b_ref, b_gen, h.axis_label, style=style, band=band,
                                 training=b_tr, reweighted=b_rw, logy=h.logy, ratio_range=h.ratio, min_entries=min_bin_events)
                entries.append((h.set, h.name, f"plots/{h.set}/{h.name}.png"))
                root_hists[f"reference_{h.name}"] = histograms.to_hist(v_ref[h.name], edges, reference.weight, h.name)
                root_hists[f"generated_{h.name}"] = histograms.to_hist(v_gen[h.name], edges, gen.weight, h.name)
                bar.step(h.name)
            write_histograms(tmp / "histograms.root", root_hists)
            if obsset.maps:
                (tmp / "maps").mkdir()
            for mp in obsset.maps:
                xe = np.linspace(*mp.xrange, mp.bins[0] + 1)
                ye = np.linspace(*mp.yrange, mp.bins[1] + 1)
                r2, n2 = histograms.binned_2d(v_ref[mp.x], v_ref[mp.y], xe, ye, reference.weight)
                g2, _ = histograms.binned_2d(v_gen[mp.x], v_gen[mp.y], xe, ye, gen.weight)
                plots.map_2d(tmp / "maps" / mp.name, r2, g2, xe, ye, observables.get(mp.x).axis_label,
                             observables.get(mp.y).axis_label, style=style, ref_counts=n2)
                entries.append(("2-D maps", mp.name, f"maps/{mp.name}.png"))
                bar.step(mp.name)
            bar.step("metrics")
            m["multiplicity"] = {"reference": metrics.multiplicity_fractions(reference, multiplicities),
                                 "generated": metrics.multiplicity_fractions(gen, multiplicities)}
            m["cuts"] = {"reference": metrics.cut_violations(reference, jet_pt_min, jet_dr_min),
                         "generated": metrics.cut_violations(gen, jet_pt_min, jet_dr_min)}
            m["time_per_event_s"] = metrics.time_per_event(dict(gen.info))
            amp_names = [n for n in AMPLIFICATION_OBSERVABLES]
            va, vr = observables.compute(gen, amp_names), observables.compute(reference, amp_names)
            m["amplification"] = {"n_quantiles": n_quantiles, "n_train": n_train,
                                  "observables": amplification.zjets_amplification(va, vr, n_train, n_quantiles)}
            devs = [r["max_abs_dev"] for r in m["observables"].values() if r.get("max_abs_dev") is not None]
            chis = [r["chi2_ndf"] for r in m["observables"].values() if r.get("chi2_ndf") is not None]
            covs = [r["coverage"] for r in m["observables"].values() if r.get("coverage") is not None]
            pws = [r["pull_width"] for r in m["observables"].values() if r.get("pull_width") is not None]
            m["summary"] = {
                "median_max_abs_dev": float(np.median(devs)) if devs else None,
                "median_chi2_ndf": float(np.median(chis)) if chis else None,
                "mean_band_coverage": float(np.mean(covs)) if covs else None,
                "median_pull_width": float(np.median(pws)) if pws else None,
                "seconds": round(time.perf_counter() - t0, 2),
            }
            md = _markdown(m)
            (tmp / "metrics.md").write_text(md)
            (tmp / "metrics.json").write_text(json.dumps(_jsonable(m), indent=2) + "\n")
            (tmp / "index.html").write_text(_index_html(m, entries, md))
            bar.step("index")
    finally:
        bar.close()
    return Path(output)


def validate(
    sample_path_or_run: str | os.PathLike | Sequence[str | os.PathLike],
    reference: str | os.PathLike | None = None,
    output: str | os.PathLike | None = None,
    style: str | None = None,
    force: bool = False,
    *,
    card: Card | None = None,
    training: str | os.PathLike | None = None,
    observables_file: str | os.PathLike | None = None,
    classifier: bool = True,
    progress: bool | None = None,
    simulate_reference: bool = False,
    read: ReadAs | None = None,
    reference_read: ReadAs | None = None,
    log=lambda msg: None,
) -> Path:
    """Validate a generated sample (file, K files, or a run folder) against a reference file.

    A run folder without ``reference`` is compared with the card's independent reference
    (its process's :meth:`~hepgen.processes.base.Process.validation_reference`; for Z+jets
    ``validate.reference``, simulated first when absent only with ``simulate_reference``) and, when the card names none or it is
    absent, with its held-out test split. Whenever a run folder is compared with a file, its
    held-out split is the second, smaller check (``heldout`` in the metrics). The training split
    is drawn in the plots. Settings come from ``card.validate`` (the run's card for a run folder,
    else the defaults). ``read`` / ``reference_read``: the tree and branch mapping of the sample
    files / of ``reference`` and ``training``. Returns the output folder.
    """
    paths = [sample_path_or_run] if isinstance(sample_path_or_run, (str, os.PathLike)) else list(sample_path_or_run)
    paths = [Path(p) for p in paths]
    ref_sample = train_sample = heldout = None
    ref_label = str(reference) if reference is not None else None
    if len(paths) == 1 and paths[0].is_dir():
        run = read_run(paths[0], log=log)
        gen = run.generated
        card = card or run.card
        train_sample = run.training
        default_out = paths[0] / "validation"
        if reference is None and card is not None:
            reference = processes.get(card.process.name).validation_reference(card, log, simulate=simulate_reference)
            if reference is not None:
                ref_label = f"independent reference {reference}"
        if reference is None:
            ref_sample, ref_label = run.reference, "held-out split"
        else:
            heldout = run.reference
    else:
        gen = read_generated(paths, read)
        default_out = Path("validation_out") / paths[0].name.split(".")[0]
    if reference is not None:
        ref_sample, _ = read_sample(reference, reference_read, log)
        if ref_label and ref_label.startswith("independent") and str(ref_sample.info.get("seed", "")).isdigit():
            ref_label += f" (seed {ref_sample.info['seed']})"
    if ref_sample is None:
        raise InputError("no reference sample: give --reference REF.root (a sample not used for training)")
    if training is not None:
        train_sample, _ = read_sample(training, reference_read)
    card = card or Card()
    vc = card.validate
    obs_path = Path(observables_file or vc.observables)
    if not (observables_file or vc.observables):
        obs_path = default_path(processes.get(card.process.name).observables or card.process.name)
    obsset = load_observable_set(obs_path)
    n_train = None
    for key in ("n_train", "train_events"):
        if str(gen.sample.info.get(key, "")).isdigit():
            n_train = int(gen.sample.info[key])
    if n_train is None and train_sample is not None:
        n_train = len(train_sample)
    return run_report(
        Path(output) if output else default_out, gen, ref_sample, obsset=obsset, training=train_sample, heldout=heldout,
        style=style or vc.style, min_bin_events=vc.min_bin_events, classifier=classifier,
        classifier_runs=vc.classifier_runs, classifier_epochs=vc.classifier_epochs, classifier_folds=vc.classifier_folds,
        n_quantiles=vc.quantiles, n_train=n_train, jet_pt_min=card.process.jet_pt_min, jet_dr_min=card.process.jet_dr_min,
        multiplicities=card.process.n_jets, seed=card.seed,
        labels={"generated": ", ".join(str(p) for p in paths), "reference": ref_label},
        force=force, progress=progress,
    )


def validate_run(path: str | os.PathLike, log=print, force: bool = True) -> Path | None:
    """The training loop's hook: validate a run folder, writing ``<run>/validation/`` (replacing
    an earlier one): against the card's independent reference (simulated now when absent; see
    its process's ``validation_reference``) with the held-out split as a second
    check, or against the held-out split alone when the card names no independent reference.
    Returns the output folder (None for toys, which carry their own density report)."""
    path = Path(path)
    card_file = path / "card.yaml"
    if card_file.is_file():
        process = processes.get(load_card(card_file).process.name)
        if process.observables is None:  # e.g. the toys: their own density report (toy.png)
            log(f"validation: skipped for the {process.name} process (it has no observable set)")
            return None
    out = validate(path, output=path / "validation", force=force, simulate_reference=True, log=log)
    log(f"validation: {out / 'index.html'}")
    return out
