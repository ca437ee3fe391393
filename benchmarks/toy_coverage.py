"""Coverage of hepgen's Bayesian band on the toy ring, with the real Bayesian CFM.

Trains the card (default ``cards/toy_ring.yaml``; ``--set`` overrides as for ``hepgen train``)
or loads an existing run folder (``--run``), draws ``--draws`` posterior draws of the network
weights, samples ``--events`` events from each draw (the same noise for every draw, so the
draw-to-draw spread is the weight uncertainty, not the noise of a finite sample) and histograms
the radius r = |x| (exact truth: Gaussian ring, integrated over each bin) and x1 (truth from a
``--truth-events`` truth sample, with its statistical error).

Per histogram it prints, per bin: truth density, band mean, band std (relative), the statistical
error of the band mean (a finite generated sample; shared by all draws since the noise is shared),
the pull (mean - truth) / std; and over bins (``hepgen.validate.metrics.band_coverage``):
coverage of the truth by mean +- std (0.68 for a calibrated band) and the pull width (1), both
with the band alone and with the band + the statistical errors in quadrature. Bins are only
used where the truth density exceeds ``--min-density`` (the band in empty tails says nothing).

    python benchmarks/toy_coverage.py [--set train.threads=1] [--set model.bayes.kl_scale=0.3]
        [--run RUN] [--draws 20] [--events 200000] [--bins 16] [--out validation_out/toy_coverage]

Writes ``coverage.png`` (density + band + truth, pulls) and ``coverage.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hepgen.cards import load_card  # noqa: E402
from hepgen.runs import load_run  # noqa: E402
from hepgen.processes.toys import TOY_RING, sample_toy  # noqa: E402
from hepgen.validate.metrics import band_coverage  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def sample_draws(run, n: int, draws: int, seed: int) -> list[np.ndarray]:
    """``draws`` arrays ``[n, 2]``, one per posterior draw, all from the same noise."""
    return [sample_toy(run, n, d, seed) for d in range(draws)]


def histogram_draws(values: list[np.ndarray], edges: np.ndarray) -> np.ndarray:
    """Density per draw ``[K, B]`` (normalised to the full sample, so events outside count)."""
    w = np.diff(edges)
    return np.array([np.histogram(v, bins=edges)[0] / (len(v) * w) for v in values])


def summarise(name: str, dens: np.ndarray, truth: np.ndarray, truth_err: np.ndarray, n: int,
              edges: np.ndarray, min_density: float) -> dict:
    mean, std = dens.mean(0), dens.std(0, ddof=1)
    width = np.diff(edges)
    stat = np.sqrt(np.maximum(mean, 1e-300) / (n * width))  # Poisson error of one draw's density
    use = truth > min_density
    cov_band, pw_band = band_coverage(truth[use], truth_err[use], mean[use], std[use])
    cov_all, pw_all = band_coverage(truth[use], np.sqrt(truth_err[use] ** 2 + stat[use] ** 2), mean[use], std[use])
    pulls = (mean - truth) / np.where(std > 0, std, np.nan)
    print(f"\n{name}: {use.sum()} bins with truth density > {min_density}")
    print(f"{'bin':>15} {'truth':>8} {'mean':>8} {'std/mean':>9} {'stat/mean':>9} {'dev/truth':>9} {'pull':>7}")
    for i in range(len(truth)):
        mark = "" if use[i] else "   (not used)"
        print(f"[{edges[i]:6.3f},{edges[i + 1]:6.3f}] {truth[i]:8.4f} {mean[i]:8.4f} {std[i] / mean[i]:9.3f} "
              f"{stat[i] / mean[i]:9.4f} {mean[i] / truth[i] - 1:+9.3f} {pulls[i]:+7.2f}{mark}")
    print(f"{name}: coverage {cov_band:.3f}, pull width {pw_band:.2f} (band only); "
          f"{cov_all:.3f}, {pw_all:.2f} (band + generated-sample stat error); "
          f"median std/stat {np.median(std[use] / stat[use]):.1f}")
    rel = std[use] / mean[use]
    order = np.argsort(truth[use])
    corr = float(np.corrcoef(np.log(truth[use]), np.log(rel))[0, 1])
    print(f"{name}: relative band width vs truth density (sparse -> dense): "
          + " ".join(f"{truth[use][j]:.3g}:{rel[j]:.3f}" for j in order)
          + f"; corr(log density, log rel. width) = {corr:+.2f}")
    return {"edges": edges.tolist(), "truth": truth.tolist(), "truth_err": truth_err.tolist(),
            "mean": mean.tolist(), "std": std.tolist(), "stat": stat.tolist(), "used": use.tolist(),
            "coverage": cov_band, "pull_width": pw_band, "coverage_with_stat": cov_all,
            "pull_width_with_stat": pw_all, "corr_log_density_log_rel_width": corr}


def plot(results: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(results), figsize=(5 * len(results), 5.5), sharex="col",
                             gridspec_kw={"height_ratios": [3, 1.4]}, squeeze=False)
    for k, (name, r) in enumerate(results.items()):
        e = np.array(r["edges"])
        c = 0.5 * (e[1:] + e[:-1])
        mean, std, truth = np.array(r["mean"]), np.array(r["std"]), np.array(r["truth"])
        ax, px = axes[0, k], axes[1, k]
        ax.stairs(truth, e, color="k", label="truth")
        ax.stairs(mean, e, color="C0", label="generated (mean over draws)")
        ax.stairs(mean + std, e, baseline=mean - std, fill=True, alpha=0.3, color="C0", label="Bayesian band (1 sd)")
        ax.set_ylabel("density")
        ax.set_title(f"{name}: coverage {r['coverage']:.2f}, pull width {r['pull_width']:.2f}", fontsize=9)
        ax.legend(fontsize=7)
        use = np.array(r["used"])
        pull = np.where(use, (mean - truth) / np.where(std > 0, std, np.nan), np.nan)
        px.axhspan(-1, 1, color="0.85")
        px.plot(c, pull, "o", ms=3, color="C0")
        px.axhline(0, color="k", lw=0.8)
        px.set_ylabel("(mean - truth) / sd")
        px.set_xlabel(name)
        lim = np.nanmax(np.abs(pull)) if np.isfinite(pull).any() else 3
        px.set_ylim(-max(3, 1.1 * lim), max(3, 1.1 * lim))
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--card", default=str(ROOT / "cards/toy_ring.yaml"))
    p.add_argument("--set", dest="overrides", action="append", default=[], help="card override key=value")
    p.add_argument("--run", help="use this trained run folder instead of training")
    p.add_argument("--draws", type=int, default=20)
    p.add_argument("--events", type=int, default=200_000, help="events per posterior draw")
    p.add_argument("--bins", type=int, default=16)
    p.add_argument("--truth-events", type=int, default=4_000_000)
    p.add_argument("--min-density", type=float, default=0.05)
    p.add_argument("--out", default=str(ROOT / "validation_out/toy_coverage"))
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.time()
    if a.run:
        run_path = Path(a.run)
    else:
        from hepgen.train import train

        card = load_card(a.card, a.overrides)
        run_path = train(card, progress=False, after=False, run_dir=out / "run")
    t_train = time.time() - t0
    run = load_run(run_path)
    card = run.card
    if card.process.name != "toy_ring":
        sys.exit("toy_coverage: the card's process must be toy_ring")
    if card.train.threads:
        torch.set_num_threads(card.train.threads)
    b = card.model.bayes
    print(f"run {run_path}: {card.simulate.events} events, {card.train.epochs} epochs, "
          f"network {card.model.network.hidden}x{card.model.network.layers}, prior_sigma {b.prior_sigma}, "
          f"kl_scale {b.kl_scale}; training {t_train:.0f} s")

    t1 = time.time()
    x = sample_draws(run, a.events, a.draws, card.seed + 12345)
    t_gen = time.time() - t1
    print(f"{a.draws} posterior draws x {a.events} events: {t_gen:.0f} s")

    results = {}
    edges = np.linspace(0.6, 1.4, a.bins + 1)
    truth = TOY_RING.truth_in_bins(edges)
    results["radius"] = summarise("radius", histogram_draws([np.hypot(v[:, 0], v[:, 1]) for v in x], edges),
                                  truth, np.zeros_like(truth), a.events, edges, a.min_density)
    edges = np.linspace(-1.2, 1.2, a.bins + 1)
    ref = TOY_RING.sample_truth(a.truth_events, 987654)[:, 0]
    counts = np.histogram(ref, bins=edges)[0]
    w = np.diff(edges)
    results["x1"] = summarise("x1", histogram_draws([v[:, 0] for v in x], edges), counts / (len(ref) * w),
                              np.sqrt(counts) / (len(ref) * w), a.events, edges, a.min_density)
    title = (f"toy ring, Bayesian CFM: {card.simulate.events} events, {card.train.epochs} epochs, "
             f"kl_scale {b.kl_scale}, prior_sigma {b.prior_sigma}; {a.draws} draws x {a.events} events")
    plot(results, out / "coverage.png", title)
    meta = {"run": str(run_path), "draws": a.draws, "events": a.events, "overrides": a.overrides,
            "train_seconds": t_train, "generate_seconds": t_gen}
    (out / "coverage.json").write_text(json.dumps(meta | {"results": results}, indent=1))
    print(f"plot {out / 'coverage.png'}")


if __name__ == "__main__":
    main()
