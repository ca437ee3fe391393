"""Milliseconds per training step of a card's network: the fused Adam/AdamW update hepgen uses
(:func:`hepgen.optim.adam`) against the per-tensor loop, side by side in one process.

    python benchmarks/optimizer_step.py [--card cards/zjets.yaml] [--steps 400] [--repeats 3]
        [--threads 2] [--set SECTION.KEY=VALUE ...]

Each step is the training loop's: a batch of the card's training rows (its data file must exist),
the model's loss, backward, gradient clipping, the optimiser update. The variants alternate
``--repeats`` times from the same initial weights; the lines report each variant's ms per step
and the ratio to the loop.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hepgen.cards import load_card  # noqa: E402
from hepgen.distributed import loss_module  # noqa: E402
from hepgen.nuisance import TrainingConditions  # noqa: E402
from hepgen.runlog import HeldLog  # noqa: E402
from hepgen.runs import build_for  # noqa: E402
from hepgen.trainingdata import draw_and_loss_weights  # noqa: E402
from hepgen.trainrows import training_rows  # noqa: E402


class _Single:
    on = False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--card", default="cards/zjets.yaml")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    card = load_card(args.card, args.overrides)
    torch.manual_seed(card.seed)
    _, model0 = build_for(card)
    data = training_rows(card, HeldLog(True), False, model0, report=False)
    draw, w_loss = draw_and_loss_weights(data, card.train)
    model0.attach_coords(data.coords)
    conditions = TrainingConditions(card, data.nuisance_slopes, torch.device("cpu"), draw)
    batch = card.train.batch_size
    perm = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(0))
    cls = torch.optim.AdamW if card.train.optimizer == "adamw" else torch.optim.Adam

    def per_step(fused: bool) -> float:
        model = copy.deepcopy(model0)
        loss_of = loss_module(model, _Single())
        opt = cls(model.parameters(), lr=card.train.lr, weight_decay=card.train.weight_decay, fused=fused or None)
        start = time.perf_counter()
        for step in range(args.steps):
            idx = perm[(step * batch) % (len(perm) - batch):][:batch]
            loss = loss_of(*conditions.batch(data.x_train, data.c_train, w_loss, idx))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), card.train.grad_clip)
            opt.step()
        return (time.perf_counter() - start) / args.steps * 1e3

    print(f"{args.card}: {sum(p.numel() for p in model0.parameters())} parameters in "
          f"{len(list(model0.parameters()))} tensors, batch {batch}, {args.threads} threads, {args.steps} steps")
    for r in range(args.repeats):
        loop, fused = per_step(False), per_step(True)
        print(f"repeat {r + 1}: loop {loop:.2f} ms/step, fused {fused:.2f} ms/step, fused/loop {fused / loop:.3f}")


if __name__ == "__main__":
    main()
