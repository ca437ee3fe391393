"""Unfolding study on paired Z+jets samples: the network, OmniFold and IBU side by side (issue 14).

Each "data" sample, ``--nominal`` (an independent paired file of the training simulation) and
``--alternative`` (the same simulation with ``TimeShower:alphaSvalue = --alpha-s``, default 0.118
against Pythia's default 0.1365 (0.130 moved the particle level too little to show anything): the
model dependence; simulated first when absent, ``--alt-events`` kept events, seed 2000001), is unfolded
on its first ``--events`` events that pass both selections, three ways:

* the network of ``--run`` (``hepgen.unfold.posterior.unfold``, one posterior sample per event);
* OmniFold (``hepgen.unfold.omnifold``, 4 iterations, its CPU-fast default classifiers) on the
  padded events of both levels (log pT, eta, phi relative to mu1 of both muons and up to 3 jets,
  jet log(1 + m), n_jets);
* IBU (``hepgen.unfold.ibu``, 4 iterations), per observable, 1-D.

The simulation of both baselines is the pairs of ``--train`` (the network's training file) that
pass both selections, so all three methods unfold the same thing: the particle level of events
passing both selections, which is each data sample's own truth here. Per observable (pT and eta of
mu1, mu2, j1, j2; m_mumu, pT_mumu, n_jets, dR_j1j2, as ``hepgen.observables`` defines them) and
method, against that truth (histograms normalised to all events, ``hepgen.validate.histograms``):
the bulk max |ratio - 1| (bins holding the central 90 % of the truth with >= 100 truth events,
``hepgen.validate.acceptance.bulk``; the issue's tolerance, 3 % nominal and 5 % alternative, up to 3
statistical errors) and chi2/ndf over the bins with >= 100 truth events
(statistical errors of both; IBU: pyunfold's errors), next to the raw reco-level distribution
and the prior (the simulation's particle level, not reweighted). Also the classifier two-sample
AUC against the truth per jet multiplicity (the run card's classifier settings, first
``--classifier-events`` of each sample,
``validation/zjets.yaml`` features) of the network, OmniFold's weighted simulation, the raw reco
events and the prior. For the nominal sample: ``--samples`` K posterior samples
for the first ``--calib-events`` events, the coverage of central intervals, rank histograms and
migration matrices (truth vs reco and network vs reco). The network's truth and its unfolded
events are the same events (correlated), so its chi2/ndf runs below 1 for a perfect posterior.

Writes OUT/study.md (the tables), OUT/study.json (every number), OUT/plots/ (one figure per
observable and sample; calibration figures) and the unfolded ROOT files.

    python benchmarks/unfolding_study.py --run runs/zjets_unfold-<stamp> [--train data/zjets_paired.root]
        [--nominal data/zjets_paired_validation.root] [--alternative data/zjets_paired_alphas0118.root] [--alpha-s 0.118]
        [--alt-events 100000] [--events 20000] [--samples 20] [--calib-events 3000] [-o study]
    python benchmarks/unfolding_study.py --run RUN --events 3000 --calib-events 500 --alt-events 3000 \\
        --alternative /tmp/alt.root -o /tmp/study      (a quick try, ~3 minutes)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hepgen import kinematics as kin  # noqa: E402
from hepgen import observables  # noqa: E402
from hepgen.cards import load_card  # noqa: E402
from hepgen.coords.unfold import GEN_NAMES, RECO_NAMES, level  # noqa: E402
from hepgen.errors import HepgenError  # noqa: E402
from hepgen.events import EventSample  # noqa: E402
from hepgen.io.root import read_events  # noqa: E402
from hepgen.processes.zjets_unfold import paired_events  # noqa: E402
from hepgen.runs import load_run  # noqa: E402
from hepgen.simulate import produce  # noqa: E402
from hepgen.unfold.ibu import ibu  # noqa: E402
from hepgen.unfold.omnifold import OmniFoldSettings, omnifold  # noqa: E402
from hepgen.unfold.posterior import unfold  # noqa: E402
from hepgen.validate import calibration, metrics, obsset  # noqa: E402
from hepgen.validate.acceptance import bulk  # noqa: E402
from hepgen.validate.classifier import two_sample_test  # noqa: E402
from hepgen.validate.histograms import Binned, binned  # noqa: E402
from hepgen.validate.plots import GEN_COLOR, REW_COLOR, TRAIN_COLOR, _label, mplhep, plt, save, use_style  # noqa: E402

ALPHA_S = "TimeShower:alphaSvalue = {:.3f}"  # the alternative's FSR alphaS (Pythia's default: 0.1365)
ALT_SEED = 2000001
MIN_TRUTH = 100  # truth events for a bin to count
# the issue's bulk tolerances: closure on the nominal sample, model dependence on the alternative
BULK = {"nominal": 0.03, "alternative": 0.05}
# observable: (bins, lo, hi), ranges where both levels are populated (IBU needs every bin filled)
BINNING = {
    "pt_mu1": (20, 20.0, 220.0), "eta_mu1": (24, -2.4, 2.4), "pt_mu2": (20, 10.0, 110.0), "eta_mu2": (24, -2.4, 2.4),
    "pt_j1": (20, 20.0, 220.0), "eta_j1": (20, -5.0, 5.0), "pt_j2": (20, 20.0, 140.0), "eta_j2": (20, -5.0, 5.0),
    "m_mumu": (20, 70.0, 110.0), "pt_mumu": (20, 0.0, 200.0), "n_jets": (3, 0.5, 3.5), "dR_j1j2": (20, 0.4, 6.4),
}
LOGY = {"pt_mu1", "pt_mu2", "pt_j1", "pt_j2", "pt_mumu", "n_jets"}
CALIBRATED = ("pt_j1", "pt_mumu", "m_mumu")
MIGRATION = {"pt_j1": np.linspace(20.0, 220.0, 11), "pt_mumu": np.linspace(0.0, 200.0, 11)}
METHODS = ("reco", "prior", "network", "OmniFold", "IBU")
STYLE = {"reco": dict(color=TRAIN_COLOR, ls="--"), "prior": dict(color="#b9ac70", ls="--"),
         "network": dict(color=GEN_COLOR, ls="-"), "OmniFold": dict(color=REW_COLOR, ls=":"),
         "IBU": dict(color="#2a9d3f", ls="-.")}


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


def edges(name: str) -> np.ndarray:
    n, lo, hi = BINNING[name]
    return np.linspace(lo, hi, n + 1)


def both_levels(path: Path, n: int | None = None) -> tuple[EventSample, EventSample, np.ndarray]:
    """(gen level, reco level, index in the file) of the first ``n`` events passing both selections."""
    sample = read_events(path)
    index = np.flatnonzero(paired_events(sample, str(path)))[:n]
    sample = sample.select(index)
    return level(sample, GEN_NAMES, str(path)), level(sample, RECO_NAMES, str(path)), index


def features(sample: EventSample) -> np.ndarray:
    """OmniFold inputs ``[N, 18]`` of one level: mu1, mu2 (log pT, eta; mu2's phi - phi_mu1), up to 3
    jets (log(1 + pT), eta, phi - phi_mu1, log(1 + m); absent jets 0), n_jets."""
    mu, jet = sample.padded("Muon", 2), sample.padded("Jet", 3)
    present = np.isfinite(jet[:, :, 0])
    jet = np.nan_to_num(jet, nan=0.0)
    phi0 = mu[:, 0, 2]
    cols = [np.log(mu[:, 0, 0]), mu[:, 0, 1], np.log(mu[:, 1, 0]), mu[:, 1, 1], kin.delta_phi(mu[:, 1, 2], phi0)]
    for i in range(3):
        cols += [np.log1p(jet[:, i, 0]), jet[:, i, 1], np.where(present[:, i], kin.delta_phi(jet[:, i, 2], phi0), 0.0),
                 np.log1p(np.clip(jet[:, i, 3], 0.0, None))]
    cols.append(sample.n_jets.astype(np.float64))
    return np.stack(cols, axis=1)


def alternative_file(path: Path, events: int, jobs: int, alpha_s: float) -> Path:
    """The alternative paired sample: made with the alphaS setting when absent, checked when present."""
    setting = ALPHA_S.format(alpha_s)
    if path.exists():
        settings = json.loads(dict(read_events(path, entry_stop=1).info).get("pythia_settings", "[]"))
        if setting not in settings:
            sys.exit(f"unfolding_study: {path} was not simulated with {setting!r} (its Pythia settings: {settings})")
        return path
    log(f"{path} is absent: simulating {events} paired events with {setting!r}, seed {ALT_SEED}")
    card = load_card(ROOT / "cards" / "zjets_detector.yaml", [f"simulate.pythia={json.dumps([setting])}"])
    path.parent.mkdir(parents=True, exist_ok=True)
    return produce(card, events=events, seed=ALT_SEED, output=path, jobs=jobs)


def network(run, path: Path, index: np.ndarray, samples: int, out: Path) -> EventSample:
    """The network's ``samples`` posterior samples of the events ``index`` (rows event-major)."""
    unfold(run, path, out, samples=samples, force=True, max_events=int(index[-1]) + 1, log=log, progress=False)
    u = read_events(out)
    if not np.array_equal(u.scalars["event"].reshape(len(index), samples)[:, 0], index):
        sys.exit(f"unfolding_study: {out} does not hold the events passing both selections of {path}")
    return u


def ibu_binned(res, n_data: int, truth: Binned) -> Binned:
    width = np.diff(res.bins_gen)
    return Binned(res.bins_gen, res.counts / (n_data * width), res.error / (n_data * width), truth.entries)


def compare(truth: Binned, other: Binned, tolerance: float) -> dict:
    """Agreement with the truth over the bins with >= MIN_TRUTH truth events (the other's counts do not
    matter); ``bulk_ok``: no bulk bin beyond ``tolerance`` by more than STAT_Z errors of both
    (``hepgen.validate.acceptance.bulk``; for the network and reco, which share the truth's events,
    those errors overstate the difference's, so read the raw deviation beside it)."""
    other = dataclasses.replace(other, entries=truth.entries)
    c = metrics.compare(truth, other, min_entries=MIN_TRUTH)
    b = bulk(truth, other, MIN_TRUTH, tolerance=tolerance)
    return {"bulk_max_abs_dev": b["max_abs_dev"], "bulk_bins": b["bins"], "bulk_ok": b["ok"],
            "bulk_tolerance": tolerance, "max_abs_dev": c["max_abs_dev"], "chi2_ndf": c["chi2_ndf"], "ndf": c.get("ndf", 0)}


def plot(stem: Path, name: str, truth: Binned, hists: dict[str, Binned], title: str) -> None:
    """Truth (points), reco and the unfolded histograms (lines); ratio to the truth below."""
    use_style("CMS")
    e = truth.edges
    fig, (ax, rax) = plt.subplots(2, 1, figsize=(8, 8), sharex=True, gridspec_kw={"height_ratios": (3, 1), "hspace": 0.06})
    for key, h in hists.items():
        mplhep.histplot(h.density, e, ax=ax, lw=2, label=key, **STYLE[key])
    mplhep.histplot(truth.density, e, yerr=truth.error, ax=ax, histtype="errorbar", color="black", markersize=4,
                    label="truth (particle level)")
    top = max(float(np.max(h.density)) for h in [truth, *hists.values()])
    if name in LOGY:
        pos = truth.density[truth.density > 0]
        lo = pos.min() * 0.3 if len(pos) else 1e-6
        ax.set_yscale("log")
        ax.set_ylim(lo, lo * (top / lo) ** (1 / 0.57))
    else:
        ax.set_ylim(0, top / 0.57)
    ax.set_ylabel(r"$1/N\;dN/dx$")
    ax.legend(loc="upper right", fontsize="small", frameon=False, title=title, title_fontsize="small")
    _label(ax, "CMS")
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(truth.density > 0, truth.error / truth.density, np.nan)
        rax.fill_between(e, np.r_[1 - rel, 1 - rel[-1]], np.r_[1 + rel, 1 + rel[-1]], step="post", color="lightgrey",
                         lw=0)
        for key, h in hists.items():
            mplhep.histplot(np.where(truth.entries > 0, h.density / truth.density, np.nan), e, ax=rax, lw=2, **STYLE[key])
    rax.axhline(1.0, color="black", lw=1)
    rax.set_ylim(0.8, 1.2)
    rax.set_ylabel("/ truth")
    rax.set_xlabel(observables.get(name).axis_label)
    rax.set_xlim(e[0], e[-1])
    fig.subplots_adjust(left=0.16, right=0.96, top=0.93, bottom=0.11)
    fig.align_ylabels([ax, rax])
    save(fig, stem)


def classifier(truth: EventSample, others: dict[str, EventSample], card, obs, events: int) -> dict:
    """AUC of each sample against the truth per jet multiplicity (and pooled), the card's settings, on
    the first ``events`` events of each."""
    v = card.validate
    out = {}
    truth = truth.select(np.arange(min(events, len(truth))))
    for key, sample in others.items():
        sample = sample.select(np.arange(min(events, len(sample))))
        t0 = time.perf_counter()
        r = two_sample_test(truth, sample, multiplicities=tuple(card.process.n_jets), objects=obs.classifier_objects,
                            extra=obs.classifier_extra, pairs=obs.classifier_pairs, runs=v.classifier_runs,
                            folds=v.classifier_folds, epochs=v.classifier_epochs, seed=card.seed,
                            jet_pt_min=card.process.jet_pt_min)
        out[key] = {"auc": {str(k): m.auc for k, m in r.per_multiplicity.items()} | {"all": r.auc_total},
                    "spread": {str(k): m.auc_std for k, m in r.per_multiplicity.items()} | {"all": r.auc_total_std},
                    "null_sigma": {str(k): m.null_sigma for k, m in r.per_multiplicity.items()}
                    | {"all": r.null_sigma_total}, "seconds": round(time.perf_counter() - t0, 1)}
        log(f"classifier {key} vs truth: AUC " + ", ".join(f"{k} jets {a:.3f}" for k, a in out[key]["auc"].items()))
    return out


def study_sample(tag: str, path: Path, args, run, sim: dict, out: Path) -> dict:
    """Unfold one data sample three ways and compare with its truth."""
    times = {}
    t0 = time.perf_counter()
    gen, reco, index = both_levels(path, args.events)
    n = len(index)
    log(f"{tag}: {n} events passing both selections of {path}")
    u = network(run, path, index, 1, out / f"unfolded_{tag}.root")
    times["network"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    of = omnifold(sim["gen_x"], sim["reco_x"], np.ones(sim["n"], bool), np.ones(sim["n"], bool), features(reco),
                  iterations=args.iterations, settings=OmniFoldSettings(), log=None)
    w = of.final * n / of.final.sum()  # the data's count of events passing both
    times["omnifold"] = time.perf_counter() - t0
    log(f"{tag}: OmniFold step-1 AUC per iteration {np.round(of.auc_reco, 4).tolist()} ({times['omnifold']:.0f} s)")
    names = list(BINNING)
    v_gen, v_reco, v_net = (observables.compute(s, names) for s in (gen, reco, u))
    rows, ibu_info = {}, {}
    t0 = time.perf_counter()
    for name in names:
        e = edges(name)
        truth = binned(v_gen[name], e)
        hists = {"reco": binned(v_reco[name], e), "prior": binned(sim["values"][name], e), "network": binned(v_net[name], e),
                 "OmniFold": binned(sim["values"][name], e, w)}
        try:
            g, r = sim["values"][name], sim["reco_values"][name]  # NaN: the event lacks the object (outside the domain)
            d = v_reco[name][np.isfinite(v_reco[name])]
            res = ibu(g, r, np.isfinite(g), np.isfinite(r), d, e, e, args.iterations)
            hists["IBU"] = ibu_binned(res, n, truth)
            ibu_info[name] = {"efficiency": res.efficiency.tolist(), "fake_fraction": res.fake_fraction.tolist()}
        except HepgenError as err:  # one observable's bad binning does not stop the study
            ibu_info[name] = {"error": str(err)}
            log(f"{tag}: IBU {name}: {err}")
        rows[name] = {key: compare(truth, h, BULK[tag]) for key, h in hists.items()}
        plot(out / "plots" / f"{tag}_{name}", name, truth, hists, f"{tag}, {n} events")
    times["ibu_and_plots"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    obs = obsset.for_card(run.card)
    weighted = dataclasses.replace(sim["gen"], weight=w)
    clf = classifier(gen, {"network": u, "OmniFold": weighted, "reco": reco, "prior": sim["gen"]}, run.card, obs,
                     args.classifier_events)
    times["classifier"] = time.perf_counter() - t0
    return {"file": str(path), "events": n, "observables": rows, "ibu": ibu_info, "classifier": clf,
            "omnifold_auc_reco": of.auc_reco.tolist(), "seconds": {k: round(v, 1) for k, v in times.items()},
            "network_events": u, "truth_events": gen, "reco_events": reco, "index": index}


def calibrate(args, run, nominal: dict, out: Path) -> dict:
    """K posterior samples of the first --calib-events nominal events: coverage, ranks, migration."""
    t0 = time.perf_counter()
    index = nominal["index"][: args.calib_events]
    k = args.samples
    u = network(run, Path(nominal["file"]), index, k, out / "unfolded_nominal_posterior.root")
    names = list(CALIBRATED)
    truth = observables.compute(nominal["truth_events"].select(np.arange(len(index))), names)
    post = {n: v.reshape(len(index), k) for n, v in observables.compute(u, names).items()}
    res, ranks, covs = {}, {}, {}
    for name in names:
        ok = np.isfinite(truth[name]) & np.isfinite(post[name]).all(axis=1)
        c = calibration.coverage(truth[name][ok], post[name][ok])
        h = calibration.rank_histogram(truth[name][ok], post[name][ok])
        covs[name], ranks[name] = c, h
        res[name] = {"events": int(ok.sum()), "levels": c.levels.tolist(), "coverage": c.coverage.tolist(),
                     "error": c.error.tolist(), "pull": c.pull().tolist(), "mean_width": c.width.tolist(),
                     "rank_chi2": h.chi2, "rank_ndf": h.ndf, "rank_p_value": h.p_value}
        log(f"calibration {name}: coverage of central 68 % intervals {c.coverage[list(c.levels).index(0.68)]:.3f}")
    calibration.rank_plot(out / "plots" / "calibration_ranks", ranks)
    calibration.coverage_plot(out / "plots" / "calibration_coverage", covs)
    migrations = {}
    v_truth = observables.compute(nominal["truth_events"], list(MIGRATION))
    v_reco = observables.compute(nominal["reco_events"], list(MIGRATION))
    v_net = observables.compute(nominal["network_events"], list(MIGRATION))
    for name, e in MIGRATION.items():
        label = observables.get(name).axis_label
        for key, gen in (("truth", v_truth), ("network", v_net)):
            m = calibration.migration(gen[name], v_reco[name], e)
            calibration.migration_plot(out / "plots" / f"migration_{name}_{key}", m, label)
            migrations[f"{name}_{key}"] = {"edges": e.tolist(), "matrix": np.nan_to_num(m.matrix).tolist(),
                                          "stability": np.nan_to_num(m.stability).tolist()}
    return {"events": len(index), "samples": k, "observables": res, "migration": migrations,
            "seconds": round(time.perf_counter() - t0, 1)}


def fmt(r: dict) -> str:
    if r.get("chi2_ndf") is None:
        return "–"
    dev = "–" if r["bulk_max_abs_dev"] is None else f"{100 * r['bulk_max_abs_dev']:.1f}%" + (" ✓" if r.get("bulk_ok") else " ✗")
    return f"{dev} / {r['chi2_ndf']:.2f}"


def markdown(study: dict) -> str:
    lines = [f"# Unfolding study: {study['run']} (epoch {study['epoch']})", "",
             f"`{study['command']}`  ", f"commit {study['commit']}, {study['seconds']:.0f} s in all", "",
             f"Simulation (OmniFold, IBU): {study['train']}, {study['train_events']} events passing both selections. "
             f"Per cell: bulk max |x/truth − 1| (bins holding the central 90 % of the truth with ≥ {MIN_TRUTH} truth "
             "events), ✓ when no bulk bin exceeds the sample's tolerance (nominal 3 %, alternative 5 %) by more than "
             "3 statistical errors of both, / χ²/ndf (bins with ≥ 100 truth events, statistical errors of both).", ""]
    for tag, s in study["samples"].items():
        lines += [f"## {tag}: {s['file']}, {s['events']} events", "",
                  "| observable | " + " | ".join(METHODS) + " |", "|---|" + "---|" * len(METHODS)]
        for name, row in s["observables"].items():
            lines.append(f"| {name} | " + " | ".join(fmt(row[m]) if m in row else "failed" for m in METHODS) + " |")
        clf = s["classifier"]
        keys = list(clf["network"]["auc"])
        lines += ["", f"Classifier AUC against the truth on the first {study.get('classifier_events')} events of each "
                  "(± spread over runs; null σ from the sample sizes):", "",
                  "| jets | " + " | ".join(clf) + " | null σ |", "|---|" + "---|" * (len(clf) + 1)]
        for k in keys:
            cells = [f"{c['auc'][k]:.4f} ± {c['spread'][k]:.4f}" if k in c["auc"] else "–" for c in clf.values()]
            lines.append(f"| {k} | " + " | ".join(cells) + f" | {clf['network']['null_sigma'][k]:.4f} |")
        lines += ["", f"OmniFold step-1 AUC per iteration: {', '.join(f'{a:.4f}' for a in s['omnifold_auc_reco'])}; "
                  f"seconds: {s['seconds']}", ""]
    c = study.get("calibration")
    if c:
        lines += [f"## Calibration: nominal, first {c['events']} events, K = {c['samples']} posterior samples", "",
                  "| observable | " + " | ".join(f"coverage {lv:.0%}" for lv in c["observables"][CALIBRATED[0]]["levels"])
                  + " | rank χ²/ndf | p |", "|---|" + "---|" * (len(c["observables"][CALIBRATED[0]]["levels"]) + 2)]
        for name, r in c["observables"].items():
            cov = " | ".join(f"{v:.3f} ± {e:.3f}" for v, e in zip(r["coverage"], r["error"]))
            lines.append(f"| {name} | {cov} | {r['rank_chi2']:.0f}/{r['rank_ndf']} | {r['rank_p_value']:.2g} |")
        lines += ["", "Migration stability (diagonal of P(reco bin | gen bin), plots/migration_*):", ""]
        for key, m in c["migration"].items():
            lines.append(f"- {key}: " + " ".join(f"{v:.2f}" for v in m["stability"]))
        lines.append("")
    return "\n".join(lines)


def newest_run() -> Path | None:
    runs = sorted(p for p in Path("runs").glob("zjets_unfold-*") if (p / "validation").is_dir())
    return runs[-1] if runs else None


def commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                               text=True).stdout.strip()
        return sha + (" (uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    started_at = commit()  # the code that runs: read before a study of an hour, not when it is written
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=None, help="default: the newest runs/zjets_unfold-* with validation/")
    ap.add_argument("--train", type=Path, default=Path("data/zjets_paired.root"))
    ap.add_argument("--nominal", type=Path, default=Path("data/zjets_paired_validation.root"))
    ap.add_argument("--alternative", type=Path, default=Path("data/zjets_paired_alphas0118.root"))
    ap.add_argument("--alpha-s", type=float, default=0.118, help="TimeShower:alphaSvalue of --alternative")
    ap.add_argument("--alt-events", type=int, default=100000, help="kept events when simulating --alternative")
    ap.add_argument("--jobs", type=int, default=1, help="Pythia workers for --alternative")
    ap.add_argument("--events", type=int, default=20000, help="data events (passing both) per sample")
    ap.add_argument("--samples", type=int, default=20, help="posterior samples per event for the calibration")
    ap.add_argument("--calib-events", type=int, default=3000)
    ap.add_argument("--iterations", type=int, default=4, help="OmniFold and IBU iterations")
    ap.add_argument("--classifier-events", type=int, default=50000, help="events per sample in the two-sample tests")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("-o", "--output", type=Path, default=Path("study"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    run_path = args.run or newest_run()
    if run_path is None:
        sys.exit("unfolding_study: no runs/zjets_unfold-* with a validation/ folder; give --run")
    run = load_run(run_path)
    out = args.output
    (out / "plots").mkdir(parents=True, exist_ok=True)
    alt = alternative_file(args.alternative, args.alt_events, args.jobs, args.alpha_s)
    t_gen, t_reco, _ = both_levels(args.train)
    sim_names = list(BINNING)
    sim = {"n": len(t_gen), "gen": t_gen, "gen_x": features(t_gen), "reco_x": features(t_reco),
           "values": observables.compute(t_gen, sim_names), "reco_values": observables.compute(t_reco, sim_names)}
    log(f"simulation: {sim['n']} events of {args.train} pass both selections")
    samples = {}
    for tag, path in (("nominal", args.nominal), ("alternative", alt)):
        samples[tag] = study_sample(tag, path, args, run, sim, out)
    calib = calibrate(args, run, samples["nominal"], out) if args.calib_events > 0 else None
    for s in samples.values():
        for key in ("network_events", "truth_events", "reco_events", "index"):
            s.pop(key)
    study = {"run": str(run_path), "epoch": run.epoch, "command": "python " + " ".join(sys.argv), "commit": started_at,
             "train": str(args.train), "train_events": sim["n"], "binning": BINNING, "min_truth_events": MIN_TRUTH,
             "classifier_events": args.classifier_events, "samples": samples, "calibration": calib, "seconds": time.perf_counter() - start}
    (out / "study.json").write_text(json.dumps(study, indent=1))
    (out / "study.md").write_text(markdown(study))
    log(f"wrote {out / 'study.md'}, {out / 'study.json'} and {out / 'plots'} ({study['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
