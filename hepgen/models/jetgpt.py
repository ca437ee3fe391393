"""JetGPT: an autoregressive transformer over the phase-space components.

p(x | c) = prod_i p(x_i | x_<i, c). Token i carries the previous component x_{i-1} (a learned
start token for i = 0), a learned position embedding and the embedded condition; a causal
transformer (:mod:`hepgen.nn.transformer`) maps it to the parameters of p(x_i | x_<i, c):
a mixture of ``components`` Gaussians, or of von Mises distributions for the components
listed as periodic (angles in [-pi, pi)). The head gives per component a logit, a location mu
and r = log sigma; for a von Mises component kappa = exp(-2 r) (so sigma^2 ~ 1 / kappa).
r is clamped to [-9, 4]. The log-likelihood is exact; the loss is its negative mean.

Sampling consumes explicit noise ``[N, 2 D]``: columns ``[0, D)`` are uniforms u_i in [0, 1)
choosing the mixture component (k = number of cumulative weights <= u_i, computed by
comparisons, no Multinomial op), columns ``[D, 2D)`` standard normals z_i. A Gaussian
component gives x_i = mu + sigma z_i. A von Mises component is drawn from the moment-matched
wrapped normal, x_i = wrap(mu + s z_i) in [-pi, pi] with s^2 = -2 log(I1(kappa) / I0(kappa))
(it has the same mean resultant length as the von Mises; Mardia & Jupp 2000, sec. 3.5.7). The
wrap is :func:`hepgen.kinematics.wrap_angle`, exact for |mu + s z_i| < 13 pi (s <= 4.2 at the
largest r). This is an approximation (exact for kappa -> infinity and kappa -> 0, within a few
percent in between): log_prob is the von Mises density, samples follow the wrapped normal. The
Bessel ratio uses the polynomial approximations of Abramowitz & Stegun 9.8.1-9.8.4 and, for
kappa >= 20, the asymptotic series 9.7.1 (elementary ops only; relative error of s^2 < 1e-5).

The D autoregressive steps are a fixed Python loop with incremental decoding: step i runs
only token i through the blocks, attending to the cached keys/values of tokens < i (a fixed
shape per step, so the unrolled graph is static; D times cheaper than re-running the whole
sequence). The chosen component is picked by one-hot multiplication; the exported graph has
MatMul, Softmax, LayerNormalization, comparisons, Cast, Where, Exp, Log, Sqrt, Cos, Sin and no
random ops, Loop or If.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..cards import ModelConfig
from ..kinematics import wrap_angle
from ..nn.blocks import linear
from ..nn.transformer import TransformerBlock
from .base import Generator, ModelSettingError, check_no_options, weighted_mean

LOG_SIGMA_MIN, LOG_SIGMA_MAX = -9.0, 4.0
_LOG_2PI = math.log(2 * math.pi)

# Abramowitz & Stegun 9.8.1-9.8.4: I0, I1 for x <= 3.75 (in t = x / 3.75) and the scaled
# sqrt(x) e^-x I0, I1 for x >= 3.75 (in u = 3.75 / x)
_I0_SMALL = (1.0, 3.5156229, 3.0899424, 1.2067492, 0.2659732, 0.0360768, 0.0045813)
_I1_SMALL = (0.5, 0.87890594, 0.51498869, 0.15084934, 0.02658733, 0.00301532, 0.00032411)
_I0_LARGE = (0.39894228, 0.01328592, 0.00225319, -0.00157565, 0.00916281, -0.02057706,
             0.02635537, -0.01647633, 0.00392377)
_I1_LARGE = (0.39894228, -0.03988024, -0.00362018, 0.00163801, -0.01031555, 0.02282967,
             -0.02895312, 0.01787654, -0.00420059)


def _poly(coeffs, x):
    out = torch.full_like(x, coeffs[-1])
    for a in reversed(coeffs[:-1]):
        out = out * x + a
    return out


def _asymptotic(nu: int, terms: int = 6) -> tuple[float, ...]:
    """Coefficients of sqrt(2 pi x) e^-x I_nu(x) ~ sum_j a_j x^-j (A&S 9.7.1)."""
    mu, out, a = 4 * nu * nu, [1.0], 1.0
    for j in range(1, terms):
        a *= -(mu - (2 * j - 1) ** 2) / (j * 8)
        out.append(a)
    return tuple(out)


_ASYM_GAP = tuple(a - b for a, b in zip(_asymptotic(0), _asymptotic(1)))  # I0 - I1 series


def wrapped_normal_sigma2(kappa: torch.Tensor) -> torch.Tensor:
    """s^2 = -2 log A(kappa), A = I1/I0: the wrapped-normal variance matching a von Mises.

    Three branches, picked with Where: A&S 9.8.1/9.8.3 polynomials (kappa < 3.75), A&S
    9.8.2/9.8.4 (3.75 <= kappa < 20), the asymptotic series A&S 9.7.1 (kappa >= 20); the two
    large-kappa branches compute 1 - A directly, so s^2 ~ 1/kappa keeps its precision.
    """
    ks = kappa.clamp(max=3.75)
    t2 = (ks / 3.75) ** 2
    a_small = ks * _poly(_I1_SMALL, t2) / _poly(_I0_SMALL, t2)
    u = 3.75 / kappa.clamp(3.75, 20.0)
    delta_mid = _poly(tuple(a - b for a, b in zip(_I0_LARGE, _I1_LARGE)), u) / _poly(_I0_LARGE, u)
    v = 1 / kappa.clamp(min=20.0)
    delta_big = _poly(_ASYM_GAP, v) / _poly(_asymptotic(0), v)
    delta = torch.where(kappa < 20.0, delta_mid, delta_big)  # 1 - A
    minus_log_a_large = torch.where(delta < 0.01, delta + delta**2 / 2 + delta**3 / 3, -torch.log(1 - delta))
    return 2 * torch.where(kappa < 3.75, -torch.log(a_small), minus_log_a_large)


class JetGPT(Generator):
    family = "jetgpt"
    # its network is its own autoregressive transformer (model.network's hidden / layers / heads);
    # the backbone key keeps its default and Fourier features of the input have no place in it
    fourier_features = False

    def __init__(self, dim: int, cond_dim: int, cfg: ModelConfig, periodic: tuple[int, ...] | None = None):
        super().__init__(dim, cond_dim, cfg)
        periodic = tuple(cfg.jetgpt.periodic if periodic is None else periodic)
        if any(not 0 <= i < dim for i in periodic):
            raise ModelSettingError(f"model.jetgpt.periodic {periodic} out of range for {dim} dimensions")
        self.periodic = tuple(sorted(set(periodic)))
        self.components = k = cfg.jetgpt.components
        net, bayes = cfg.network, cfg.bayes
        every = bayes.enabled and bayes.layers == "all"
        h = net.hidden
        pmask = torch.zeros(dim)
        pmask[list(self.periodic)] = 1.0
        self.register_buffer("pmask", pmask, persistent=False)
        self.register_buffer("shift", torch.eye(dim).roll(1, dims=1).triu(1), persistent=False)  # x @ shift = x_{i-1}
        first = torch.zeros(dim, 1)
        first[0] = 1.0
        self.register_buffer("first", first, persistent=False)
        self.register_buffer("cum", torch.ones(k, k).triu(), persistent=False)  # w @ cum = cumsum
        self.value_embed = linear(3, h, bayes, every)  # features (x, cos x, sin x), the latter two for angles
        self.cond_embed = linear(cond_dim, h, bayes, every) if cond_dim else None
        self.start = nn.Parameter(0.02 * torch.randn(h))
        self.pos = nn.Parameter(0.02 * torch.randn(dim, h))
        self.blocks = nn.ModuleList(TransformerBlock(dim, net, bayes, every) for _ in range(net.layers))
        self.norm = nn.LayerNorm(h)
        self.head = linear(h, 3 * k, bayes, bayesian=True)

    # ------------------------------------------------------------------------------------

    @staticmethod
    def _features(prev: torch.Tensor, periodic_prev) -> torch.Tensor:
        """Token features ``[..., 3]`` of the previous component: (x, 0, 0) or (0, cos x, sin x)."""
        return torch.stack([prev * (1 - periodic_prev), torch.cos(prev) * periodic_prev,
                            torch.sin(prev) * periodic_prev], dim=-1)

    def _params(self, hidden: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.head(self.norm(hidden)).reshape(*hidden.shape[:-1], 3, self.components)
        logits, mu, r = out.unbind(-2)
        return logits, mu, r.clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX)

    def conditionals(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Mixture parameters of p(x_i | x_<i, c): logits, mu, r = log sigma, each ``[N, D, K]``."""
        n, d = x.shape
        prev = x @ self.shift.to(x.dtype)  # [N, D]: 0, x_0, ..., x_{D-2}
        pprev = self.pmask.to(x.dtype) @ self.shift.to(x.dtype)  # is x_{i-1} periodic
        hidden = self.value_embed(self._features(prev, pprev).reshape(n * d, 3)).reshape(n, d, -1)
        first = self.first.to(x.dtype)
        hidden = hidden * (1 - first) + self.start * first + self.pos
        if self.cond_embed is not None:
            hidden = hidden + self.cond_embed(c).unsqueeze(1)
        for block in self.blocks:
            hidden = block(hidden)
        return self._params(hidden)

    def token(self, i: int, prev: torch.Tensor | None, c: torch.Tensor) -> torch.Tensor:
        """Input of token i ``[N, H]`` given the value x_{i-1} ``[N]`` (None for i = 0)."""
        if prev is None:
            hidden = (self.start + self.pos[0]).expand(c.shape[0], -1)
        else:
            feats = self._features(prev, 1.0 if i - 1 in self.periodic else 0.0)
            hidden = self.value_embed(feats) + self.pos[i]
        if self.cond_embed is not None:
            hidden = hidden + self.cond_embed(c)
        return hidden

    def log_prob(self, x, c):
        """Exact log p(x | c) ``[N]``; x ``[N, D]`` (periodic components in [-pi, pi))."""
        logits, mu, r = self.conditionals(x, c)
        xe = x.unsqueeze(-1)
        gauss = -0.5 * ((xe - mu) * torch.exp(-r)) ** 2 - r - 0.5 * _LOG_2PI
        if self.periodic:
            kappa = torch.exp(-2 * r)
            vm = kappa * (torch.cos(xe - mu) - 1) - _LOG_2PI - torch.log(torch.special.i0e(kappa))
            comp = torch.where(self.pmask.to(torch.bool)[:, None], vm, gauss)
        else:
            comp = gauss
        return torch.logsumexp(torch.log_softmax(logits, -1) + comp, -1).sum(-1)

    def loss(self, x, c, weight=None):
        if weight is None:
            return -self.log_prob(x, c).mean()
        return weighted_mean(-self.log_prob(x, c), weight)  # a weighted likelihood

    def noise_dim(self, **opts) -> int:
        check_no_options(self.family, opts)
        return 2 * self.dim

    def noise_layout(self, **opts) -> list[str]:
        """D uniforms (mixture-component choice), then D standard normals."""
        return ["uniform"] * self.dim + ["normal"] * (self.noise_dim(**opts) - self.dim)

    def draw_noise(self, n: int, generator: torch.Generator | None = None, **opts) -> torch.Tensor:
        """``[n, 2 D]``: uniforms in [0, 1) (component choice), then standard normals."""
        check_no_options(self.family, opts)
        return torch.cat([torch.rand(n, self.dim, generator=generator),
                          torch.randn(n, self.dim, generator=generator)], dim=1)

    def sampler(self, **opts) -> nn.Module:
        check_no_options(self.family, opts)
        return JetGPTSampler(self)


class JetGPTSampler(nn.Module):
    """Exportable: noise ``[N, 2 D]`` (uniforms, normals), c ``[N, C]`` -> x ``[N, D]``."""

    def __init__(self, model: JetGPT):
        super().__init__()
        self.model = model

    def forward(self, noise, c):
        m = self.model
        d, k = m.dim, m.components
        cum_matrix = m.cum.to(noise.dtype)
        caches = [[] for _ in m.blocks]  # keys/values of the tokens so far, per block
        values, prev = [], None
        for i in range(d):
            hidden = m.token(i, prev, c)
            for block, cache in zip(m.blocks, caches):
                hidden = block.step(hidden, cache)
            logits, mu, r = m._params(hidden)  # [N, K]
            cum = logits.softmax(-1) @ cum_matrix  # cumulative weights
            u = noise[:, i:i + 1]
            below = (u >= cum[:, :k - 1]).to(noise.dtype)  # 1 ... 1 0 ... 0
            steps = torch.cat([torch.ones_like(u), below, torch.zeros_like(u)], dim=1)
            onehot = steps[:, :k] - steps[:, 1:]
            mu_k = (onehot * mu).sum(-1)
            r_k = (onehot * r).sum(-1)
            z = noise[:, d + i]
            if i in m.periodic:
                s = wrapped_normal_sigma2(torch.exp(-2 * r_k)).sqrt()
                prev = wrap_angle(mu_k + s * z)
            else:
                prev = mu_k + torch.exp(r_k) * z
            values.append(prev)
        return torch.stack(values, dim=1)
