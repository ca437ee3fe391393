"""The report's text: the precision table as Markdown, the index page, the extreme-events table.

Pure functions of the metrics dictionary that :func:`hepgen.validate.report.run_report` builds
(the same dictionary that goes into ``metrics.json``).
"""

from __future__ import annotations

import html
import math

import numpy as np

from .. import __version__, observables
from ..events import EventSample

REWEIGHT_MAX_AUC = 0.75  # show the reweighted sample only for a classifier AUC up to this
REWEIGHT_MIN_EFFECTIVE = 0.1  # ... and an effective sample fraction (sum w)^2 / (N sum w^2) at least this
WIDE_SECTIONS = ("2-D maps", "Migration: source -> mapped")  # figures with several panels


def fmt(x, digits=3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def extreme_table(sample: EventSample, logw: np.ndarray, which: str, columns, n: int = 10) -> str:
    """The ``n`` events with the highest / lowest (``which``) log w, with the observables ``columns``
    (integer-valued ones without decimals)."""
    ok = np.flatnonzero(np.isfinite(logw))
    if ok.size == 0:
        return ""
    order = ok[np.argsort(logw[ok])]
    idx = order[:n] if which == "lowest" else order[::-1][:n]
    vals = observables.compute(sample.select(idx), columns)
    digits = {c: 0 if np.array_equal(v[np.isfinite(v)], np.round(v[np.isfinite(v)])) else 2 for c, v in vals.items()}
    head = "| log w | " + " | ".join(columns) + " |\n|" + "---|" * (len(columns) + 1) + "\n"
    rows = ["| " + f"{logw[i]:+.2f} | " + " | ".join(fmt(float(vals[c][j]), digits[c]) for c in columns) + " |"
            for j, i in enumerate(idx)]
    return head + "\n".join(rows) + "\n"


def jsonable(x):
    """numpy scalars -> Python, NaN/inf -> None (strict JSON)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def observable_table(observables: dict) -> list[str]:
    lines = ["| observable | max abs(gen/ref − 1) | χ²/ndf | ndf | band coverage | pull width |", "|---|---|---|---|---|---|"]
    for name, r in observables.items():
        lines.append(f"| {name} | {fmt(r.get('max_abs_dev'))} | {fmt(r.get('chi2_ndf'), 2)} | {r.get('ndf', 0)} | "
                     f"{fmt(r.get('coverage'), 2)} | {fmt(r.get('pull_width'), 2)} |")
    return lines


def weights_lines(weights: dict) -> list[str]:
    """The weighted samples' line of the precision table ([] when every sample has unit weights,
    so an unweighted report reads as before): effective sample size (sum w)^2 / sum w^2 and the
    fraction of negative weights, per sample."""
    if not any(w["weighted"] for w in weights.values()):
        return []
    parts = [f"{name} {w['effective_events']:.1f}" + (f" ({w['negative_fraction']:.1%} negative weights)"
                                                       if w["negative_fraction"] > 0 else "")
             for name, w in weights.items()]
    return ["", "Weighted samples: histograms are sums of weights with sqrt(Σw²) errors; effective sample size "
            "(Σw)²/Σw²: " + ", ".join(parts) + "."]


def markdown(m: dict, heading: str = "jets", sections: list[str] = ()) -> str:
    """The precision table; ``heading`` names the categories (the process's split), ``sections``:
    more Markdown lines, after the observables (the acceptance and the source comparison)."""
    inp = m["inputs"]
    against = f"Against the reference: {inp['reference']}, {inp['n_reference']} events."
    lines = [f"# Precision table: {inp['generated']} vs {inp['reference']}", ""]
    lines.append(f"{inp['n_generated']} generated events ({inp['n_draws'] or 'no'} Bayesian draws), "
                 f"{inp['n_reference']} reference events ({inp['reference']}); bins trusted with ≥ {m['min_bin_events']} "
                 "events in both histograms.")
    if inp.get("shared_noise") and (inp.get("n_draws") or 0) > 1:
        lines.append("The draws share their noise, so the histograms of all generated events carry the statistical "
                     "errors and event counts of one draw.")
    if m.get("heldout"):
        lines.append(f"The tables compare with this reference; the last section repeats the histogram comparison "
                     f"against the {m['heldout']['reference']} ({m['heldout']['n_reference']} events).")
    lines += weights_lines(inp.get("weights", {}))
    lines.append("")
    c = m.get("classifier")
    if c:
        lines += ["## Classifier two-sample test (calibrated, out-of-fold)", "", against, "",
                  f"| {heading} | AUC | spread over runs | null σ | ref. events | gen. events |", "|---|---|---|---|---|---|"]
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
        lines.append(f"| fraction {k} {heading} | {m['multiplicity']['reference'][k]:.4f} | {m['multiplicity']['generated'][k]:.4f} |")
    for k in m["cuts"]["reference"]:
        lines.append(f"| cut violation: {k} | {m['cuts']['reference'][k]:.4f} | {m['cuts']['generated'][k]:.4f} |")
    tpe = m.get("time_per_event_s")
    lines.append(f"| generation time per event | | {('%.3g s' % tpe) if tpe else 'unknown'} |")
    lines += ["", "## Observables", "", against, ""] + observable_table(m["observables"]) + list(sections)
    amp = m.get("amplification")
    if amp:
        lines += ["", f"## Amplification (quantile MSE, {amp['n_quantiles']} quantiles; training events: {amp['n_train'] or 'unknown'})", "",
                  against, "", "| observable | equivalent reference events | amplification |", "|---|---|---|"]
        for name, r in amp["observables"].items():
            neq = (">" if r["lower_bound"] else "") + f"{r['n_equiv']:.3g}"
            lines.append(f"| {name} | {neq} | {fmt(r['amplification'], 2)} |")
    h = m.get("heldout")
    if h:
        lines += ["", f"## Second check: the {h['reference']}", "",
                  f"Against the {h['reference']}: {h['n_reference']} events, never trained on (histograms only, "
                  "no classifier).", "", "| | held-out | generated |", "|---|---|---|"]
        for k, f in h["multiplicity"].items():
            lines.append(f"| fraction {k} {heading} | {f:.4f} | {m['multiplicity']['generated'][k]:.4f} |")
        lines += [""] + observable_table(h["observables"])
    return "\n".join(lines) + "\n"


def index_html(m: dict, entries: list[tuple[str, str, str]], md_table: str) -> str:
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
        cls = " class='wide'" if sec in WIDE_SECTIONS else ""
        pdf = png[:-4] + ".pdf"
        out.append(f"<figure><a href='{html.escape(pdf)}'><img{cls} src='{html.escape(png)}' alt='{html.escape(title)}'></a>"
                   f"<figcaption>{html.escape(title)}</figcaption></figure>")
    out.append("<h2>Precision table</h2><pre>" + html.escape(md_table) + "</pre></body></html>")
    return "\n".join(out)
