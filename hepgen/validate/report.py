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
    classifier/calibration.png|pdf, logw_<category>.png|pdf, extreme_events.md
    migration/<observable>.png|pdf   with a source sample (a map, :mod:`.mapping`)
    coverage/pulls.png|pdf   with K >= 2 draws: the pulls of the band per category (:mod:`.coverage`)

The classifier test and the fraction table split the events as the card's process says
(:func:`~hepgen.processes.base.categories_of`: Z+jets by jet multiplicity, files ``logw_1j``...;
a process without a split: all events at once, ``logw_all``).
"""

from __future__ import annotations

import json
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
from ..processes.base import categories_of, cut_violations_of
from . import acceptance, amplification, coverage, histograms, mapping, metrics, plots, tables
from .classifier import ClassifierResult, two_sample_test
from .inputs import Generated, ReadAs, read_generated, read_run, read_sample, weight_summary
from .obsset import ObservableSet, for_card


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


def classifier_test(reference: EventSample, sample: EventSample, card: Card, obsset: ObservableSet, *, runs: int,
                folds: int, epochs: int, progress, unseen: EventSample | None = None) -> ClassifierResult:
    """The two-sample test of ``sample`` against ``reference``, split as the card's process says
    (``unseen``: events scored by the trained classifiers, see :func:`two_sample_test`)."""
    process = processes.get(card.process.name)
    cat_ref, cat_gen = categories_of(process, reference, card), categories_of(process, sample, card)
    return two_sample_test(reference, sample, multiplicities=tuple(cat_ref.members), labels=(cat_ref.labels, cat_gen.labels),
                           objects=obsset.classifier_objects, extra=obsset.classifier_extra, pairs=obsset.classifier_pairs,
                           runs=runs, folds=folds, epochs=epochs, seed=card.seed, jet_pt_min=card.process.jet_pt_min,
                           progress=progress, unseen=unseen,
                           unseen_labels=None if unseen is None else categories_of(process, unseen, card).labels)


def _fractions(sample: EventSample, process, card: Card) -> dict[str, float]:
    cats = categories_of(process, sample, card)
    return metrics.multiplicity_fractions(sample, tuple(cats.members), cats.labels,
                                          {k: c.key for k, c in cats.members.items()})


def run_report(
    output: Path,
    generated: Generated,
    reference: EventSample,
    *,
    obsset: ObservableSet,
    card: Card | None = None,
    training: EventSample | None = None,
    heldout: EventSample | None = None,
    source: EventSample | None = None,
    style: str = "CMS",
    min_bin_events: int = 100,
    classifier: bool = True,
    classifier_runs: int = 3,
    classifier_epochs: int = 30,
    classifier_folds: int = 3,
    n_quantiles: int = 20,
    n_train: int | None = None,
    labels: dict | None = None,
    force: bool = False,
    progress: bool | None = None,
) -> Path:
    """Write the validation folder for ``generated`` vs ``reference``; returns ``output``.

    ``card`` (default: the defaults) names the process, which splits the events for the
    classifier test and the fraction table and says which cuts to count; and the seed.
    ``heldout``: a second, smaller reference (a run's held-out split when ``reference`` is the
    independent one): its histogram comparison and category fractions go into ``metrics.json`` /
    ``metrics.md`` (``heldout``) and ``histograms.root`` (``heldout_<observable>``), not the plots.
    ``source``: the sample that ``generated`` maps event by event (:mod:`.mapping`).
    """
    if style not in plots.STYLES:
        raise InputError(f"--style {style!r}: choose one of {', '.join(plots.STYLES)}")
    card = card or Card()
    process = processes.get(card.process.name)
    gen = generated.sample
    names = obsset.names()
    index = mapping.pair_with_source(source, generated) if source is not None else None
    split = categories_of(process, reference, card)
    n_clf = (classifier_runs * classifier_folds * len(split.members) * (2 if source is not None else 1)) if classifier else 0
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
                           "n_draws": generated.n_draws, "shared_noise": generated.shared_noise, "n_training": None if training is None else len(training),
                           "generated_info": dict(gen.info)},
                "min_bin_events": min_bin_events,
            }
            named = {"generated": gen, "reference": reference, "training": training, "heldout": heldout}
            m["inputs"]["weights"] = {k: weight_summary(s) for k, s in named.items() if s is not None}
            if heldout is not None:
                m["heldout"] = {"reference": "held-out split", "n_reference": len(heldout), "observables": {},
                                "multiplicity": _fractions(heldout, process, card)}
            entries: list[tuple[str, str, str]] = []
            clf: ClassifierResult | None = None
            clf_source: ClassifierResult | None = None
            settings = dict(runs=classifier_runs, folds=classifier_folds, epochs=classifier_epochs, progress=bar.step)
            if classifier:
                clf = classifier_test(reference, gen, card, obsset, **settings)
                if source is not None:
                    clf_source = classifier_test(reference, source, card, obsset, **settings)
                (tmp / "classifier").mkdir()
                curves = {split.members[k].title: r.calibration for k, r in clf.per_multiplicity.items()}
                if curves:
                    plots.calibration_curve(tmp / "classifier" / "calibration", curves, style=style)
                    entries.append(("Classifier test", "calibration curve", "classifier/calibration.png"))
                cat_gen = categories_of(process, gen, card)
                for k, r in clf.per_multiplicity.items():
                    sel_r, sel_g = split.labels == k, cat_gen.labels == k
                    title = f"{split.members[k].title}: AUC = {r.auc:.3f} ± {r.auc_std:.3f}"
                    stem = f"logw_{split.members[k].stem}"
                    plots.log_weights(tmp / "classifier" / stem, clf.logw_ref[sel_r], clf.logw_gen[sel_g], title, style=style)
                    entries.append(("Classifier test", title, f"classifier/{stem}.png"))
                m["classifier"] = {
                    "auc_total": clf.auc_total, "auc_total_std": clf.auc_total_std, "null_sigma_total": clf.null_sigma_total,
                    "runs": classifier_runs, "folds": classifier_folds, "epochs": classifier_epochs,
                    "per_multiplicity": {split.members[k].key: {"auc": r.auc, "auc_std": r.auc_std, "auc_runs": r.auc_runs,
                                                                "null_sigma": r.null_sigma, "n_reference": r.n_ref, "n_generated": r.n_gen}
                                         for k, r in clf.per_multiplicity.items()},
                }
                ext = ("# Events with the most extreme classifier weights\n\nw = p_ref/p_gen. Reference events with "
                       "the largest w lie where the generator puts too few events; generated events with the smallest "
                       "w lie where it puts too many (a missing cut).\n\n## Reference events, largest w\n\n"
                       + tables.extreme_table(reference, clf.logw_ref, "highest", obsset.extreme)
                       + "\n## Generated events, smallest w\n\n" + tables.extreme_table(gen, clf.logw_gen, "lowest", obsset.extreme))
                (tmp / "classifier" / "extreme_events.md").write_text(ext)
            rew_w = None
            if clf is not None:
                lw = np.where(np.isfinite(clf.logw_gen), clf.logw_gen, 0.0)
                w_try = gen.weight * np.exp(np.clip(lw, -20, 20))
                eff = float(w_try.sum() ** 2 / np.sum(w_try**2) / len(w_try)) if len(w_try) else 0.0
                # DCTR reweighting corrects a good generator; for a poor one (AUC far from 1/2) a few
                # huge weights dominate and the reweighted curve would only mislead
                show = clf.auc_total <= tables.REWEIGHT_MAX_AUC and eff >= tables.REWEIGHT_MIN_EFFECTIVE
                m["classifier"]["reweighting"] = {"effective_sample_fraction": eff, "shown_in_plots": bool(show)}
                rew_w = w_try if show else None
            m["observables"] = {}
            root_hists, binned = {}, {}
            for h in obsset.hists:
                edges = h.edges
                b_ref = histograms.binned(v_ref[h.name], edges, reference.weight)
                b_gen = histograms.pooled(v_gen[h.name], edges, gen.weight, generated.draw, generated.shared_noise)
                band = histograms.band(v_gen[h.name], edges, generated.draw, gen.weight) if generated.draw is not None else None
                b_tr = histograms.binned(v_train[h.name], edges, training.weight) if v_train is not None else None
                b_rw = histograms.binned(v_gen[h.name], edges, rew_w) if rew_w is not None else None
                m["observables"][h.name] = metrics.compare(b_ref, b_gen, band, min_bin_events)
                binned.setdefault(h.name, (b_ref, b_gen, band))
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
            sections: list[str] = []
            if obsset.acceptance is not None:
                m["acceptance"] = acceptance.evaluate(obsset.acceptance, m["observables"], binned, min_bin_events)
                sections += acceptance.markdown(m["acceptance"])
            if generated.draw is not None:
                cat_gen = categories_of(process, gen, card)
                hist_names = list(dict.fromkeys(h.name for h in obsset.hists))
                cov = coverage.evaluate({n: v_ref[n] for n in hist_names}, reference.weight, split.labels,
                                        {n: v_gen[n] for n in hist_names}, gen.weight, cat_gen.labels, generated.draw,
                                        split.members, generated.shared_noise, min_bin_events)
                (tmp / "coverage").mkdir()
                plots.pull_histograms(tmp / "coverage" / "pulls", cov.pop("pulls"), style=style)
                entries.append(("Coverage", "pulls per category", "coverage/pulls.png"))
                m["coverage"] = cov
                sections += coverage.markdown(cov, split.heading)
            if source is not None:
                v_src = mapping.source_values(source, index, obsset.migration, observables.compute)
                m["source"] = mapping.source_metrics(source, clf_source, index, v_src, v_gen, obsset.migration)
                entries += mapping.migration_plots(tmp, obsset.migration, v_src, v_gen, obsset, style)
                sections += mapping.markdown(m)
            bar.step("metrics")
            m["multiplicity"] = {"reference": _fractions(reference, process, card), "generated": _fractions(gen, process, card)}
            m["cuts"] = {"reference": cut_violations_of(process, reference, card), "generated": cut_violations_of(process, gen, card)}
            m["time_per_event_s"] = metrics.time_per_event(dict(gen.info))
            va, vr = observables.compute(gen, obsset.amplification), observables.compute(reference, obsset.amplification)
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
            md = tables.markdown(m, split.heading, sections)
            (tmp / "metrics.md").write_text(md)
            (tmp / "metrics.json").write_text(json.dumps(tables.jsonable(m), indent=2) + "\n")
            (tmp / "index.html").write_text(tables.index_html(m, entries, md))
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
    source: str | os.PathLike | None = None,
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
    files / of ``reference`` and ``training``. ``source``: the sample the generated one maps
    event by event (Direct Diffusion; read like the samples): its classifier AUC against the same
    reference and the migration join the report (:mod:`.mapping`). Returns the output folder.
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
        gen = read_generated(paths, read, process=processes.get((card or Card()).process.name))
        default_out = Path("validation_out") / paths[0].name.split(".")[0]
    card = card or Card()
    process = processes.get(card.process.name)
    if reference is not None:
        ref_sample, _ = read_sample(reference, reference_read, log, process)
        if ref_label and ref_label.startswith("independent") and str(ref_sample.info.get("seed", "")).isdigit():
            ref_label += f" (seed {ref_sample.info['seed']})"
    if ref_sample is None:
        raise InputError("no reference sample: give --reference REF.root (a sample not used for training)")
    if training is not None:
        train_sample, _ = read_sample(training, reference_read, process=process)
    source_sample = read_sample(source, read, log, process)[0] if source is not None else None
    vc = card.validate
    obsset = for_card(card, observables_file)
    n_train = None
    for key in ("n_train", "train_events"):
        if str(gen.sample.info.get(key, "")).isdigit():
            n_train = int(gen.sample.info[key])
    if n_train is None and train_sample is not None:
        n_train = len(train_sample)
    out = run_report(
        Path(output) if output else default_out, gen, ref_sample, obsset=obsset, card=card, training=train_sample,
        heldout=heldout, source=source_sample, style=style or vc.style, min_bin_events=vc.min_bin_events,
        classifier=classifier, classifier_runs=vc.classifier_runs, classifier_epochs=vc.classifier_epochs,
        classifier_folds=vc.classifier_folds, n_quantiles=vc.quantiles, n_train=n_train,
        labels={"generated": ", ".join(str(p) for p in paths), "reference": ref_label,
                **({"source": str(source)} if source is not None else {})},
        force=force, progress=progress,
    )
    for line in json.loads((out / "metrics.json").read_text()).get("coverage", {}).get("warnings", []):
        log(f"warning: {line}")
    return out


def validate_run(path: str | os.PathLike, log=print, force: bool = True,
                 source: str | os.PathLike | None = None) -> Path | None:
    """The training loop's hook: validate a run folder, writing ``<run>/validation/`` (replacing
    an earlier one): against the card's independent reference (simulated now when absent; see
    its process's ``validation_reference``) with the held-out split as a second
    check, or against the held-out split alone when the card names no independent reference.
    ``source``: the sample the run's generated events map (a DiDi run), compared side by side.
    Returns the output folder (None for toys, which carry their own density report)."""
    path = Path(path)
    card_file = path / "card.yaml"
    if card_file.is_file():
        process = processes.get(load_card(card_file).process.name)
        if process.observables is None:  # e.g. the toys: their own density report (toy.png)
            log(f"validation: skipped for the {process.name} process (it has no observable set)")
            return None
    out = validate(path, output=path / "validation", force=force, simulate_reference=True, log=log, source=source)
    log(f"validation: {out / 'index.html'}")
    return out
