"""Coverage of the uncertainty band on the toys (ring, ramp) over several training seeds.

For each seed: train the card (default ``cards/toy_ring.yaml``; ``cards/toy_ramp.yaml`` for the ramp;
``--set`` overrides as for ``hepgen train``: a Bayesian card or one with ``model.ensemble.members``
> 1), sample ``--draws`` draws (posterior draws or ensemble members) of ``--events`` events each,
all with the same noise, histogram the toy's observable in ``--bins`` bins
(``ToyProcess.coverage_edges``: the ring's radius on [0.7, 1.3], where the truth density is > 0.05;
the ramp's x2 on [0, 1]), against the exact truth integrated over each bin, and compute the pulls
with :func:`hepgen.validate.coverage.pulls` (band and the generated sample's Poisson error; the
truth is exact). Prints per seed coverage (fraction of bins with |pull| < 1) and pull width, and
the same pooled over all seeds (the number the acceptance asks for: 0.8-1.2).

    python benchmarks/toy_coverage_seeds.py --seeds 1 2 3 4 5 [--card cards/toy_ramp.yaml]
        [--set model.bayes.kl_scale=0.1] [--draws 20] [--events 30000] [--bins 12]
        [--out validation_out/toy_coverage_seeds/NAME]

Writes ``seeds.json`` (per-seed pulls, band, truth) to ``--out``.
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
from hepgen.processes.toys import TOYS, draw_histograms  # noqa: E402
from hepgen.runs import load_run  # noqa: E402
from hepgen.train import train  # noqa: E402
from hepgen.validate.coverage import pulls, summarise_pulls  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def one_seed(card_path: str, overrides: list[str], seed: int, draws: int, events: int, edges: np.ndarray,
             out: Path) -> dict:
    card = load_card(card_path, [*overrides, f"seed={seed}", "train.threads=1"])
    t0 = time.time()
    run = load_run(train(card, progress=False, after=False, run_dir=out / f"run-seed{seed}"))
    t_train = time.time() - t0
    h = draw_histograms(run, events, draws, edges, seed=seed + 1000)
    truth = TOYS[card.process.name].truth_in_bins(edges)
    stat = np.sqrt(h.mean / (events * np.diff(edges)))  # shared noise: one sample's Poisson error
    p = pulls(h.mean, h.std, truth, stat_gen=stat, stat_ref=np.zeros_like(truth))
    s = summarise_pulls(p)
    print(f"seed {seed}: coverage {s['coverage']:.2f}, pull width {s['pull_width']:.2f}, mean pull "
          f"{np.mean(p):+.2f}; rel. band at the peak {np.min(h.std / h.mean):.3f}; median band/stat "
          f"{np.median(h.std / stat):.1f}; training {t_train:.0f} s", flush=True)
    return {"seed": seed, "pulls": p.tolist(), "mean": h.mean.tolist(), "std": h.std.tolist(), "truth": truth.tolist(),
            "stat": stat.tolist(), "train_seconds": t_train, **s}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--card", default=str(ROOT / "cards/toy_ring.yaml"))
    p.add_argument("--set", dest="overrides", action="append", default=[], help="card override key=value")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p.add_argument("--draws", type=int, default=20)
    p.add_argument("--events", type=int, default=30_000, help="events per draw")
    p.add_argument("--bins", type=int, default=12)
    p.add_argument("--out", default=str(ROOT / "validation_out/toy_coverage_seeds"))
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    edges = TOYS[load_card(a.card).process.name].coverage_edges(a.bins)
    per_seed = [one_seed(a.card, a.overrides, s, a.draws, a.events, edges, out) for s in a.seeds]
    pooled = summarise_pulls(np.concatenate([np.array(r["pulls"]) for r in per_seed]))
    widths = [r["pull_width"] for r in per_seed]
    print(f"pooled over {len(per_seed)} seeds: coverage {pooled['coverage']:.2f}, pull width {pooled['pull_width']:.2f}; "
          f"per-seed widths {' '.join(f'{w:.2f}' for w in widths)}; overrides {a.overrides}")
    (out / "seeds.json").write_text(json.dumps({"overrides": a.overrides, "draws": a.draws, "events": a.events,
                                                "edges": edges.tolist(), "pooled": pooled, "seeds": per_seed}, indent=1))


if __name__ == "__main__":
    main()
