"""Figures in the field's convention (matplotlib + mplhep), written as PNG and PDF.

* :func:`comparison`: top panel normalised reference (black points) vs generated (line), optional
  training / reweighted samples, the Bayesian band (mean +- std over posterior draws); ratio panel
  generated / reference with statistical errors and the band.
* :func:`map_2d`: reference, generated and their ratio as three 2-D panels.
* :func:`calibration_curve`, :func:`log_weights`: the classifier test.
* :func:`pull_histograms`: the coverage test's pulls per category, with N(0, 1).
* :func:`migration`: a map from a source sample, source vs mapped value per event and the shift.

The label is experiment-*style* (``--style CMS|ATLAS|ROOT`` picks fonts and placement) with
"hepgen" in place of an experiment name: these are not an experiment's approved plots.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mplhep  # noqa: E402
import numpy as np  # noqa: E402

from .histograms import Band, Binned  # noqa: E402

STYLES = ("CMS", "ATLAS", "ROOT")
GEN_COLOR = "#3f90da"
BAND_COLOR = "#92dadd"
TRAIN_COLOR = "#717581"
REW_COLOR = "#e42536"


def use_style(style: str) -> None:
    plt.style.use({"CMS": mplhep.style.CMS, "ATLAS": mplhep.style.ATLAS, "ROOT": mplhep.style.ROOT}[style])


def _label(ax, style: str, sqrt_s_tev: float = 13.0) -> None:
    # data=False makes mplhep append "Simulation" to the experiment text itself
    kw = dict(ax=ax, exp="hepgen", text="", data=False, rlabel=f"√s = {sqrt_s_tev:g} TeV", loc=0)
    if style == "ATLAS":
        mplhep.atlas.label(**{**kw, "loc": 1})
    elif style == "CMS":
        mplhep.cms.label(**kw)
    else:
        ax.set_title(f"hepgen Simulation    √s = {sqrt_s_tev:g} TeV", fontsize="medium", loc="left")


def save(fig, stem: Path) -> list[Path]:
    """Write ``stem.png`` (100 dpi) and ``stem.pdf``; close the figure."""
    out = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(out[0], dpi=100)
    fig.savefig(out[1])
    plt.close(fig)
    return out


def _steps(edges, y):
    return np.append(y, y[-1])


def _ratio_range(ratio: np.ndarray, ok: np.ndarray, default: tuple[float, float]) -> tuple[float, float]:
    """The spec's range, widened in steps while more than 10% of the trusted points leave it."""
    r = ratio[ok & np.isfinite(ratio)]
    for lo, hi in (default, (0.5, 1.5), (0.0, 2.0), (0.0, 3.0)):
        lo, hi = min(lo, default[0]), max(hi, default[1])
        if r.size == 0 or np.mean((r < lo) | (r > hi)) <= 0.1:
            return lo, hi
    return lo, hi


def comparison(
    stem: Path,
    ref: Binned,
    gen: Binned,
    xlabel: str,
    *,
    style: str = "CMS",
    band: Band | None = None,
    training: Binned | None = None,
    reweighted: Binned | None = None,
    logy: bool = False,
    ratio_range: tuple[float, float] = (0.8, 1.2),
    min_entries: int = 100,
    labels: tuple[str, str] = ("Reference", "Generated"),
    band_label: str = "Bayesian band (±1σ)",
    training_label: str = "Training",
    ratio_label: str = "Gen. / Ref.",
) -> list[Path]:
    """The two-panel comparison plot; returns the written files. ``training``: a third histogram
    drawn dashed (the training sample, or an unfolding's reco level), named ``training_label``."""
    use_style(style)
    edges = ref.edges
    fig, (ax, rax) = plt.subplots(
        2, 1, figsize=(8, 8), sharex=True, gridspec_kw={"height_ratios": (3, 1), "hspace": 0.06}
    )
    if band is not None:
        ax.fill_between(edges, _steps(edges, band.mean - band.std), _steps(edges, band.mean + band.std),
                        step="post", color=BAND_COLOR, alpha=0.7, lw=0, label=band_label)
    if training is not None:
        mplhep.histplot(training.density, edges, ax=ax, color=TRAIN_COLOR, ls="--", lw=1.5, label=training_label)
    mplhep.histplot(gen.density, edges, ax=ax, color=GEN_COLOR, lw=2, label=labels[1])
    if reweighted is not None:
        mplhep.histplot(reweighted.density, edges, ax=ax, color=REW_COLOR, ls=":", lw=2, label="Reweighted")
    mplhep.histplot(ref.density, edges, yerr=ref.error, ax=ax, histtype="errorbar", color="black",
                    markersize=4, label=labels[0])
    ax.set_ylabel(r"$1/N\;dN/dx$")
    pos = ref.density[ref.density > 0]
    tops = [ref.density + ref.error, gen.density] + ([band.mean + band.std] if band is not None else [])
    top = float(max(np.max(t) for t in tops)) if len(pos) else 1.0
    # the data fill the lower ~57% of the panel; the legend and the label live above
    if logy and len(pos):
        ax.set_yscale("log")
        lo = pos.min() * 0.3
        ax.set_ylim(lo, lo * (top / lo) ** (1 / 0.57))
    else:
        ax.set_ylim(0, top / 0.57 if top > 0 else 1)
    ax.legend(loc="upper right", fontsize="small", frameon=False)
    _label(ax, style)

    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = gen.density / ref.density
        err = np.abs(ratio * np.hypot(gen.error / gen.density, ref.error / ref.density))  # negative weights: ratio < 0
        ratio, err = (np.where(np.isfinite(ratio) & np.isfinite(err), a, np.nan) for a in (ratio, err))
        # the range follows every point with a meaningful reference count (>= 10 events)
        lo, hi = _ratio_range(ratio, ref.entries >= min(10, min_entries), ratio_range)
        rel = ref.error / ref.density
        rax.fill_between(edges, _steps(edges, 1 - rel), _steps(edges, 1 + rel), step="post",
                         color="lightgrey", alpha=0.8, lw=0, label="Ref. stat.")
        if band is not None:
            rb_lo, rb_hi = (band.mean - band.std) / ref.density, (band.mean + band.std) / ref.density
            rax.fill_between(edges, _steps(edges, rb_lo), _steps(edges, rb_hi), step="post",
                             color=BAND_COLOR, alpha=0.6, lw=0)
    centers = 0.5 * (edges[1:] + edges[:-1])
    rax.errorbar(centers, ratio, yerr=err, fmt="o", ms=3, color=GEN_COLOR, elinewidth=1)
    if reweighted is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            mplhep.histplot(reweighted.density / ref.density, edges, ax=rax, color=REW_COLOR, ls=":", lw=2)
    rax.axhline(1.0, color="black", lw=1)
    rax.set_ylim(lo, hi)
    rax.set_ylabel(ratio_label)
    rax.set_xlabel(xlabel)
    rax.set_xlim(edges[0], edges[-1])
    fig.subplots_adjust(left=0.16, right=0.96, top=0.93, bottom=0.11)
    fig.align_ylabels([ax, rax])
    return save(fig, stem)


def map_2d(stem: Path, ref: np.ndarray, gen: np.ndarray, xedges, yedges, xlabel: str, ylabel: str,
           *, style: str = "CMS", ref_counts: np.ndarray | None = None, min_entries: int = 10) -> list[Path]:
    """Reference, generated and generated/reference densities side by side; the ratio is shown
    only in bins with at least ``min_entries`` reference events (``ref_counts``)."""
    use_style(style)
    fig, axes = plt.subplots(1, 3, figsize=(21, 6.5), layout="constrained")
    vmax = max(ref.max(), gen.max()) or 1.0
    for ax, h, title in ((axes[0], ref, "Reference"), (axes[1], gen, "Generated")):
        m = ax.pcolormesh(xedges, yedges, h.T, cmap="viridis", vmin=0, vmax=vmax)
        ax.set_title(title, fontsize="medium")
        fig.colorbar(m, ax=ax, label=r"$1/N\;d^2N/dx\,dy$")
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(ref > 0, gen / ref, np.nan)
    if ref_counts is not None:
        r = np.where(ref_counts >= min_entries, r, np.nan)
    m = axes[2].pcolormesh(xedges, yedges, r.T, cmap="RdBu_r", vmin=0.5, vmax=1.5)
    axes[2].set_title(f"Gen. / Ref. (≥ {min_entries} ref. events per bin)" if ref_counts is not None
                      else "Generated / Reference", fontsize="medium")
    fig.colorbar(m, ax=axes[2], label="ratio")
    for ax in axes:
        ax.set_xlim(xedges[0], xedges[-1])
        ax.set_ylim(yedges[0], yedges[-1])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    return save(fig, stem)


def calibration_curve(stem: Path, curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                      *, style: str = "CMS") -> list[Path]:
    """Reliability diagram: per label, (mean predicted D, observed reference fraction, its error)."""
    use_style(style)
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfect calibration")
    for label, (pred, frac, err) in curves.items():
        ax.errorbar(pred, frac, yerr=err, fmt="o-", ms=4, label=label)
    ax.set_xlabel("calibrated classifier output $D$")
    ax.set_ylabel("fraction of reference events")
    # zoom on the populated range (a good generator keeps D near 1/2), same scale on both axes
    pts = np.concatenate([np.r_[p, f] for p, f, _ in curves.values()]) if curves else np.array([0.0, 1.0])
    half = min(0.5, max(0.05, float(np.max(np.abs(pts - 0.5))) * 1.15))
    ax.set_xlim(0.5 - half, 0.5 + half)
    ax.set_ylim(0.5 - half, 0.5 + 1.35 * half)
    ax.legend(loc="lower right", fontsize="small", frameon=False)
    _label(ax, style)
    fig.subplots_adjust(left=0.16, right=0.95, top=0.92, bottom=0.12)
    return save(fig, stem)


def pull_histograms(stem: Path, pulls: dict[str, np.ndarray], *, style: str = "CMS") -> list[Path]:
    """One panel per category: the histogram of its pulls (all used bins of all observables),
    normalised, with the N(0, 1) density of a calibrated band."""
    use_style(style)
    n = max(len(pulls), 1)
    fig, axes = plt.subplots(1, n, figsize=(6 * n, 5.5), squeeze=False)
    edges = np.linspace(-5, 5, 41)
    grid = np.linspace(-5, 5, 201)
    for ax, (title, p) in zip(axes[0], pulls.items()):
        p = np.asarray(p)[np.isfinite(p)]
        if p.size:
            ax.hist(np.clip(p, -4.999, 4.999), bins=edges, density=True, histtype="stepfilled", color=BAND_COLOR,
                    edgecolor=GEN_COLOR, label=f"pulls ({p.size} bins; |pull| < 1: {np.mean(np.abs(p) < 1):.2f}, "
                                               f"RMS {np.sqrt(np.mean(p**2)):.2f})")
        ax.plot(grid, np.exp(-0.5 * grid**2) / np.sqrt(2 * np.pi), color="k", lw=1.5, label="N(0, 1)")
        ax.set_xlabel("pull (last bins: overflow)")
        ax.set_ylabel("density")
        ax.set_title(title, fontsize="medium")
        ax.legend(loc="upper right", fontsize="x-small", frameon=False)
    fig.tight_layout()
    return save(fig, stem)


def log_weights(stem: Path, logw_ref: np.ndarray, logw_gen: np.ndarray, title: str,
                *, style: str = "CMS") -> list[Path]:
    """Histograms of log w, w = D / (1 - D), for reference and generated events (test split)."""
    use_style(style)
    fig, ax = plt.subplots(figsize=(8, 7))
    both = np.concatenate([logw_ref, logw_gen])
    span = max(0.5, float(np.quantile(np.abs(both), 0.999)) * 1.1) if both.size else 1.0
    edges = np.linspace(-span, span, 50)
    for x, label, color in ((logw_ref, "Reference", "black"), (logw_gen, "Generated", GEN_COLOR)):
        h, _ = np.histogram(np.clip(x, edges[0], edges[-1]), bins=edges)
        mplhep.histplot(h / max(len(x), 1), edges, ax=ax, color=color, lw=2, label=label)
    ax.set_yscale("log")
    ax.set_xlabel(r"$\log w$,  $w = D/(1-D)$")
    ax.set_ylabel("fraction of events")
    ax.set_ylim(top=ax.get_ylim()[1] * 30)
    ax.legend(loc="upper right", fontsize="small", frameon=False, title=title, title_fontsize="small")
    _label(ax, style)
    fig.subplots_adjust(left=0.16, right=0.95, top=0.92, bottom=0.12)
    return save(fig, stem)


def migration(stem: Path, source: np.ndarray, mapped: np.ndarray, edges: np.ndarray, delta_edges: np.ndarray,
              xlabel: str, *, style: str = "CMS") -> list[Path]:
    """Left: events per (source value, mapped value) bin, log colour scale, with the diagonal of
    no migration; right: the per-event shift mapped - source (log y, under/overflow in the edge bins)."""
    from matplotlib.colors import LogNorm

    use_style(style)
    fig, (ax, dax) = plt.subplots(1, 2, figsize=(17, 7), layout="constrained")
    ok = np.isfinite(source) & np.isfinite(mapped)
    h, _, _ = np.histogram2d(source[ok], mapped[ok], bins=[edges, edges])
    m = ax.pcolormesh(edges, edges, np.where(h > 0, h, np.nan).T, cmap="viridis",
                      norm=LogNorm(vmin=1, vmax=max(h.max(), 2)))
    ax.plot(edges[[0, -1]], edges[[0, -1]], color="white", lw=1, ls="--")
    fig.colorbar(m, ax=ax, label="events")
    ax.set_xlabel(f"source {xlabel}")
    ax.set_ylabel(f"mapped {xlabel}")
    d = np.clip(mapped[ok] - source[ok], delta_edges[0], delta_edges[-1])
    counts, _ = np.histogram(d, bins=delta_edges)
    mplhep.histplot(counts / max(ok.sum(), 1), delta_edges, ax=dax, color=GEN_COLOR, lw=2)
    dax.set_yscale("log")
    dax.set_xlabel(f"per event: mapped − source, {xlabel}")
    dax.set_ylabel("fraction of events")
    for a in (ax, dax):
        _label(a, style)
    return save(fig, stem)
