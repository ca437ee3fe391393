"""Does the uncertainty band cover the reference? Pulls per observable and per category.

For K draws of a generator (Bayesian posterior draws or ensemble members), each bin of each
observable and category (Z+jets: jet multiplicity) gets the pull

    pull = (mean over draws - reference) / sqrt(band^2 + stat_gen^2 + stat_ref^2)

``band``: the weight uncertainty, the spread of the K draw histograms; ``stat_gen``: the
statistical error of the mean over draws; ``stat_ref``: the reference's. How the draws' noise was
drawn decides the two generated terms (:func:`band_and_stat`): ``hepgen generate
--bayes-samples K`` feeds every draw the SAME noise, so the draw-to-draw spread is the weight
uncertainty alone and the mean carries the Poisson error of ONE draw (the draws share it, it does
not average away); draws with independent noise have a spread that holds their own Poisson error
too (subtracted in quadrature) and a mean whose error is one draw's over sqrt(K).

A calibrated band gives pulls ~ N(0, 1): coverage (fraction of bins with |pull| < 1) 0.68 and
pull width (root mean square of the pulls about zero, so a coherent bias counts) 1. Where the
sampling noise is larger than the band the pulls are N(0, 1) whatever the band is: coverage is
not measurable there, and the report says so (:data:`NOISE_DOMINATES`).

Binning: per observable and category, :data:`BINS` bins between the reference's 5 % and 95 %
quantiles in that category; histograms are normalised to all events of the sample (the
convention of :mod:`.histograms`), so a wrong category fraction shows; observables undefined in
a category (pT of the third jet in 1-jet events) or discrete there are skipped; a bin is used
when both the reference and the pooled generated sample hold ``min_entries`` events in it.
"""

from __future__ import annotations

import math

import numpy as np

from .histograms import binned

BINS = 20
QUANTILES = (0.05, 0.95)
NOISE_DOMINATES = 1.0  # warn when the median sampling noise / band over a category's bins exceeds this


def pulls(mean: np.ndarray, band: np.ndarray, ref: np.ndarray, stat_gen: np.ndarray,
          stat_ref: np.ndarray) -> np.ndarray:
    """Pulls ``[B]`` of the band mean against the reference (NaN where the combined error is 0)."""
    sig = np.sqrt(np.asarray(band) ** 2 + np.asarray(stat_gen) ** 2 + np.asarray(stat_ref) ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sig > 0, (np.asarray(mean) - np.asarray(ref)) / sig, np.nan)


def summarise_pulls(p: np.ndarray) -> dict:
    """bins, coverage (fraction |pull| < 1), pull width (RMS about 0), mean pull, over finite pulls."""
    p = np.asarray(p, dtype=np.float64)
    p = p[np.isfinite(p)]
    if p.size == 0:
        return {"bins": 0, "coverage": math.nan, "pull_width": math.nan, "mean_pull": math.nan}
    return {"bins": int(p.size), "coverage": float(np.mean(np.abs(p) < 1.0)),
            "pull_width": float(np.sqrt(np.mean(p**2))), "mean_pull": float(np.mean(p))}


def band_and_stat(draw_density: np.ndarray, draw_error: np.ndarray, shared_noise: bool) -> tuple[np.ndarray, np.ndarray]:
    """(band, stat_gen) ``[B]`` from K draw histograms (density and statistical error ``[K, B]``).

    Shared noise: band = the spread over draws, stat_gen = one draw's error (mean over draws).
    Independent noise: band^2 = spread^2 - one draw's error^2 (at least 0), stat_gen = one draw's
    error / sqrt(K)."""
    k = len(draw_density)
    spread = draw_density.std(axis=0, ddof=1)
    one = draw_error.mean(axis=0)
    if shared_noise:
        return spread, one
    return np.sqrt(np.maximum(spread**2 - one**2, 0.0)), one / math.sqrt(k)


def quantile_edges(values: np.ndarray, weights: np.ndarray, bins: int = BINS) -> np.ndarray | None:
    """``bins`` equal bins between the 5 % and 95 % quantiles of the finite ``values``; None when
    fewer than ``2 bins`` distinct values (undefined or discrete here)."""
    ok = np.isfinite(values)
    v = values[ok]
    if v.size == 0 or len(np.unique(v)) < 2 * bins:
        return None
    order = np.argsort(v)
    cw = np.cumsum(weights[ok][order])
    lo, hi = (v[order][min(np.searchsorted(cw, q * cw[-1]), v.size - 1)] for q in QUANTILES)
    return np.linspace(lo, hi, bins + 1) if hi > lo else None


def observable_coverage(v_ref: np.ndarray, w_ref: np.ndarray, v_gen: np.ndarray, w_gen: np.ndarray,
                        draw: np.ndarray, shared_noise: bool, min_entries: int, bins: int = BINS) -> dict | None:
    """One observable in one category (values NaN outside it): the pulls and their summary, the
    median relative band and the median noise/band ratio over the used bins; None when skipped."""
    edges = quantile_edges(v_ref, w_ref, bins)
    if edges is None:
        return None
    ref = binned(v_ref, edges, w_ref)
    pooled = binned(v_gen, edges, w_gen)
    per = [binned(v_gen[draw == k], edges, w_gen[draw == k]) for k in np.unique(draw)]
    dens = np.stack([b.density for b in per])
    band, stat_gen = band_and_stat(dens, np.stack([b.error for b in per]), shared_noise)
    mean = dens.mean(axis=0)
    use = (ref.entries >= min_entries) & (pooled.entries >= min_entries) & (ref.density > 0)
    if not use.any():
        return None
    p = pulls(mean[use], band[use], ref.density[use], stat_gen[use], ref.error[use])
    noise = np.sqrt(stat_gen[use] ** 2 + ref.error[use] ** 2)
    with np.errstate(divide="ignore"):
        ratio = np.where(band[use] > 0, noise / band[use], np.inf)
    return {**summarise_pulls(p), "pulls": p, "edges": edges,
            "band_rel": float(np.median(band[use] / mean[use])), "noise_over_band": float(np.median(ratio))}


def category_coverage(v_ref: dict, w_ref: np.ndarray, lab_ref: np.ndarray, v_gen: dict, w_gen: np.ndarray,
                      lab_gen: np.ndarray, draw: np.ndarray, label: int, shared_noise: bool,
                      min_entries: int) -> dict:
    """Every observable of ``v_ref`` / ``v_gen`` ({name: values [N]}) in the category ``label``:
    {"observables": {name: observable_coverage}, and the category's summary over all used bins
    (coverage, pull width), the median pull width over observables, the worst observable (lowest
    coverage), the median noise/band ratio, and ``noise_dominated``}."""
    out: dict = {}
    for name in v_ref:
        r = observable_coverage(np.where(lab_ref == label, v_ref[name], np.nan), w_ref,
                                np.where(lab_gen == label, v_gen[name], np.nan), w_gen, draw, shared_noise,
                                min_entries)
        if r is not None:
            out[name] = r
    if not out:
        return {"observables": {}, "bins": 0, "coverage": None, "pull_width": None, "median_pull_width": None,
                "worst": None, "noise_over_band": None, "noise_dominated": False}
    all_p = np.concatenate([r["pulls"] for r in out.values()])
    worst = min(out, key=lambda n: (out[n]["coverage"], -out[n]["pull_width"]))
    ratio = float(np.median([r["noise_over_band"] for r in out.values()]))
    return {"observables": out, **summarise_pulls(all_p),
            "median_pull_width": float(np.median([r["pull_width"] for r in out.values()])),
            "worst": worst, "noise_over_band": ratio, "noise_dominated": bool(ratio > NOISE_DOMINATES)}


def warning(title: str, cat: dict) -> str | None:
    """The one-line warning for a category whose sampling noise hides the band (else None)."""
    if not cat.get("noise_dominated"):
        return None
    return (f"{title}: the sampling noise is {cat['noise_over_band']:.2f}x the band (median over bins), so coverage "
            "is not measurable here; generate more events per draw (docs/validation.md, 'Coverage')")


def events_per_draw(band_rel: float, bin_fraction: float, noise_over_band: float = 0.5,
                    n_reference: float | None = None) -> float:
    """Events per draw so that the sampling noise in a bin holding ``bin_fraction`` of the events
    is ``noise_over_band`` times a band of relative width ``band_rel`` (shared draw noise: one
    draw's Poisson error counts). The relative noise is sqrt(1/(N f) + 1/(N_ref f)); with
    ``n_reference`` None the reference is as large as a draw: N = 2 / (f (r b)^2); else
    N = 1 / (f (r b)^2 - 1 / N_ref), infinite when the reference alone is too noisy."""
    need = bin_fraction * (noise_over_band * band_rel) ** 2
    if n_reference is None:
        return 2.0 / need
    rest = need - 1.0 / n_reference
    return 1.0 / rest if rest > 0 else math.inf


def expected_pull_width(draws: int) -> float:
    """The pull width of a calibrated band estimated from ``draws`` draws when the band dominates:
    the pull is then Student-t with K - 1 degrees of freedom, RMS sqrt((K - 1) / (K - 3)) (K > 3)."""
    return math.sqrt((draws - 1) / (draws - 3)) if draws > 3 else math.inf


def evaluate(v_ref: dict, w_ref: np.ndarray, lab_ref: np.ndarray, v_gen: dict, w_gen: np.ndarray, lab_gen: np.ndarray,
             draw: np.ndarray, members: dict, shared_noise: bool, min_entries: int) -> dict:
    """The coverage section of the metrics: per category (``members`` {label: Category}) the
    :func:`category_coverage`, with the warnings; the pulls stay in ``pulls`` (for the plot, not JSON)."""
    cats, pulls_by_title, warnings = {}, {}, []
    for label, member in members.items():
        r = category_coverage(v_ref, w_ref, lab_ref, v_gen, w_gen, lab_gen, draw, label, shared_noise, min_entries)
        pulls_by_title[member.title] = np.concatenate([o["pulls"] for o in r["observables"].values()]) \
            if r["observables"] else np.zeros(0)
        r["observables"] = {n: {k: v for k, v in o.items() if k not in ("pulls", "edges")} for n, o in r["observables"].items()}
        cats[member.key] = r
        if (w := warning(member.title, r)) is not None:
            warnings.append(w)
    k = len(np.unique(draw))
    return {"draws": k, "noise": "shared" if shared_noise else "independent", "bins": BINS,
            "expected_pull_width": expected_pull_width(k), "categories": cats, "warnings": warnings,
            "pulls": pulls_by_title}


def markdown(cov: dict, heading: str) -> list[str]:
    """The coverage section of metrics.md: the summary per category, the warnings, then per
    observable and category."""
    def f(x, d=2):
        return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{d}f}"

    lines = ["", "## Coverage of the uncertainty band", "",
             f"{cov['draws']} draws ({cov['noise']} noise); per observable and {heading}: {cov['bins']} bins between the "
             "reference's 5 % and 95 % quantiles; pull = (mean over draws − reference) / √(band² + stat_gen² + stat_ref²). "
             f"Calibrated: 68 % of bins with |pull| < 1, pull width (RMS) 1 — with {cov['draws']} draws "
             f"{f(cov['expected_pull_width'])} where the band dominates (Student t).", "",
             f"| {heading} | bins | \\|pull\\| < 1 | pull width | median pull width | worst observable | noise / band |",
             "|---|---|---|---|---|---|---|"]
    for key, r in cov["categories"].items():
        worst = r["worst"]
        wtxt = f"{worst} ({f(r['observables'][worst]['coverage'])})" if worst else "–"
        lines.append(f"| {key} | {r['bins']} | {f(r['coverage'])} | {f(r['pull_width'])} | {f(r['median_pull_width'])} | "
                     f"{wtxt} | {f(r['noise_over_band'])} |")
    lines += [""] + [f"**Warning**: {w}" for w in cov["warnings"]]
    lines += ["", f"| observable | {heading} | bins | \\|pull\\| < 1 | pull width | mean pull | band / mean | noise / band |",
              "|---|---|---|---|---|---|---|---|"]
    for key, r in cov["categories"].items():
        for name, o in r["observables"].items():
            lines.append(f"| {name} | {key} | {o['bins']} | {f(o['coverage'])} | {f(o['pull_width'])} | "
                         f"{f(o['mean_pull'], 2)} | {f(o['band_rel'], 4)} | {f(o['noise_over_band'])} |")
    return lines
