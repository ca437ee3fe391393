"""VEGAS and MadNIS on the multi-channel Drell-Yan integrand: weighted samples at equal calls.

Both spend ``training_calls`` integrand calls adapting, then draw ``sample_calls`` weighted
points; a point of channel ``c`` has the estimate ``e = alpha_c f_c / q_c`` (``q_c``: the
sampler's density in the channel's hypercube) and the event weight ``w = e N / N_c`` (``N_c``
of the ``N`` points in channel ``c``), so that ``<w> = sum_c <e>_c = sigma``. The error is the
stratified one, ``sqrt(sum_c var_c(e) / N_c)``.

* :func:`run_vegas`: one ``vegas.Integrator`` per channel on ``alpha_c f_c`` (the prior channel
  weights of :meth:`DrellYan.prior_weights`), ``vegas_iterations`` adaptive iterations with the
  calls split evenly over channels and iterations; then its adapted map (``AdaptiveMap``) turns
  uniform points into the sample, ``N_c`` in proportion to the channels' integrals from the
  training. Plain importance sampling through the map, without VEGAS's hypercube
  stratification, so every event has a weight of its own.
* :func:`run_madnis`: ``madnis.integrator.Integrator`` with a normalizing flow per channel
  (rational-quadratic splines on the unit hypercube), learned channel weights on top of the
  prior ones, the stratified-variance loss and buffered training
  (``madnis_buffered_steps`` steps on stored samples after each online step, which call no
  integrand); the sample is ``Integrator.sample(n_c, channel=c)`` per channel, with ``N_c`` in
  proportion to the channel integrals of its training history (madnis's own
  ``channel_weight_mode="mean"`` draws ``N_c`` in proportion to their square roots).

Drawing ``N_c`` in proportion to the channel's integral gives every channel the same mean weight,
so the weights of the whole sample are as flat as each channel's, which is what unweighting
needs (a variance-optimal split would make the error of sigma a little smaller and the spread
of the event weights larger).

The integrand counts its calls (:attr:`DrellYan.calls`), so the equal budget is measured.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .config import IntegrateConfig
from .integrand import DrellYan


@dataclass
class WeightedRun:
    """A method's weighted sample: hypercube points ``r`` ``[N, 4]`` of ``channels`` ``[N]``,
    weights float64 ``[N]`` (``<w> = sigma``), and what it cost."""

    method: str
    r: torch.Tensor
    channels: torch.Tensor
    weights: np.ndarray
    sigma: float
    error: float
    training_calls: int
    sample_calls: int
    training_seconds: float
    sampling_seconds: float


def stratified_estimate(estimates: np.ndarray, channels: np.ndarray, count: int) -> tuple[float, float]:
    """``(sum_c <e>_c, sqrt(sum_c var_c(e) / N_c))`` of per-point estimates ``e``."""
    sigma, var = 0.0, 0.0
    for c in range(count):
        e = estimates[channels == c]
        if len(e):
            sigma += float(e.mean())
            var += float(e.var(ddof=1)) / len(e) if len(e) > 1 else 0.0
    return sigma, math.sqrt(var)


def event_weights(estimates: np.ndarray, channels: np.ndarray, count: int) -> np.ndarray:
    """``w = e N / N_c``."""
    n_c = np.bincount(channels, minlength=count).astype(np.float64)
    return estimates * len(estimates) / n_c[channels]


def _split(total: int, shares: np.ndarray) -> list[int]:
    """``total`` points over channels in proportion to ``shares`` (each channel at least 2)."""
    shares = np.maximum(np.asarray(shares, dtype=np.float64), 0.0)
    shares = shares / shares.sum() if shares.sum() > 0 else np.full(len(shares), 1.0 / len(shares))
    n = np.maximum(np.floor(shares * total).astype(int), 2)
    n[int(np.argmax(shares))] += total - int(n.sum())
    return [int(k) for k in n]


def run_vegas(dy: DrellYan, cfg: IntegrateConfig, seed: int, tick: Callable[[int], None] | None = None,
              training_calls: int | None = None) -> WeightedRun:
    """Multi-channel VEGAS (see the module docstring); ``training_calls`` (default: the card's)
    lets it match the calls MadNIS spent."""
    import vegas

    rng = np.random.default_rng(seed)
    count = dy.channel_count
    start, calls0 = time.perf_counter(), dy.calls
    maps, means = [], []
    per_iteration = max((training_calls or cfg.training_calls) // (cfg.vegas_iterations * count), 2)
    for c in range(count):
        def channel(x, c=c):
            f, p = dy.channel_integrand(torch.from_numpy(np.ascontiguousarray(x)), c)
            if tick is not None:
                tick(len(x))
            return (dy.prior_weights(p)[:, c] * f).numpy()

        integ = vegas.Integrator(dy.dim * [[0.0, 1.0]], ran_array_generator=lambda size: rng.random(size))
        result = integ(vegas.lbatchintegrand(channel), nitn=cfg.vegas_iterations, neval=per_iteration)
        maps.append(integ.map)
        means.append(result.mean)
    budget, training_calls, training_seconds = training_calls, dy.calls - calls0, time.perf_counter() - start
    # VEGAS spends about neval calls per iteration: what it spent less in training it draws more here
    n_sample = cfg.sample_calls + max((budget or cfg.training_calls) - training_calls, 0)

    start, calls0 = time.perf_counter(), dy.calls
    rs, estimates, channels = [], [], []
    for c, n_c in enumerate(_split(n_sample, np.array(means))):
        for lo in range(0, n_c, 100_000):
            y = rng.random((min(100_000, n_c - lo), dy.dim))
            x, jac = np.empty_like(y), np.empty(len(y))
            maps[c].map(y, x, jac)
            r = torch.from_numpy(x)
            f, p = dy.channel_integrand(r, c)
            if tick is not None:
                tick(len(x))
            rs.append(r)
            estimates.append((dy.prior_weights(p)[:, c] * f).numpy() * jac)
            channels.append(np.full(len(x), c))
    e, ch = np.concatenate(estimates), np.concatenate(channels)
    sigma, error = stratified_estimate(e, ch, count)
    return WeightedRun("vegas", torch.cat(rs), torch.from_numpy(ch), event_weights(e, ch, count), sigma, error,
                       training_calls, dy.calls - calls0, training_seconds, time.perf_counter() - start)


def run_madnis(dy: DrellYan, cfg: IntegrateConfig, seed: int, tick: Callable[[int], None] | None = None) -> WeightedRun:
    """Multi-channel MadNIS (see the module docstring)."""
    from madnis.integrator import Integrand, Integrator

    def function(x, channels):
        if tick is not None:
            tick(len(x))
        return dy.madnis_function(x, channels)

    torch.manual_seed(seed)
    count = dy.channel_count
    integrand = Integrand(function, input_dim=dy.dim, channel_count=count, remapped_dim=dy.dim,
                          has_channel_weight_prior=True)
    batch = max(cfg.training_calls // cfg.madnis_steps, 2 * count)
    integrator = Integrator(
        integrand, flow_kwargs={"layers": cfg.madnis_layers, "units": 32, "bins": 10},
        batch_size=batch, learning_rate=cfg.madnis_lr,
        scheduler=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.madnis_steps * (1 + cfg.madnis_buffered_steps)),
        buffer_capacity=10 * batch if cfg.madnis_buffered_steps else 0, minimum_buffer_size=batch,
        buffered_steps=cfg.madnis_buffered_steps, dtype=torch.float64)
    start, calls0 = time.perf_counter(), dy.calls
    integrator.train(cfg.madnis_steps * (1 + cfg.madnis_buffered_steps))
    training_calls, training_seconds = dy.calls - calls0, time.perf_counter() - start

    start, calls0 = time.perf_counter(), dy.calls
    mean_hist, _, count_hist = integrator.integration_history  # the channels' integrals while training
    integrals = (torch.nansum(mean_hist * count_hist, dim=0) / count_hist.sum(dim=0)).numpy()
    rs, estimates, channels = [], [], []
    for c, n_c in enumerate(_split(cfg.sample_calls, integrals)):
        with torch.no_grad():  # one channel at a time: madnis's weights are then alpha_c f_c / q_c
            batch = integrator.sample(n_c, batch_size=100_000, channel=c)
        rs.append(batch.x.double())
        estimates.append(batch.weights.double().numpy())
        channels.append(np.full(n_c, c))
    e, ch = np.concatenate(estimates), np.concatenate(channels)
    sigma, error = stratified_estimate(e, ch, count)
    return WeightedRun("madnis", torch.cat(rs), torch.from_numpy(ch), event_weights(e, ch, count), sigma, error,
                       training_calls, dy.calls - calls0, training_seconds, time.perf_counter() - start)
