"""Nuisance-conditioned generators: a systematic uncertainty as a condition (docs/systematics.md).

A card's ``model.nuisance`` lists K nuisance parameters nu (:class:`hepgen.modelcards.NuisanceConfig`:
name, kind, prior, range). The generator learns p(x | c, nu) = w(x; nu) p(x | c) / <w(nu)>: its
condition is ``[c | nu]`` (``cond_dim`` grows by K) and each training event's loss is multiplied by
w(x; nu) (times the file weight with ``data.weights: file``). nu = 0 is the nominal sample (w = 1).

Per event i and nuisance k the data give two slopes ``[N, K, 2]`` float64 (:func:`event_slopes`,
computed once from the physics events, never from network units)::

    w_k(x_i; nu) = 1 + |nu| * (s+_ik if nu >= 0 else s-_ik),     w(x; nu) = prod_k w_k

* ``parametric``: s+ = f, s- = -f with f = ((O - center) / scale)^2 and O the named observable
  (``pt_j1``: the seed's w = 1 + a ((pT_j1 - 15 GeV) / 100 GeV)^2), so w = 1 + nu f for every
  nu; events without the object (NaN) have w = 1;
* ``psweight``: s+ = PSWeight[up] / nominal - 1, s- = PSWeight[down] / nominal - 1 of the
  ``variation`` (isr or fsr), from the file's Pythia shower weights
  (:data:`hepgen.io.variations.PSWEIGHT`): linear in nu on each side, nu = +1 is the up
  (mu_R x 0.5), nu = -1 the down (mu_R x 2) variation.

Training (:class:`TrainingConditions`): per batch nu is drawn from the prior (uniform on the range, or
N(0, 1) truncated to it) with the global torch RNG (the model-noise stream, which checkpoints save,
so a resumed run stays bit-identical); validation runs at nu = 0. ``train.nuisance_paired``: every
batch event is regressed at nu = 0 and at its drawn nu with the same random numbers, the varied
term's nominal part taken by a control variate (``CFM.paired_loss``), so the learned ratio
p(x | c, nu) / p(x | c, 0) comes from the weights alone and the nominal network's error cancels in
it. Generation (:func:`conditioned`):
the frozen sampler takes K more noise columns, layout word ``"nuisance"``, after the family's own
noise; they hold nu itself and are 0 (nominal) unless :func:`fill` sets them (``hepgen generate
--nuisance a=0.5`` fixed, ``a=prior`` drawn per event). The exported graph takes them the same way.

Categories drawn outside the network (Z+jets multiplicities) move with nu too: the mean of w(x; nu)
over a category's training events is ``term_factors(nu) @ category_means(...)`` exactly (w multiplied
out into 3^K terms, each a product of relu(+-nu_k) and slope products), fitted once at training.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from . import observables
from .errors import CardError, InputError
from .events import EventSample
from .modelcards import NuisanceConfig
from .nuisance_mixture import MixtureDraw, cond_width, encode

NUISANCE = "nuisance"  # the noise-layout word of a nuisance column (it holds nu, not noise)
PRIOR = "prior"  # --nuisance NAME=prior: nu drawn per event from its prior


def check(card, model) -> None:
    """One-line :class:`CardError` for a ``model.nuisance`` list the run cannot train: names not
    unique or not identifiers, a range that is not [low, high] around 0 (one-sided, [0, high] or
    [low, 0], allowed), a family whose loss takes no per-event weights, a generator that maps
    samples or learns from a teacher."""
    nus = card.model.nuisance
    if card.train.nuisance_resample and (not nus or card.train.weight_power > 0):
        raise CardError("train.nuisance_resample draws events by their nuisance weight: it needs model.nuisance"
                        + (" and train.weight_power 0 (it replaces that draw)" if nus else ""))
    if card.train.nuisance_paired and (not nus or card.train.nuisance_resample):
        raise CardError("train.nuisance_paired regresses each batch event at nu = 0 and at its drawn nu: it needs "
                        "model.nuisance"
                        + (" and train.nuisance_resample false (a resampled batch has no pairs)" if nus else ""))
    if not nus:
        return
    names = [n.name for n in nus]
    for n in nus:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n.name):
            raise CardError(f"model.nuisance {n.name!r}: a name is letters, digits and _ (it is NAME in --nuisance NAME=VALUE)")
        if names.count(n.name) > 1:
            raise CardError(f"model.nuisance: the name {n.name!r} is given {names.count(n.name)} times")
        if len(n.range) != 2 or not (n.range[0] <= 0 <= n.range[1] and n.range[0] < n.range[1]):
            raise CardError(f"model.nuisance {n.name}: range {list(n.range)} must be [low, high] with low <= 0 <= high, "
                            "low < high (nu = 0 is the nominal sample)")
    ends = [n.prior == "ends" for n in nus]
    if any(ends) and not all(ends):
        raise CardError("model.nuisance: prior ends is a way of generating (the exact mixture of the ends), so every "
                        "nuisance of the card has it or none")
    if model.event_weights == "none":
        raise CardError(f"model.nuisance: model.family {card.model.family} cannot train on weighted events (its loss "
                        "has no per-event form), which a nuisance condition needs; choose another family")
    if model.maps_samples or model.learns_from_teacher:
        raise CardError(f"model.nuisance: a {card.model.family} generator that maps samples or learns from a teacher "
                        "takes no nuisance condition")
    if card.train.nuisance_paired and not model.pairs_nuisances:
        raise CardError(f"train.nuisance_paired: the {card.model.family} loss has no paired form (cfm has one); "
                        "set it false")


def pad_active(active: torch.Tensor | None, k: int) -> torch.Tensor | None:
    """The per-condition active columns ``[C, D]`` for the condition ``[c | nu]``: K zero rows
    appended, so that ``[c | nu] @ active`` is still the one-hot's row."""
    if active is None or k == 0:
        return active
    return torch.cat([active, torch.zeros(k, active.shape[1], dtype=active.dtype)])


# -- weights ---------------------------------------------------------------------------------


def event_slopes(card, data) -> np.ndarray | None:
    """``[N, K, 2]`` float64 slopes (s+, s-) of every event of ``data`` (an EventSample, or a toy's
    ``[N, F]`` array whose observables are ``x1``, ``x2``, ...) for the card's nuisances; None
    without any. A missing observable or PSWeight branch is a one-line error."""
    nus = card.model.nuisance
    if not nus:
        return None
    out = np.zeros((len(data), len(nus), 2))
    for k, n in enumerate(nus):
        if n.kind == "parametric":
            f = ((observable(data, n.observable, n.name) - n.center) / n.scale) ** 2
            f = np.where(np.isfinite(f), f, 0.0)
            out[:, k, 0], out[:, k, 1] = f, -f
        else:
            up, down = psweight_ratios(data, n.variation, card.data.path, n.name)
            out[:, k, 0], out[:, k, 1] = up - 1.0, down - 1.0
    return out


def observable(data, name: str, nuisance: str) -> np.ndarray:
    """The observable ``name`` ``[N]`` float64 of an EventSample (:mod:`hepgen.observables`) or of a
    toy's array (``xJ``: column J, counted from 1)."""
    if isinstance(data, EventSample):
        try:
            return observables.compute(data, [name])[name]
        except Exception as err:  # an unknown name, or an object the sample lacks
            raise CardError(f"model.nuisance {nuisance}: observable {name!r}: {err}") from None
    m = re.fullmatch(r"x(\d+)", name)
    if not m or not 1 <= int(m.group(1)) <= data.shape[1]:
        raise CardError(f"model.nuisance {nuisance}: observable {name!r}: this process's events are arrays of "
                        f"{data.shape[1]} columns; name one as x1..x{data.shape[1]}")
    return np.asarray(data[:, int(m.group(1)) - 1], dtype=np.float64)


def psweight_ratios(data, variation: str, path, nuisance: str) -> tuple[np.ndarray, np.ndarray]:
    """(up / nominal, down / nominal) ``[N]`` of the shower ``variation`` from the events' PSWeight
    variations (written by ``hepgen simulate`` with ``simulate.psweight: true``)."""
    ids = {f"{variation}_{side}" for side in ("up", "down")}
    have = getattr(data, "variations", {}) or {}
    if not ids <= set(have):
        raise InputError(f"model.nuisance {nuisance} (psweight): {path} has no PSWeight {variation} variations; "
                         "simulate it with simulate.psweight: true")
    up, down = (np.asarray(have[f"{variation}_{s}"], dtype=np.float64) for s in ("up", "down"))
    if not (np.all(np.isfinite(up)) and np.all(np.isfinite(down))):
        raise InputError(f"{path}: PSWeight {variation} variations are not all finite")
    return up, down


def check_weights(nus: Sequence[NuisanceConfig], slopes: np.ndarray) -> None:
    """One-line :class:`CardError` when a nuisance's factor 1 + |nu| s is negative for a training event
    at an end of its range (slopes ``[N, K, 2]``, :func:`event_slopes`). The varied density w p would be
    negative there, which no generator can learn, and a regression loss with w < 0 is unbounded below
    (a Z+jets CFM with the seed's pT_j1 weight on a in [-0.5, 1] diverged at epoch 61; the lowest a it
    allows is about -0.01). The factor is linear in nu on each side, so the ends decide."""
    for k, n in enumerate(nus):
        for side, end in ((1, n.range[0]), (0, n.range[1])):
            low = float(slopes[:, k, side].min()) if len(slopes) else 0.0
            if end != 0 and 1.0 + abs(end) * low < 0:
                bound = (-1.0 if side else 1.0) / abs(low) * 0.99  # printed to 3 digits: stay inside
                count = int((1.0 + abs(end) * slopes[:, k, side] < 0).sum())
                raise CardError(f"model.nuisance {n.name}: at {n.name} = {end:g} the weight is negative for {count} "
                                f"training events (down to {1.0 + abs(end) * low:.3g}): the varied density would be "
                                f"negative there; narrow the range to {n.name} {'>=' if side else '<='} {bound:.3g}")


def weight(slopes: torch.Tensor, nu: torch.Tensor) -> torch.Tensor:
    """w(x; nu) ``[N]`` for slopes ``[N, K, 2]`` and nu ``[N, K]`` (see the module docstring)."""
    s = torch.where(nu >= 0, slopes[..., 0], slopes[..., 1])
    return (1.0 + nu.abs() * s).prod(-1)


def prior_values(nus: Sequence[NuisanceConfig], u: torch.Tensor, training: bool = False) -> torch.Tensor:
    """nu ``[N, K]`` from uniforms u ``[N, K]`` in [0, 1): uniform on the range, or N(0, 1) truncated
    to it (inverse CDF); ``ends`` in ``training``: the distinct values of (low, 0, high) equally
    likely, otherwise (marginalising at generation) uniform on the range."""
    cols = []
    for k, n in enumerate(nus):
        lo, hi = (torch.tensor(float(v), dtype=torch.float64) for v in n.range)
        uk = u[:, k].double()
        if n.prior == "ends" and training:
            points = torch.tensor(sorted({float(n.range[0]), 0.0, float(n.range[1])}), dtype=torch.float64)
            v = points[(uk * len(points)).long().clamp(max=len(points) - 1)]
        elif n.prior in ("uniform", "ends"):
            v = lo + uk * (hi - lo)
        else:
            a, b = torch.special.ndtr(lo), torch.special.ndtr(hi)
            v = torch.special.ndtri(a + uk * (b - a)).clamp(lo, hi)
        cols.append(v.to(u.dtype))
    return torch.stack(cols, dim=-1) if cols else u[:, :0]


NUISANCE_GROUPS = 4  # train.nuisance_resample: values of nu per batch, each with its own weighted draw


class TrainingConditions:
    """The batches of the one training loop: ``batch(x, c, w, idx)`` -> the loss arguments ``(x, c)``
    or ``(x, c, w)``; with nuisances ``(x, [c | nu], w_file * w(x; nu))``, nu drawn from the prior.
    With ``train.nuisance_resample`` the batch is instead NUISANCE_GROUPS draws of nu, each with its
    share of the batch drawn from all training events in proportion to |w_file| w(x; nu) (with
    replacement; ``idx`` gives only the batch size), times ``draw`` (``train.balance``'s weights, a
    function of the condition alone, so each condition's density is unchanged), the loss weighted by
    sign(w_file) alone: the same density per nu, without weight-driven gradient spikes. With
    ``train.nuisance_paired`` the arguments are ``(x, [c | 0], w_file, [c | nu], w(x; nu))`` for the
    model's ``paired_loss``: each event at nu = 0 and at its drawn nu. ``nominal(c)`` is the validation
    condition ``[c | 0]``. With ``counts`` ``[N_train, K]`` (``model.ensemble.bootstrap``) the weight is ``[B, K]``:
    the batch rows' counts times their weight (1 without one), column k for ensemble member k."""

    def __init__(self, card, slopes: np.ndarray | None, device, draw: torch.Tensor | None = None,
                 counts: torch.Tensor | None = None):
        self.counts = None if counts is None else counts.to(device)
        self.nus = tuple(card.model.nuisance)
        self.draw = None if draw is None else draw.to(device)  # train.balance's per-event draw weights (resample)
        self.slopes = None if slopes is None else torch.from_numpy(slopes).float().to(device)
        shares = [n.nominal for n in self.nus]
        self.nominal_share = torch.tensor(shares, device=device) if any(shares) else None  # None: no extra draw
        self.resample = bool(self.nus) and card.train.nuisance_resample
        self.paired = bool(self.nus) and card.train.nuisance_paired

    def _values(self, n: int, device) -> torch.Tensor:
        nu = prior_values(self.nus, torch.rand(n, len(self.nus), device=device), training=True)
        if self.nominal_share is not None:  # model.nuisance[].nominal: a share of the draws at nu = 0
            nu = torch.where(torch.rand(nu.shape, device=device) < self.nominal_share, torch.zeros_like(nu), nu)
        return nu

    def batch(self, x, c, w, idx):
        rows, args = self._batch(x, c, w, idx)
        if self.counts is None:
            return args
        k = self.counts[rows]  # [B, K]: how often each row is in each member's resample
        x, c, *rest = args
        w = rest[0] if rest else None
        return (x, c, k if w is None else w[:, None] * k, *rest[1:])

    def _batch(self, x, c, w, idx):
        """(the training rows of the batch, the loss arguments)."""
        if self.slopes is None:
            return idx, (x[idx], c[idx]) if w is None else (x[idx], c[idx], w[idx])
        if self.resample:
            return self._resampled(x, c, w, len(idx))
        nu = self._values(len(idx), x.device)
        wn = weight(self.slopes[idx], nu)
        ci = c[idx]
        varied = torch.cat([ci, encode(self.nus, nu).to(c.dtype)], dim=-1)
        if self.paired:
            return idx, (x[idx], self.nominal(ci), None if w is None else w[idx], varied, wn)
        return idx, (x[idx], varied, wn if w is None else w[idx] * wn)

    def _resampled(self, x, c, w, size: int):
        groups = torch.tensor_split(torch.arange(size), min(NUISANCE_GROUPS, size))
        nus = self._values(len(groups), x.device)
        picks, rows = [], []
        for g, nu in zip(groups, nus):
            p = weight(self.slopes, nu.expand(len(self.slopes), -1))
            p = p if w is None else p * w.abs()
            picks.append(torch.multinomial(p if self.draw is None else p * self.draw, len(g), replacement=True))
            rows.append(nu.expand(len(g), -1))
        pick, nu = torch.cat(picks), torch.cat(rows)
        cond = torch.cat([c[pick], encode(self.nus, nu).to(c.dtype)], dim=-1)
        return pick, (x[pick], cond) if w is None else (x[pick], cond, torch.sign(w[pick]))

    def nominal(self, c: torch.Tensor) -> torch.Tensor:
        return c if not self.nus else torch.cat([c, c.new_zeros(len(c), cond_width(self.nus))], dim=-1)


# -- generation ------------------------------------------------------------------------------


class NuisanceSampler(nn.Module):
    """Exportable: ``(z [N, m + K], c [N, C]) -> sampler(z[:, :m], [c | z[:, m:]])``.

    With ``table`` (prior ``ends``: :class:`MixtureDraw`) z has one more uniform column after the K
    nu columns, and the network gets the mixture component's nu instead of nu itself."""

    def __init__(self, module: nn.Module, noise_dim: int, mixture: "MixtureDraw | None" = None):
        super().__init__()
        self.inner, self.m, self.mixture = module, noise_dim, mixture

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if self.mixture is None:
            return self.inner(z[:, :self.m], torch.cat([c, z[:, self.m:]], dim=-1))
        k = self.mixture.k
        nu = self.mixture(z[:, self.m:self.m + k], z[:, self.m + k], c)
        return self.inner(z[:, :self.m], torch.cat([c, self.mixture.encode(nu)], dim=-1))


def category_table(coords) -> torch.Tensor | None:
    """The fitted :class:`CategoryMeans` table of ``coords`` (``[3^K, C]``), or None."""
    means = getattr(coords, "mult_nuisance", None)
    return None if means is None else means.table


def conditioned(sampler, nus: Sequence[NuisanceConfig], table: torch.Tensor | None = None):
    """The :class:`hepgen.pipeline.FrozenSampler` ``sampler`` with K nuisance columns after its noise
    (nominal 0, drawn without touching the generator's stream); itself without nuisances. With prior
    ``ends`` (and the run's :func:`category_table`) one more uniform column follows, the mixture's
    draw (:class:`MixtureDraw`), drawn from the generator after the noise."""
    if not nus:
        return sampler
    k, inner = len(nus), sampler.draw_noise
    mixture = None
    if all(n.prior == "ends" for n in nus):
        if table is None:
            raise InputError("model.nuisance prior ends: the run has no category table of the nuisance weights "
                             "(its process does not fit one); train it with another prior")
        mixture = MixtureDraw(nus, table)

    def draw_noise(n, generator=None):
        z = inner(n, generator)
        extra = [z.new_zeros(n, k)] + ([torch.rand(n, 1, generator=generator).to(z.dtype)] if mixture is not None else [])
        return torch.cat([z, *extra], dim=-1)

    layout = list(sampler.noise_layout) + [NUISANCE] * k + (["uniform"] if mixture is not None else [])
    return type(sampler)(NuisanceSampler(sampler.module, sampler.noise_dim, mixture), len(layout), draw_noise,
                         layout, sampler.family, dict(sampler.record))


@dataclass(frozen=True)
class Setting:
    """What ``hepgen generate --nuisance`` asks: per nuisance (card order) a fixed nu, or None = prior."""

    nus: tuple[NuisanceConfig, ...]
    values: tuple[float | None, ...]

    def record(self) -> dict[str, str]:
        """What generated files record: ``nuisance_<name>`` = the value, or ``prior``."""
        return {f"nuisance_{n.name}": PRIOR if v is None else repr(float(v)) for n, v in zip(self.nus, self.values)}

    def fill(self, inputs: torch.Tensor, layout: Sequence[str], generator: torch.Generator | None = None) -> torch.Tensor:
        """``inputs`` ``[N, L]`` with its nuisance columns set: fixed values, or prior draws from
        ``generator`` (after the noise, so every other column stays the same)."""
        cols = [j for j, word in enumerate(layout) if word == NUISANCE]
        if not cols:
            return inputs
        out = inputs.clone()
        drawn = prior_values(self.nus, torch.rand(len(inputs), len(self.nus), generator=generator))
        for k, (j, v) in enumerate(zip(cols, self.values)):
            out[:, j] = drawn[:, k].to(out.dtype) if v is None else float(v)
        return out


def setting(nus: Sequence[NuisanceConfig], given: Sequence[str] | Mapping[str, object] = ()) -> Setting:
    """The :class:`Setting` of ``given`` (``NAME=VALUE`` / ``NAME=prior`` strings, or a mapping);
    nuisances not given are nominal (0). A name the run does not have, a malformed or non-finite
    value, or one outside the nuisance's range is a one-line :class:`InputError`."""
    pairs = dict(given) if isinstance(given, Mapping) else dict(_split(g) for g in given)
    known = {n.name: n for n in nus}
    for name in pairs:
        if name not in known:
            have = ", ".join(known) if known else "none"
            raise InputError(f"--nuisance {name}: the run has no nuisance {name!r} (it has: {have})")
    values = []
    for n in nus:
        raw = pairs.get(n.name, 0.0)
        if isinstance(raw, str) and raw.strip() == PRIOR:
            values.append(None)
            continue
        try:
            v = float(raw)
        except (TypeError, ValueError):
            raise InputError(f"--nuisance {n.name}={raw}: give a number or 'prior'") from None
        lo, hi = n.range
        if not (math.isfinite(v) and lo <= v <= hi):
            raise InputError(f"--nuisance {n.name}={raw}: outside its range [{lo:g}, {hi:g}]")
        values.append(v)
    return Setting(tuple(nus), tuple(values))


def _split(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise InputError(f"--nuisance {text!r}: expected NAME=VALUE or NAME=prior")
    name, value = text.split("=", 1)
    return name.strip(), value.strip()


def describe(nus: Sequence[NuisanceConfig]) -> list[dict]:
    """The nuisances as an export manifest records them (one dict per nuisance column, in order)."""
    return [{"name": n.name, "kind": n.kind, "prior": n.prior, "range": [float(v) for v in n.range], "nominal": 0.0,
             **({"observable": n.observable, "center": n.center, "scale": n.scale} if n.kind == "parametric"
                else {"variation": n.variation})} for n in nus]


def log_summary(card) -> str:
    """The training log's words for the card's nuisances and how batches are made ("" without any):
    e.g. "; nuisances isr (psweight isr, ends), fsr (psweight fsr, ends), batches resampled by w(x; nu)"."""
    nus = tuple(card.model.nuisance)
    if not nus:
        return ""
    what = ", ".join(f"{n.name} ({n.kind} {n.variation if n.kind == 'psweight' else n.observable}, {n.prior}"
                     + (f", {n.nominal:g} at 0" if n.nominal else "") + ")" for n in nus)
    mode = ("batches resampled by w(x; nu)" if card.train.nuisance_resample
            else "paired at nu = 0 and nu" if card.train.nuisance_paired else "loss weighted by w(x; nu)")
    return f"; nuisances {what}, {mode}"
