"""Events from a trained run: the exportable generation pipeline and streamed generation.

The pipeline (:func:`pipeline`) is ONE torch module per run and Bayesian draw, a pure function
of explicit noise, that the ONNX export wraps as it is::

    pipe = pipeline(run, draw=None | k, solver=None, steps=None)     # float32, eval mode
    noise = pipe.draw_noise(n, generator)                            # [n, pipe.noise_dim]
    p, n_jets, charge = pipe(noise)                                  # Z+jets
    x = pipe(noise)                                                  # toys: [n, 2]

Z+jets noise columns: ``[:, :m]`` the generator family's own noise (``m = model.noise_dim()``;
Gaussian for CFM), then three uniforms in [0, 1): ``[:, m]`` picks the jet multiplicity from
the fitted fractions, ``[:, m+1]`` the global azimuth (phi of the leading muon before
sorting), ``[:, m+2]`` the charge of the leading muon. Outputs: ``p`` ``[n, 2 + J, 4]``
float32 (pT, eta, phi, m): muons first, then J = 3 jet slots, each group pT-ordered (a
compare-and-swap network), absent jets all zero; ``n_jets`` ``[n]`` float32; ``charge``
``[n, 2]`` float32 (+-1) of the muons. Every op is elementary (MatMul, Add, Mul, Exp, Log,
Sin, Cos, Where, comparisons, Slice, Concat), the solver loop is unrolled.

Bayesian draws: ``draw=k`` freezes posterior draw k of the weights
(:func:`hepgen.nn.bayesian.materialize`, seeded by the card's seed) *and* draws the jet
multiplicity fractions from their Dirichlet posterior (counts + 1); ``draw=None`` uses the
weight means and the observed fractions. A plain model ignores ``draw`` for the weights.

Streaming (:func:`generate`): noise comes in blocks of :data:`BLOCK` events; block b is drawn
from ``torch.Generator`` seeded with ``block_seed(seed, b)`` and evaluated as a whole, so the
events do not depend on the chunk size, and shard k of n (events [k N/n, (k+1) N/n)) is
exactly that slice of the unsharded run. All Bayesian draws use the same noise, so their
spread is the training uncertainty, not sampling noise. Events with Delta R_jj below
``process.jet_dr_min`` are dropped and counted in the file's provenance (``dropped_dR_jj``),
as are (``dropped_acceptance``) events with a jet outside ``|eta| < process.jet_eta_max`` or
more energy than the beams: the file holds ``events`` = requested - dropped events.

Cut-corrected fractions: the cuts remove more 3-jet than 1-jet events (more jets that can
fail), which would bias the multiplicity mix of the kept events. :func:`pipeline` therefore
measures each multiplicity's pass rate eps_k on ``generate.calibration_events`` events of its
own (seeded noise, per draw) and samples the multiplicities with f_k / eps_k (normalised), so the
surviving events carry the fractions f_k (``jet_fractions`` in the provenance are the sampling
fractions, ``jet_pass_rates`` the measured eps_k; ``generate.calibration_events: 0`` turns this off).
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import time
from pathlib import Path
from typing import Callable

import awkward as ak
import numpy as np
import torch
from torch import nn

from .errors import HepgenError, InputError
from .runs import Run, load_run

BLOCK = 4096  # events per noise block: the unit of seeding and of network evaluation
N_EXTRA = 3  # uniform columns after the family's noise (Z+jets): multiplicity, azimuth, charge


def block_seed(seed: int, block: int) -> int:
    digest = hashlib.sha256(f"hepgen-generate/{seed}/{block}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _dirichlet_fractions(counts: np.ndarray, seed: int, draw: int | None) -> np.ndarray:
    if draw is None:
        return counts / counts.sum()
    digest = hashlib.sha256(f"hepgen-fractions/{seed}/{draw}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    return rng.dirichlet(counts + 1.0)


def _swap(a: torch.Tensor, b: torch.Tensor, cond: torch.Tensor):
    c = cond.unsqueeze(-1)
    return torch.where(c, b, a), torch.where(c, a, b)


class ZJetsPipeline(nn.Module):
    """noise ``[N, m + 3]`` float32 -> (p ``[N, 2+J, 4]``, n_jets ``[N]``, charge ``[N, 2]``)."""

    def __init__(self, sampler: nn.Module, inverse: nn.Module, fractions: np.ndarray, n_values, charge_frac: float,
                 model_noise_dim: int, draw_model_noise: Callable):
        super().__init__()
        self.sampler, self.inverse = sampler, inverse
        cum = np.concatenate([[0.0], np.cumsum(fractions)[:-1], [2.0]])  # last edge above any u < 1
        self.register_buffer("edges", torch.tensor(cum, dtype=torch.float32))
        self.register_buffer("n_values", torch.tensor(list(n_values), dtype=torch.float32))
        self.register_buffer("charge_frac", torch.tensor(float(charge_frac), dtype=torch.float32))
        self.model_noise_dim = model_noise_dim
        self.noise_dim = model_noise_dim + N_EXTRA
        self.max_jets = int(max(n_values))
        self._draw_model_noise = draw_model_noise
        self.fractions = [float(f) for f in fractions]
        self.pass_rates = [1.0] * len(self.fractions)

    def set_fractions(self, fractions) -> None:
        """Sample the multiplicities with ``fractions`` (sum 1) from now on."""
        cum = np.concatenate([[0.0], np.cumsum(fractions)[:-1], [2.0]])
        self.edges.copy_(torch.tensor(cum, dtype=torch.float32))
        self.fractions = [float(f) for f in fractions]

    def draw_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``[n, noise_dim]`` float32: the family's noise, then 3 uniforms (see module docstring)."""
        z = self._draw_model_noise(n, generator).float()
        return torch.cat([z, torch.rand(n, N_EXTRA, generator=generator)], dim=-1)

    def forward(self, noise: torch.Tensor):
        m = self.model_noise_dim
        z, u_mult, u_phi, u_q = noise[:, :m], noise[:, m], noise[:, m + 1], noise[:, m + 2]
        ge = [(u_mult >= self.edges[k]).to(noise.dtype) for k in range(self.edges.shape[0])]
        onehot = torch.stack([ge[k] - ge[k + 1] for k in range(len(ge) - 1)], dim=-1)
        x = self.sampler(z, onehot)
        p = self.inverse(x, u_phi)
        n_jets = (onehot * self.n_values).sum(-1)
        q1 = torch.where(u_q < self.charge_frac, torch.ones_like(u_q), -torch.ones_like(u_q))
        mu1, mu2 = p[:, 0], p[:, 1]
        q = [q1.unsqueeze(-1), -q1.unsqueeze(-1)]
        swap = mu1[:, 0] < mu2[:, 0]
        mu1, mu2 = _swap(mu1, mu2, swap)
        q[0], q[1] = _swap(q[0], q[1], swap)
        jets = []
        for j in range(self.max_jets):
            present = (n_jets > j + 0.5).unsqueeze(-1)
            jets.append(torch.where(present, p[:, 2 + j], torch.zeros_like(p[:, 2 + j])))
        for i in range(self.max_jets):  # bubble-sort network on pT; absent jets (pT 0) sink
            for j in range(self.max_jets - 1 - i):
                jets[j], jets[j + 1] = _swap(jets[j], jets[j + 1], jets[j][:, 0] < jets[j + 1][:, 0])
        out = torch.stack([mu1, mu2] + jets, dim=1)
        return out, n_jets, torch.cat(q, dim=-1)


class ToyPipeline(nn.Module):
    """noise ``[N, D]`` -> x ``[N, D]`` in the toy's own coordinates."""

    def __init__(self, sampler: nn.Module, coords: nn.Module, model_noise_dim: int, draw_model_noise: Callable):
        super().__init__()
        self.sampler = sampler
        std = coords.chain.steps[0]
        self.register_buffer("mean", std.mean.float().clone())
        self.register_buffer("std", std.std.float().clone())
        self.noise_dim = model_noise_dim
        self._draw_model_noise = draw_model_noise

    def draw_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self._draw_model_noise(n, generator).float()

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        c = noise[:, :0]
        return self.sampler(noise, c) * self.std + self.mean


def _sampler_opts(solver: str | None, steps: int | None) -> dict:
    return {k: v for k, v in (("solver", solver), ("steps", steps)) if v is not None}


def pipeline(run: Run, draw: int | None = None, solver: str | None = None, steps: int | None = None) -> nn.Module:
    """The exportable float32 generation module of ``run`` for Bayesian draw ``draw``.

    See the module docstring for the noise layout and the outputs. ``solver`` / ``steps``
    override the card's sampler settings (families without them ignore None).
    """
    from .coords import ToyCoords, ZJetsInverse
    from .nn.bayesian import is_bayesian, materialize

    model = run.model
    if is_bayesian(model):
        frozen = materialize(model, draw, seed=run.card.seed)
    else:
        frozen = copy.deepcopy(model).eval()
    frozen = frozen.float().eval()
    for prm in frozen.parameters():
        prm.requires_grad_(False)
    opts = _sampler_opts(solver, steps)
    sampler = frozen.sampler(**opts)
    m = frozen.noise_dim(**opts)

    def draw_model_noise(n, generator=None, _f=frozen, _o=opts):
        return _f.draw_noise(n, generator, **_o)

    if isinstance(run.coords, ToyCoords):
        return ToyPipeline(sampler, run.coords, m, draw_model_noise).eval()
    counts = run.coords.mult_counts.numpy()
    fractions = _dirichlet_fractions(counts, run.card.seed, draw)
    pipe = ZJetsPipeline(sampler, ZJetsInverse(run.coords, torch.float32), fractions, run.coords.n_values,
                         float(run.coords.charge_frac), m, draw_model_noise).eval()
    if run.card.generate.calibration_events > 0:
        rates = pass_rates(pipe, run.card, run.card.generate.calibration_events, draw)
        pipe.set_fractions(cut_corrected_fractions(fractions, rates))
        pipe.pass_rates = [float(r) for r in rates]
    return pipe


def pass_rates(pipe: ZJetsPipeline, card, events: int, draw: int | None = None) -> np.ndarray:
    """``[K]``: the fraction of the pipeline's events of each multiplicity that pass the cuts
    (:func:`acceptance`), from ``events`` calibration events per multiplicity with their own noise
    (seeded by the card's seed and the draw). Multiplicities with fraction 0 get 1."""
    digest = hashlib.sha256(f"hepgen-calibration/{card.seed}/{draw}".encode()).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
    edges = pipe.edges.double().numpy()
    rates = np.ones(len(pipe.fractions))
    for k, f in enumerate(pipe.fractions):
        noise = pipe.draw_noise(events, gen)
        if f <= 0:
            continue
        noise[:, pipe.model_noise_dim] = float(0.5 * (edges[k] + min(edges[k + 1], 1.0)))
        with torch.no_grad():
            p, n_jets, _ = pipe(noise)
        dr_ok, kin_ok = acceptance(p.double().numpy(), np.rint(n_jets.numpy()).astype(np.int64), card)
        rates[k] = max(float(np.mean(dr_ok & kin_ok)), 1.0 / events)
    return rates


def cut_corrected_fractions(fractions: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """Sampling fractions f_k / eps_k (normalised) whose surviving events have the fractions f_k:
    multiplicities that lose more events to the cuts are drawn more often to compensate."""
    f = np.asarray(fractions, dtype=np.float64) / np.asarray(rates, dtype=np.float64)
    return f / f.sum()


# ------------------------------------------------------------------------------------------
# from pipeline outputs to events


def to_sample(out, info: dict[str, str] | None = None):
    """Pipeline outputs (torch) -> EventSample (muons with charge, jets), float64."""
    from .events import EventSample, make_collection

    p, n_jets, charge = (t.detach().double().numpy() for t in out)
    n = len(p)
    nj = np.rint(n_jets).astype(np.int64)
    mu = p[:, 0:2].reshape(-1, 4)
    mu = make_collection(mu[:, 0], mu[:, 1], mu[:, 2], mu[:, 3], counts=np.full(n, 2),
                         charge=np.rint(charge).astype(np.int32).reshape(-1))
    keep = np.arange(p.shape[1] - 2)[None, :] < nj[:, None]
    jets = p[:, 2:][keep]  # [sum n_jets, 4], event-major order
    jet = make_collection(jets[:, 0], jets[:, 1], jets[:, 2], jets[:, 3], counts=nj)
    return EventSample.build({"Muon": mu, "Jet": jet}, np.ones(n), info or {})


def min_jet_dr(p: np.ndarray, n_jets: np.ndarray) -> np.ndarray:
    """Smallest Delta R between present jets ``[N]`` (inf with fewer than 2 jets)."""
    from .kinematics import delta_r

    out = np.full(len(p), np.inf)
    J = p.shape[1] - 2
    for a in range(J):
        for b in range(a + 1, J):
            both = n_jets > b
            dr = delta_r(p[:, 2 + a, 1], p[:, 2 + a, 2], p[:, 2 + b, 1], p[:, 2 + b, 2])
            out = np.where(both, np.minimum(out, dr), out)
    return out


def acceptance(p: np.ndarray, n_jets: np.ndarray, card) -> tuple[np.ndarray, np.ndarray]:
    """(dR_ok, kin_ok) ``[N]`` booleans: Delta R_jj above ``process.jet_dr_min``; jets inside
    ``|eta| < process.jet_eta_max`` and the final state within the beam energy (x1, x2 <= 1)."""
    from .kinematics import ptetaphim_to_epxpypz

    dr_ok = min_jet_dr(p, n_jets) > card.process.jet_dr_min
    present = np.arange(p.shape[1] - 2)[None, :] < n_jets[:, None]
    eta_ok = np.all(~present | (np.abs(p[:, 2:, 1]) < card.process.jet_eta_max), axis=1)
    w = np.concatenate([np.ones((len(p), 2), bool), present], axis=1)
    with np.errstate(over="ignore", invalid="ignore"):
        e, _, _, pz = ptetaphim_to_epxpypz(p[..., 0], p[..., 1], p[..., 2], p[..., 3])
        e, pz = (e * w).sum(1), (pz * w).sum(1)
        sqrt_s = card.process.sqrt_s
        beam_ok = np.isfinite(e) & ((e + pz) <= sqrt_s) & ((e - pz) <= sqrt_s)
    return dr_ok, eta_ok & beam_ok


# ------------------------------------------------------------------------------------------
# streaming generation


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'k/n' -> (k, n) with 0 <= k < n (shards are numbered from 0)."""
    if text is None:
        return None
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise HepgenError(f"--shard {text!r}: expected k/n, e.g. 0/10") from None
    if not (n >= 1 and 0 <= k < n):
        raise HepgenError(f"--shard {text!r}: need 0 <= k < n")
    return k, n


def _blocks(start: int, stop: int, pipe: nn.Module, seed: int):
    """Yield (outputs, block_first_event) for the blocks covering events [start, stop)."""
    for b in range(start // BLOCK, (stop + BLOCK - 1) // BLOCK if stop > start else start // BLOCK):
        gen = torch.Generator().manual_seed(block_seed(seed, b))
        noise = pipe.draw_noise(BLOCK, gen)
        with torch.no_grad():
            out = pipe(noise)
        lo, hi = max(start - b * BLOCK, 0), min(stop - b * BLOCK, BLOCK)
        if isinstance(out, tuple):
            yield tuple(t[lo:hi] for t in out)
        else:
            yield out[lo:hi]


def _output_paths(run: Run, output: Path | None, fmt: str, draws: list[int | None]) -> list[Path]:
    if output is None:
        output = run.path / f"generated.{fmt}"
    output = Path(output)
    if len(draws) == 1 and draws[0] is None:
        return [output]
    return [output.with_name(f"{output.stem}.draw{d}{output.suffix}") for d in draws]


def generate(run: Run | str | os.PathLike, n: int, *, bayes_samples: int = 0, fmt: str | None = None,
             output: str | os.PathLike | None = None, seed: int | None = None, shard: str | None = None,
             force: bool = False, chunk: int | None = None, solver: str | None = None, steps: int | None = None,
             progress: bool | None = None, log: Callable[[str], None] | None = None,
             backend: str = "torch") -> list[Path]:
    """Generate ``n`` events (or shard ``k/n`` of them) from a run into ROOT or LHE file(s).

    ``bayes_samples`` = K > 0 (Bayesian model): one file per posterior draw,
    ``<stem>.draw<k><suffix>``, each with the same noise; 0: one file with the weight means.
    Returns the written paths. Memory stays bounded by ``chunk`` (default card.generate.chunk).
    """
    from tqdm import tqdm

    from . import __version__
    from .cards import card_hash
    from .nn.bayesian import is_bayesian

    log = log or (lambda msg: None)
    if backend == "onnx":  # run = an export folder (hepgen export); ONNX Runtime instead of torch
        from .export.runtime import OnnxRun

        if solver is not None or steps is not None:
            raise HepgenError("--solver/--steps are fixed in an ONNX export; re-export with hepgen export --solver/--steps")
        run = run if isinstance(run, OnnxRun) else OnnxRun(run)
    elif not isinstance(run, Run):
        run = load_run(run)
    card = run.card
    if card.process.name != "zjets":
        raise InputError(f"hepgen generate writes Z+jets events; run {run.path} is a {card.process.name} toy "
                         "(use hepgen.generate.pipeline for toys)")
    fmt = fmt or card.generate.format
    if fmt not in ("root", "lhe"):
        raise HepgenError(f"--format {fmt!r}: choose root or lhe")
    seed = card.seed if seed is None else int(seed)
    chunk = int(chunk or card.generate.chunk)
    sh = parse_shard(shard)
    start, stop = (0, n) if sh is None else (sh[0] * n // sh[1], (sh[0] + 1) * n // sh[1])
    bayes = run.bayesian if backend == "onnx" else is_bayesian(run.model)
    if bayes_samples and not bayes:
        raise HepgenError(f"--bayes-samples {bayes_samples}: the model of {run.path} is not Bayesian")
    draws: list[int | None] = list(range(bayes_samples)) if bayes_samples else [None]
    paths = _output_paths(run, Path(output) if output else None, fmt, draws)
    from .outputs import check_output

    for path in paths:  # fail before any work if an output exists
        check_output(path, force)
    show = progress if progress is not None else os.isatty(2)
    written = []
    for draw, path in zip(draws, paths):
        pipe = run.pipeline(draw) if backend == "onnx" else pipeline(run, draw, solver, steps)
        info = {
            "hepgen_version": __version__, "generator": f"hepgen {run.model.family}", "model_family": run.model.family,
            "run": str(run.path), "card": card.name, "card_hash": card_hash(card), "seed": str(seed),
            "epoch": str(run.epoch), "bayesian": str(bayes), "bayes_draw": "mean" if draw is None else str(draw),
            "bayes_draws": str(len(draws)) if bayes_samples else "0", "events_requested": str(stop - start),
            "event_range": f"{start}:{stop}", "shard": shard or "", "noise_block": str(BLOCK),
            "jet_fractions": ",".join(f"{f:.6f}" for f in pipe.fractions),
            "jet_pass_rates": ",".join(f"{r:.6f}" for r in getattr(pipe, "pass_rates", [])),
        }
        if hasattr(run.model, "cfg") and run.model.family == "cfm":
            info["solver"] = f"{solver or card.model.cfm.solver}/{steps or card.model.cfm.steps}"
        if backend == "onnx":
            gen = run.manifest.generator
            info.update(backend="onnxruntime", export=str(run.path), run=str(run.manifest.provenance.get("run", "")))
            if "solver" in gen:
                info["solver"] = f"{gen['solver']}/{gen['steps']}"
        dropped = dropped_kin = 0
        t0 = time.perf_counter()
        with _writer(path, fmt, force, card) as writer, tqdm(total=stop - start, disable=not show, unit="ev",
                                                            desc=path.name, leave=False) as bar:
            buf, nbuf = [], 0
            for out in _blocks(start, stop, pipe, seed):
                p, nj = out[0].double().numpy(), out[1].numpy()
                dr_ok, kin_ok = acceptance(p, nj, card)
                ok = dr_ok & kin_ok
                dropped += int((~dr_ok).sum())
                dropped_kin += int((dr_ok & ~kin_ok).sum())
                buf.append(tuple(t[torch.from_numpy(ok)] for t in out))
                nbuf += len(ok)
                bar.update(len(ok))
                if nbuf >= chunk:
                    writer.write(to_sample(_cat(buf), info))
                    buf, nbuf = [], 0
            if buf:
                writer.write(to_sample(_cat(buf), info))
            kept = stop - start - dropped - dropped_kin
            info.update(events=str(kept), dropped_dR_jj=str(dropped),
                        dropped_dR_jj_fraction=f"{dropped / max(stop - start, 1):.6g}",
                        dropped_acceptance=str(dropped_kin),
                        generation_seconds=f"{time.perf_counter() - t0:.6g}",
                        seconds_per_event=f"{(time.perf_counter() - t0) / max(stop - start, 1):.6g}")
            writer.update_info(info)
        dt = time.perf_counter() - t0
        log(f"wrote {path}: {kept} events ({dropped} = {100 * dropped / max(stop - start, 1):.2f}% dropped for "
            f"Delta R_jj < {card.process.jet_dr_min}, {dropped_kin} outside |eta_j| < {card.process.jet_eta_max} "
            f"or the beam energy), {(stop - start) / max(dt, 1e-9):.0f} events/s")
        written.append(path)
    return written


def _cat(parts):
    return tuple(torch.cat([p[i] for p in parts]) for i in range(len(parts[0])))


class _writer:
    """ROOT or LHE writer whose provenance can be completed before closing."""

    def __init__(self, path: Path, fmt: str, force: bool, card):
        self.path, self.fmt, self.force, self.card = path, fmt, force, card
        self.info: dict[str, str] = {}

    def __enter__(self):
        if self.fmt == "root":
            from .io.root import RootWriter

            self.w = RootWriter(self.path, force=self.force, info=self.info, chunk_size=self.card.generate.chunk)
        else:
            from .io.lhe import LheWriter

            self.w = LheWriter(self.path, force=self.force, info=self.info, sqrt_s=self.card.process.sqrt_s)
        self.w.__enter__()
        return self

    def write(self, sample):
        self.w.write(sample)

    def update_info(self, info: dict[str, str]):
        self.w.update_info(info)

    def __exit__(self, *exc):
        return self.w.__exit__(*exc)
