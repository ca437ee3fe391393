"""GAN: a generator trained against a spectral-normalised discriminator, with an MMD term on
named physics observables (the seed talk's recipe for narrow resonances, arXiv:1907.03764).

Generator G(z, c): noise z ``[N, latent]`` and condition c ``[N, C]`` -> x ``[N, D]`` in one
pass of a :class:`~hepgen.nn.blocks.ResidualMLP` (``model.network``; Bayesian as
``model.bayes`` says). With ``latent == D`` (the default, ``model.gan.latent: 0``) it is
x = z + MLP(z, c), so a fresh generator already samples N(0, 1), the standardised data's scale.
Its sampler is that network alone (Gemm, LayerNorm, activations, Add: ONNX Runtime and SOFIE).

Discriminator D(x, c) -> logit ``[N]``: an MLP (LeakyReLU 0.2) whose linear layers are
:class:`SNLinear`, W / sigma(W) with sigma from power iteration (Miyato et al. 2018): 20 steps
at construction, then one step in the first training loss call after the weights moved (an
optimiser step or a loaded state; compared with a copy of the weights at the last power step:
the fused Adam update does not advance the tensors' version counters), i.e. one per training
step, while loss calls on unchanged weights leave the state alone. It is plain (never
Bayesian) and never exported.

One loss, one optimiser step over both networks (the training loop of :mod:`hepgen.train`),
with non-saturating softplus losses (s = D's logit):

    L_D = < softplus(-s(x_true)) > + < softplus(s(stop_grad x_gen)) >
    L_G = < softplus(-s_frozen(x_gen)) > + mmd_weight * sum_obs MMD²(obs(x_gen), obs(x_true))
    loss = L_D + L_G

``s_frozen`` is the discriminator with detached parameters (and the same spectral norms), so
the discriminator's parameters get gradient from L_D only and the generator's from L_G only:
a simultaneous update of both. At the equilibrium L_D = 2 log 2, L_G = log 2 (+ MMD²).

MMD (``model.gan.mmd``): the unbiased MMD² (:func:`hepgen.nn.mmd.mmd2`, the card's kernel and
widths in the observable's units) between the observable of generated and of true events of
the batch, the generated ones drawn with the batch's conditions; the observable comes from the
run's coordinates (:meth:`attach_coords`; e.g. ``ZJetsCoords.observable("m_mumu", x)``).

In eval mode (the training loop's validation) ``loss`` is a sample-quality measure, lower is
better: MMD² with a Gaussian kernel in network coordinates (widths sqrt(D) x 1/4, 1/2, 1, so
they span the batch's scale) between G(z, c) and the batch, plus mmd_weight x the observable
MMD² terms. It is ~0 (and may dip below) for a perfect generator.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

from ..cards import ModelConfig
from ..errors import CardError
from ..nn.blocks import ResidualMLP
from ..nn.mmd import mmd2
from .base import Generator, ModelSettingError, check_no_options

VAL_WIDTHS = (0.25, 0.5, 1.0)  # the validation kernel widths, in units of sqrt(D)
LEAK = 0.2  # LeakyReLU slope of the discriminator
INIT_POWER_STEPS = 20  # power-iteration steps at construction


class SNLinear(nn.Module):
    """y = x (W / sigma)^T + b, x ``[N, in]`` -> ``[N, out]``; sigma = u^T W v, the largest singular
    value of W estimated by power iteration (``u`` ``[out]`` and ``v`` ``[in]``: unit buffers,
    saved with the model). Without spectral normalisation (``normalise=False``) sigma = 1.

    :meth:`power_step` advances the iteration by one step (no gradient); the training loss calls
    it before the discriminator's pass. ``forward(x, frozen=True)`` uses detached W and b (the
    generator's view of the discriminator)."""

    def __init__(self, in_features: int, out_features: int, normalise: bool = True):
        super().__init__()
        ref = nn.Linear(in_features, out_features)
        self.weight = nn.Parameter(ref.weight.detach().clone())
        self.bias = nn.Parameter(ref.bias.detach().clone())
        self.normalise = normalise
        self.register_buffer("u", F.normalize(torch.randn(out_features), dim=0))
        self.register_buffer("v", F.normalize(torch.randn(in_features), dim=0))
        for _ in range(INIT_POWER_STEPS):  # sigma starts converged (and positive)
            self.power_step()

    @torch.no_grad()
    def power_step(self) -> None:
        w = self.weight.detach()
        self.v.copy_(F.normalize(w.T @ self.u, dim=0, eps=1e-12))
        self.u.copy_(F.normalize(w @ self.v, dim=0, eps=1e-12))

    def normalised_weight(self, frozen: bool = False) -> torch.Tensor:
        """W / sigma ``[out, in]`` (sigma differentiable in W unless ``frozen``)."""
        w = self.weight.detach() if frozen else self.weight
        if not self.normalise:
            return w
        return w / torch.dot(self.u, w @ self.v)

    def forward(self, x: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        b = self.bias.detach() if frozen else self.bias
        return F.linear(x, self.normalised_weight(frozen), b)


class Discriminator(nn.Module):
    """(x ``[N, D]``, c ``[N, C]``) -> logit ``[N]``; ``layers`` hidden SNLinear layers of ``hidden``."""

    def __init__(self, dim: int, cond_dim: int, hidden: int, layers: int, normalise: bool):
        super().__init__()
        widths = [dim + cond_dim] + [hidden] * layers + [1]
        self.layers = nn.ModuleList(SNLinear(a, b, normalise) for a, b in zip(widths[:-1], widths[1:]))
        # the weights at the last power step: buffers, so they move with the module's device; not saved
        for k, layer in enumerate(self.layers):
            self.register_buffer(f"seen{k}", layer.weight.detach().clone(), persistent=False)

    def power_step(self) -> None:
        """One power-iteration step per layer when the weights moved (in place: an optimiser step,
        a loaded state) since the last one or since construction, i.e. once per training step:
        loss calls on unchanged weights leave ``u`` and ``v`` alone, so a model's state is a
        function of its weights' history, and equal states give equal losses."""
        seen = [getattr(self, f"seen{k}") for k in range(len(self.layers))]
        if not all(torch.equal(layer.weight, w) for layer, w in zip(self.layers, seen)):
            for layer, w in zip(self.layers, seen):
                layer.power_step()
                w.copy_(layer.weight.detach())

    def forward(self, x: torch.Tensor, c: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        h = torch.cat([x, c], dim=-1) if c.shape[-1] else x
        for layer in self.layers[:-1]:
            h = F.leaky_relu(layer(h, frozen), LEAK)
        return self.layers[-1](h, frozen).squeeze(-1)


class GANSampler(nn.Module):
    """Exportable generator: noise ``[N, latent]``, c ``[N, C]`` -> x ``[N, D]``, one network pass."""

    def __init__(self, net: ResidualMLP, skip: bool):
        super().__init__()
        self.net, self.skip = net, skip

    def forward(self, noise, c):
        out = self.net(noise, c)
        return noise + out if self.skip else out


class GAN(Generator):
    family = "gan"
    event_weights = "none"  # the adversarial and MMD terms have no per-event form
    fourier_features = False  # the generator's input is noise: features of it have no use

    def __init__(self, dim: int, cond_dim: int, cfg: ModelConfig):
        super().__init__(dim, cond_dim, cfg)
        gan = cfg.gan
        if gan.mmd and not gan.mmd_widths:
            raise CardError("model.gan.mmd_widths: give at least one kernel width for the MMD term")
        if any(w <= 0 for w in gan.mmd_widths):
            raise CardError(f"model.gan.mmd_widths = {list(gan.mmd_widths)}: widths must be > 0")
        self.latent = gan.latent or dim
        self.skip = self.latent == dim
        self.gen = ResidualMLP(self.latent, dim, cfg.network, cfg.bayes, cond_dim=cond_dim)
        self.disc = Discriminator(dim, cond_dim, gan.disc_hidden, gan.disc_layers, gan.spectral_norm)
        self.__dict__["_coords"] = None  # the run's coordinates (attach_coords), not a submodule
        self.__dict__["_coords_at"] = None  # a copy on the device the loss runs on

    # -- protocol ---------------------------------------------------------------------------
    def check_coords(self, coords: nn.Module) -> None:
        """A name in ``model.gan.mmd`` the coordinates do not offer is a one-line :class:`CardError`."""
        offered = tuple(getattr(coords, "differentiable_observables", ()))
        for name in self.cfg.gan.mmd:
            if name not in offered:
                choices = ", ".join(offered) if offered else "none (this process has no differentiable observables)"
                raise CardError(f"model.gan.mmd: {name!r} is not an observable of this process; choose from {choices}")

    def attach_coords(self, coords: nn.Module) -> None:
        """Keep the run's fitted coordinates for the MMD observables (checked as :meth:`check_coords`)."""
        self.check_coords(coords)
        self.__dict__["_coords"] = coords
        self.__dict__["_coords_at"] = None

    def noise_dim(self, **opts) -> int:
        check_no_options(self.family, opts)
        return self.latent

    def sampler(self, **opts) -> nn.Module:
        check_no_options(self.family, opts)
        return GANSampler(self.gen, self.skip)

    def generate(self, c: torch.Tensor) -> torch.Tensor:
        """G(z, c) ``[N, D]`` with fresh noise z from the global torch RNG (training)."""
        z = torch.randn(c.shape[0], self.latent, dtype=c.dtype, device=c.device)
        out = self.gen(z, c)
        return z + out if self.skip else out

    # -- losses -----------------------------------------------------------------------------
    def losses(self, x: torch.Tensor, c: torch.Tensor) -> dict[str, torch.Tensor]:
        """The training terms (scalars): ``d`` = L_D (discriminator parameters only), ``g`` = the
        adversarial part of L_G and ``mmd`` = mmd_weight x the summed observable MMD² (generator
        parameters only); advances the spectral norms' power iteration when the weights moved."""
        self.disc.power_step()
        fake = self.generate(c)
        l_d = F.softplus(-self.disc(x, c)).mean() + F.softplus(self.disc(fake.detach(), c)).mean()
        l_g = F.softplus(-self.disc(fake, c, frozen=True)).mean()
        return {"d": l_d, "g": l_g, "mmd": self.observable_mmd(fake, x)}

    def loss(self, x, c, weight=None):
        if weight is not None:
            raise ModelSettingError("the gan cannot train on weighted events (data.weights: file): its adversarial "
                                    "and MMD terms have no per-event form; unweight the sample or choose another family")
        if not self.training:
            return self.quality(x, c)
        parts = self.losses(x, c)
        return parts["d"] + parts["g"] + parts["mmd"]

    def quality(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Lower is better: Gaussian-kernel MMD² in network coordinates between G(z, c) and x, plus
        the weighted observable MMD² (see the module docstring)."""
        fake = self.generate(c)
        widths = [s * math.sqrt(self.dim) for s in VAL_WIDTHS]
        return mmd2(fake, x, "gaussian", widths) + self.observable_mmd(fake, x)

    def observable_mmd(self, fake: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """mmd_weight x sum over ``model.gan.mmd`` of MMD²(obs(fake), obs(x)); 0 when none is named."""
        gan = self.cfg.gan
        total = torch.zeros((), dtype=x.dtype, device=x.device)
        if not gan.mmd or gan.mmd_weight == 0:
            return total
        coords = self._coords_on(x.device)
        # observables in float64 (float32 four-momenta of forward muons, E ~ TeV, lose m² to
        # cancellation, and sqrt at m² = 0 has an infinite gradient); the kernels in x's dtype
        # (float64 pairwise kernels cost 4x the time)
        fake64, x64 = fake.double(), x.double()
        for name in gan.mmd:
            obs_fake, obs_true = coords.observable(name, fake64), coords.observable(name, x64)
            total = total + mmd2(obs_fake.to(x.dtype), obs_true.to(x.dtype), gan.mmd_kernel, gan.mmd_widths)
        return gan.mmd_weight * total

    def _coords_on(self, device: torch.device) -> nn.Module:
        if self._coords is None:
            raise ModelSettingError("model.gan.mmd needs the run's coordinates: call attach_coords(coords) first")
        at = self._coords_at
        if at is None or at[0] != device:
            here = next(self._coords.buffers(), torch.zeros(())).device
            moved = self._coords if here == device else copy.deepcopy(self._coords).to(device)
            self.__dict__["_coords_at"] = at = (device, moved)
        return at[1]
