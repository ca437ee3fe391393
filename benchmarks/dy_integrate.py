"""LO Drell-Yan: sigma of hepgen integrate vs Pythia's sigmaGen, and VEGAS vs MadNIS at equal calls.

    python benchmarks/dy_integrate.py [--card cards/dy_lo.yaml] [--budgets 50000 200000]
                                      [--sample-calls 1000000] [--pythia-events 1000000] [--seeds 1]
                                      [--channels photon z]

For each training budget (integrand calls to adapt VEGAS / train MadNIS; MadNIS's
``madnis_steps`` scale with it, 500 calls a step, VEGAS's training calls are set to what MadNIS
spent) and seed, both draw ``--sample-calls`` weighted points and the table shows sigma +- error,
the relative error, madnis's unweighting efficiency (``unweighting_metrics``), ``<w> / max w``,
the calls and times. Then Pythia 8 (``hepgen.integrate.pythia_check``) gives sigmaGen for the
same process with ``--pythia-events`` events, and the last line compares it with the MadNIS
result of the largest budget: the acceptance is agreement within 0.5 % with both statistical
errors at most 0.2 %. Markdown on stdout; one torch thread.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hepgen.cards import load_card  # noqa: E402
from hepgen.integrate.config import integrate_config  # noqa: E402
from hepgen.integrate.integrand import DrellYan  # noqa: E402
from hepgen.integrate.pythia_check import pythia_cross_section  # noqa: E402
from hepgen.integrate.report import method_metrics  # noqa: E402
from hepgen.integrate.samplers import run_madnis, run_vegas  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--card", default="cards/dy_lo.yaml")
    ap.add_argument("--budgets", type=int, nargs="+", default=[50_000, 200_000])
    ap.add_argument("--sample-calls", type=int, default=1_000_000)
    ap.add_argument("--pythia-events", type=int, default=1_000_000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--channels", nargs="+", default=None,
                    help="phase-space channels (default: the card's), e.g. --channels photon: one channel, "
                         "the Z peak left to the adaptive sampler")
    args = ap.parse_args()
    torch.set_num_threads(1)
    card = load_card(args.card)
    base = integrate_config(card)
    if args.channels:
        base = replace(base, channels=tuple(args.channels))
    sqrt_s = card.process.sqrt_s
    print(f"card {args.card}, sqrt(s) = {sqrt_s} GeV, {base.m_min} < m_mumu < {base.m_max} GeV, PDF {base.pdf}, "
          f"channels {', '.join(base.channels)}\n")
    print("| training calls | seed | method | sigma [pb] | rel. error | unweighting eff. | <w>/max w | calls | train s | sample s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    last = None
    for budget in args.budgets:
        for seed in args.seeds:
            cfg = replace(base, training_calls=budget, sample_calls=args.sample_calls, madnis_steps=max(budget // 500, 1))
            dy = DrellYan(cfg, sqrt_s)
            madnis = run_madnis(dy, cfg, seed)
            vegas = run_vegas(dy, cfg, seed, training_calls=madnis.training_calls)
            for run in (vegas, madnis):
                m = method_metrics(run, dy.channel_count)
                print(f"| {budget} | {seed} | {run.method} | {m['sigma_pb']:.2f} ± {m['error_pb']:.2f} | "
                      f"{m['relative_error']:.2e} | {m['unweighting_efficiency']:.3f} | {m['max_weight_efficiency']:.3f} | "
                      f"{m['calls']} | {m['training_seconds']:.0f} | {m['sampling_seconds']:.0f} |", flush=True)
            last = madnis
    start = time.perf_counter()
    py = pythia_cross_section(base, sqrt_s, args.pythia_events, seed=card.seed)
    print(f"\nPythia 8 sigmaGen ({args.pythia_events} events, {time.perf_counter() - start:.0f} s): "
          f"{py['sigma_pb']:.2f} ± {py['error_pb']:.2f} pb (relative {py['error_pb'] / py['sigma_pb']:.2e})")
    diff = last.sigma / py["sigma_pb"] - 1
    pull = (last.sigma - py["sigma_pb"]) / math.hypot(last.error, py["error_pb"])
    ok = abs(diff) < 5e-3 and last.error / last.sigma <= 2e-3 and py["error_pb"] / py["sigma_pb"] <= 2e-3
    print(f"MadNIS / Pythia - 1 = {diff:+.2e} ({pull:+.2f} combined sigma): "
          f"{'within' if ok else 'NOT within'} the acceptance (0.5 %, both errors <= 0.2 %)")


if __name__ == "__main__":
    main()
