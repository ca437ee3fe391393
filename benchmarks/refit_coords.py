"""Copy a run and refit its coordinates with the current code, leaving the network as trained.

    python benchmarks/refit_coords.py RUN NEW_RUN

For changes that touch only what generation draws from, not what training sees (the smoothed
dimuon line shape of ``mass_sampling: marginal``): the copy then scores as a new training with the
current code would, without training again. Every coordinate buffer other than the line shape's
``knots`` and ``flat_edges`` must come out identical, or nothing is written. The copy has no
generated.root (generate again).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hepgen.runs import load_run  # noqa: E402

REFIT = ("knots", "flat_edges")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("new", type=Path)
    args = ap.parse_args()
    if args.new.exists():
        sys.exit(f"{args.new} exists")
    run = load_run(args.run)
    data = run.process.load_data(run.card, log=lambda m: None)
    rows = data.select(np.load(args.run / "split.npz")["train"])
    if run.card.data.weights == "none":  # as hepgen.trainingdata: unweighted training counts every event once
        rows = dataclasses.replace(rows, weight=np.ones(len(rows)))
    new = run.process.coords(run.card).fit(rows).state_dict()
    states = {f: torch.load(args.run / f, weights_only=False) for f in ("best.pt", "last.pt")}
    for f, state in states.items():
        changed = [k for k in state["coords"] if not k.endswith(REFIT) and not torch.equal(state["coords"][k], new[k])]
        if changed:
            sys.exit(f"{f}: refitting changes more than the line shape: {changed}")
    shutil.copytree(args.run, args.new, ignore=shutil.ignore_patterns("generated.root"))
    for f, state in states.items():
        state["coords"] = new
        torch.save(state, args.new / f)
    torch.save(new, args.new / "coords.pt")
    print(f"{args.new}: knots per multiplicity", [int(np.isfinite(k).sum()) for k in new["marginal.knots"].numpy()])


if __name__ == "__main__":
    main()
