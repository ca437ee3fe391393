"""VAE: a conditional beta-VAE (Kingma & Welling 2013, arXiv:1312.6114; Higgins et al. 2017).

An encoder q(z | x, c) = N(mu_q, sigma_q^2) over ``latent`` dimensions and a decoder
p(x | z, c) = N(mu(z, c), sigma(z, c)^2) over the D network coordinates, both
:class:`~hepgen.nn.blocks.ResidualMLP` with ``model.network``; the encoder is always plain, the
decoder is Bayesian when ``model.bayes.enabled`` (the training loop adds its weights' KL term).
The loss is the mean over events of the negative ELBO with a KL weight ``beta``:

    loss = E_q[-log p(x | z, c)] + beta KL(q(z | x, c) || p(z | c))      (nats per event)

with one reparametrised draw z = mu_q + sigma_q eps. The prior p(z | c) is N(0, 1) (``prior:
gaussian``, analytic KL) or a conditional INN over z (``prior: flow``, the coupling blocks of
:mod:`hepgen.models.inn` with ``model.inn``, always plain; Monte-Carlo KL log q(z) - log p(z | c)),
which learns the aggregate posterior, so that sampling from the prior lands where the decoder
was trained. At beta = 1 the loss is an upper bound on -log p(x | c); beta < 1 buys sharper
reconstructions at the price of a prior that no longer matches the aggregate posterior (what
the flow prior repairs). ``decoder_noise: learned``: log sigma(z, c) per column is a second
decoder head; ``fixed``: sigma = ``decoder_sigma`` for every column. Both log sigmas are soft
clamped, 7 tanh(s / 7).

Sampling is one decoder call (after the flow prior's inverse pass for ``prior: flow``): noise
``[N, latent + D]`` = [z noise | eps], all standard normal, and

    x = mu(z, c) + sigma(z, c) eps.

The mean mu(z, c) alone would be E[x | z, c]: it drops the spread that the latent does not
encode and under-disperses every column (with a collapsed latent, all events of one condition
would be one point). The sampler is elementwise ops around the MLPs (the INN prior adds its
export-friendly inverse), so it exports to ONNX Runtime and SOFIE.

There is no exact density: :meth:`VAE.log_prob` is not implemented (the ELBO is a bound, not a
likelihood).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from ..cards import ModelConfig
from ..nn.blocks import ResidualMLP
from .base import Generator, ModelSettingError, check_no_options, weighted_mean
from .inn import INN, INNSampler

LOG_SIGMA_BOUND = 7.0  # soft clamp of the encoder's and decoder's log sigma
_LOG_2PI = math.log(2 * math.pi)


def soft_clamp(s: torch.Tensor, bound: float = LOG_SIGMA_BOUND) -> torch.Tensor:
    return bound * torch.tanh(s / bound)


class GaussianDecoder(nn.Module):
    """(z ``[N, L]``, c ``[N, C]``) -> (mu ``[N, D]``, log sigma ``[N, D]``)."""

    def __init__(self, latent: int, dim: int, cond_dim: int, cfg: ModelConfig):
        super().__init__()
        self.dim = dim
        self.learned = cfg.vae.decoder_noise == "learned"
        self.log_sigma = math.log(cfg.vae.decoder_sigma)
        # no Fourier features on z: model.network.fourier_columns name columns of x
        self.net = ResidualMLP(latent, 2 * dim if self.learned else dim, cfg.network, cfg.bayes,
                               cond_dim=cond_dim, feature_columns=())

    def forward(self, z, c):
        h = self.net(z, c)
        if self.learned:
            return h[:, :self.dim], soft_clamp(h[:, self.dim:])
        return h, torch.full_like(h, self.log_sigma)


class VAESampler(nn.Module):
    """Exportable: noise ``[N, L + D]`` ([z noise | eps], normals), c ``[N, C]`` -> x ``[N, D]``."""

    def __init__(self, decoder: GaussianDecoder, prior: INNSampler | None, latent: int):
        super().__init__()
        self.decoder, self.prior, self.latent = decoder, prior, latent

    def forward(self, noise, c):
        z = noise[:, :self.latent]
        if self.prior is not None:
            z = self.prior(z, c)
        mu, log_sigma = self.decoder(z, c)
        return mu + torch.exp(log_sigma) * noise[:, self.latent:]


class VAE(Generator):
    family = "vae"
    event_weights = "positive"  # the ELBO is a bound: with w < 0 the encoder could loosen it without limit

    def __init__(self, dim: int, cond_dim: int, cfg: ModelConfig):
        super().__init__(dim, cond_dim, cfg)
        vae = cfg.vae
        self.latent = vae.latent or dim
        if vae.prior == "flow" and self.latent < 2:
            raise ModelSettingError(f"model.vae.prior flow needs model.vae.latent >= 2 (the INN's coupling blocks "
                                    f"split the latent space); it is {self.latent}")
        self.beta = vae.beta
        self.encoder = ResidualMLP(dim, 2 * self.latent, cfg.network, None, cond_dim=cond_dim)
        self.decoder = GaussianDecoder(self.latent, dim, cond_dim, cfg)
        self.prior = None
        if vae.prior == "flow":  # plain, without x's Fourier columns
            flow_cfg = dataclasses.replace(cfg, network=dataclasses.replace(cfg.network, fourier=0, fourier_columns=()),
                                           bayes=dataclasses.replace(cfg.bayes, enabled=False))
            self.prior = INN(self.latent, cond_dim, flow_cfg)

    def encode(self, x, c) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x, c): (mu ``[N, L]``, log sigma ``[N, L]``)."""
        h = self.encoder(x, c)
        return h[:, :self.latent], soft_clamp(h[:, self.latent:])

    def elbo_terms(self, x, c, eps: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction NLL ``[N]``, KL(q || prior) ``[N]``), nats per event, for one
        reparametrised draw z = mu_q + sigma_q eps (``eps`` ``[N, L]``; default: drawn with the
        global torch RNG). The KL is analytic for the Gaussian prior, log q(z) - log p(z | c) for
        the flow."""
        mu_q, log_sig_q = self.encode(x, c)
        if eps is None:
            eps = torch.randn_like(mu_q)
        z = mu_q + torch.exp(log_sig_q) * eps
        mu, log_sigma = self.decoder(z, c)
        nll = (0.5 * ((x - mu) * torch.exp(-log_sigma)) ** 2 + log_sigma).sum(-1) + 0.5 * self.dim * _LOG_2PI
        if self.prior is None:
            kl = 0.5 * (mu_q**2 + torch.exp(2 * log_sig_q) - 1 - 2 * log_sig_q).sum(-1)
        else:
            log_q = (-0.5 * eps**2 - log_sig_q).sum(-1) - 0.5 * self.latent * _LOG_2PI
            kl = log_q - self.prior.log_prob(z, c)
        return nll, kl

    def loss(self, x, c, weight=None):
        """The negative ELBO per event, averaged (with ``weight`` ``[N]``: weighted; the family takes
        only w >= 0, ``event_weights``: with w < 0 the encoder could loosen the bound without limit)."""
        nll, kl = self.elbo_terms(x, c)
        if weight is None:
            return nll.mean() + self.beta * kl.mean()
        return weighted_mean(nll + self.beta * kl, weight)

    def noise_dim(self, **opts) -> int:
        check_no_options(self.family, opts)
        return self.latent + self.dim

    def sampler(self, **opts) -> nn.Module:
        check_no_options(self.family, opts)
        return VAESampler(self.decoder, None if self.prior is None else INNSampler(self.prior.blocks), self.latent)
