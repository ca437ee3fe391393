"""The ``model`` section of a card: the family, its network and each family's own settings.

Frozen dataclasses like every card section (:mod:`hepgen.cards` loads and checks them; the
names are re-exported there). A family's own keys live in a sub-section named after it
(``model.cfm``, ``model.inn``, ...), which the families that do not use it ignore.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .cardfields import ranged


@dataclass(frozen=True)
class BayesConfig:
    """Variational (mean-field Gaussian) weights."""

    enabled: bool = False
    layers: Literal["all", "last"] = "all"
    prior_sigma: float = ranged(1.0, gt=0)
    kl_scale: float = ranged(1.0, ge=0)  # multiplies KL / N_train
    init_log_sigma: float = -9.0
    draws: int = ranged(10, ge=1)  # posterior draws K used at generation and export


@dataclass(frozen=True)
class EnsembleConfig:
    """Repulsive deep ensemble (the card's ensemble section; docs/validation.md): K members of the family in one loss."""

    members: int = ranged(1, ge=1)  # K; 1 = off. Its members are the draws of generate and export
    repulsion: float = ranged(1.0, ge=0)  # strength of the repulsive term (x 1/N_train); 0 = a plain deep ensemble
    kernel: Literal["weight", "function"] = "weight"  # compare flat parameters, or samples on shared noise
    # bagging: member k's loss counts training event i n_k(i) ~ Poisson(1) times, drawn once from the card's
    # seed (each member on its own bootstrap resample of the one split; validation sees every event)
    bootstrap: bool = False


def draws(cfg: "ModelConfig") -> int:
    """The draws a run generates and exports by default: ensemble members, else Bayesian draws."""
    return cfg.ensemble.members if cfg.ensemble.members > 1 else cfg.bayes.draws


@dataclass(frozen=True)
class NetworkConfig:
    backbone: Literal["mlp", "transformer", "lgatr"] = "mlp"  # lgatr: cfm / didi on Z+jets (model.lgatr)
    hidden: int = ranged(256, ge=1)
    layers: int = ranged(4, ge=1)  # residual blocks / transformer layers
    heads: int = ranged(4, ge=1)  # transformer only
    dropout: float = ranged(0.0, ge=0, lt=1)
    activation: Literal["silu", "gelu", "relu"] = "silu"
    condition: Literal["input", "blocks"] = "input"  # mlp: condition at the input only, or in every block too
    # mlp: random Fourier features per input column (sin/cos of `fourier` fixed frequencies drawn
    # from N(0, fourier_scale^2), in standardised units) beside the raw input; 0 = off
    fourier: int = ranged(0, ge=0)
    fourier_scale: float = ranged(3.0, gt=0)
    fourier_columns: tuple[int, ...] = ()  # the network coordinates that get features; () = all


@dataclass(frozen=True)
class CFMConfig:
    solver: Literal["euler", "midpoint", "rk4"] = "rk4"
    steps: int = ranged(20, ge=1)
    time_embedding: int = ranged(16, ge=1)
    absent: Literal["frozen", "learned"] = "frozen"
    # independent: noise and data drawn apart (plain CFM); paired: training rows [x_T | z] of a teacher
    # run's ODE (rectified flow, made by hepgen distill --method reflow)
    coupling: Literal["independent", "paired"] = "independent"
    # the flow time t of each training event: uniform on [0, 1), or logit-normal, t = sigmoid(time_loc +
    # time_scale * N(0, 1)) (Esser et al. 2024): more weight in the middle of the path (time_loc 0) or near
    # the data end t = 1 (time_loc > 0); mixture: each event's t from either, with probability 1/2 each
    # (the whole path kept, extra weight where the logit-normal puts it)
    time_sampling: Literal["uniform", "logit_normal", "mixture"] = "uniform"
    time_loc: float = 0.0
    time_scale: float = ranged(1.0, gt=0)


@dataclass(frozen=True)
class DDPMConfig:
    timesteps: int = ranged(1000, ge=2)
    beta_schedule: Literal["linear", "cosine"] = "cosine"
    sampler: Literal["ancestral", "ddim"] = "ddim"
    ddim_steps: int = ranged(50, ge=1)
    time_embedding: int = ranged(16, ge=1)


@dataclass(frozen=True)
class JetGPTConfig:
    components: int = ranged(10, ge=1)  # mixture components per conditional
    periodic: tuple[int, ...] = ()  # 0-based components that are angles (von Mises mixtures)


@dataclass(frozen=True)
class INNConfig:
    blocks: int = ranged(8, ge=1)
    coupling: Literal["affine", "spline"] = "spline"
    bins: int = ranged(8, ge=2)
    bound: float = ranged(5.0, gt=0)  # spline domain [-bound, bound]
    clamp: float = ranged(2.0, gt=0)  # soft clamp of the affine log-scale


@dataclass(frozen=True)
class DIDIConfig:
    """Direct Diffusion: how each training batch pairs source events with target events."""

    coupling: Literal["independent", "ot"] = "independent"  # random pairs | minibatch optimal transport
    ot_block: int = ranged(128, ge=0)  # ot: solve the assignment in blocks of this many pairs (0: the whole batch)


@dataclass(frozen=True)
class VAEConfig:
    """beta-VAE (hepgen/models/vae.py): loss = reconstruction NLL + beta KL(q(z | x, c) || prior)."""

    latent: int = ranged(0, ge=0)  # latent dimensions; 0 = as many as network coordinates (D)
    beta: float = ranged(1.0, ge=0)  # KL weight; 1 = the ELBO (a bound on -log p), < 1 sharper reconstructions
    prior: Literal["gaussian", "flow"] = "gaussian"  # N(0, 1), or a conditional INN over z (model.inn settings)
    decoder_noise: Literal["learned", "fixed"] = "learned"  # sigma(z, c) per column from the decoder | decoder_sigma
    decoder_sigma: float = ranged(0.1, gt=0)  # the decoder's sigma with decoder_noise fixed (network units)


@dataclass(frozen=True)
class GANConfig:
    """MMD-regularised GAN (hepgen.models.gan): generator = model.network (+ model.bayes), and a
    discriminator of its own that is never exported."""

    latent: int = ranged(0, ge=0)  # noise columns of the generator; 0 = D (then x = noise + MLP)
    disc_hidden: int = ranged(128, ge=1)  # discriminator width
    disc_layers: int = ranged(3, ge=1)  # discriminator hidden layers
    spectral_norm: bool = True  # divide each discriminator weight by its largest singular value
    # observables with an MMD term between generated and true events (names the process's
    # coordinates offer, e.g. m_mumu for Z+jets); () = off
    mmd: tuple[str, ...] = ()
    mmd_kernel: Literal["gaussian", "breit_wigner"] = "breit_wigner"
    # kernel widths in the observable's units (GeV for masses); several = a sum of kernels. For the
    # Z peak (Gamma = 2.5 GeV): one width at the half width and one at a few widths
    mmd_widths: tuple[float, ...] = (1.25, 5.0)
    mmd_weight: float = ranged(1.0, ge=0)  # multiplies the MMD² in the generator's loss


@dataclass(frozen=True)
class LGATrConfig:
    """The Lorentz-equivariant L-GATr backbone (``network.backbone: lgatr``; ``lgatr.LGATrSlim``):
    one token per particle, its four-momentum a Lorentz vector (docs/families.md "L-GATr")."""

    blocks: int = ranged(2, ge=1)  # L-GATr blocks (attention + MLP)
    vectors: int = ranged(8, ge=1)  # hidden Lorentz-vector channels per token
    scalars: int = ranged(32, ge=1)  # hidden scalar channels per token
    heads: int = ranged(4, ge=1)
    # symmetry-breaking reference vectors (lgatr.get_spurions): the beam axis (1, 0, 0, +-1)
    # "lightlike", (0, 0, 0, +-1) "spacelike", (sqrt 2, 0, 0, +-1) "timelike", or "none"; and the
    # time direction (1, 0, 0, 0) of the lab frame
    beam: Literal["lightlike", "spacelike", "timelike", "none"] = "lightlike"
    time_reference: bool = True
    momentum_scale: float = ranged(100.0, gt=0)  # GeV: four-momenta enter the network as p / scale


@dataclass(frozen=True)
class StudentConfig:
    """One-step student of a CFM teacher (hepgen.models.student, made by ``hepgen distill --method student``)."""

    loss: Literal["mse", "huber"] = "mse"  # squared error | pseudo-Huber sqrt(|d|^2 + a^2) - a per event
    huber: float = ranged(0.01, gt=0)  # a = huber * sqrt(D) (network units)


@dataclass(frozen=True)
class NuisanceConfig:
    """One nuisance parameter nu of a nuisance-conditioned generator (``model.nuisance``, a list;
    :mod:`hepgen.nuisance`): nu is appended to the condition and each training event's loss is
    weighted by w(x; nu). nu = 0 is the nominal sample (w = 1)."""

    name: str = "a"  # what ``hepgen generate --nuisance NAME=VALUE`` calls it
    # parametric: w = 1 + nu ((O - center) / scale)^2 with O the named observable (the seed's
    # pT_j1 example); psweight: Pythia's shower variation of the training file's PSWeight branch,
    # linear in nu on each side (nu = +1 the up, -1 the down variation)
    kind: Literal["parametric", "psweight"] = "parametric"
    # gaussian: N(0, 1) truncated to the range; ends: training draws nu from the range's ends and 0
    # (equally), generation samples the exact mixture of those densities (docs/systematics.md)
    prior: Literal["uniform", "gaussian", "ends"] = "uniform"
    range: tuple[float, ...] = (-1.0, 1.0)  # [low, high], low <= 0 <= high: the values training draws
    observable: str = "pt_j1"  # parametric: a named observable (hepgen.observables; toys: x1, x2)
    center: float = 15.0  # parametric, in the observable's unit (GeV)
    scale: float = ranged(100.0, gt=0)  # parametric, in the observable's unit (GeV)
    variation: Literal["isr", "fsr"] = "fsr"  # psweight: the shower whose renormalisation scale varies
    # share of the training draws set to nu = 0 exactly (the rest from the prior): anchors the nominal
    # sample where the response is steep (docs/systematics.md); generation's "prior" is the prior alone
    nominal: float = ranged(0.0, ge=0, lt=1)


@dataclass(frozen=True)
class ModelConfig:
    family: Literal["cfm", "ddpm", "jetgpt", "inn", "didi", "vae", "gan", "student"] = "cfm"
    network: NetworkConfig = NetworkConfig()
    bayes: BayesConfig = BayesConfig()
    cfm: CFMConfig = CFMConfig()
    ddpm: DDPMConfig = DDPMConfig()
    jetgpt: JetGPTConfig = JetGPTConfig()
    inn: INNConfig = INNConfig()
    didi: DIDIConfig = DIDIConfig()  # didi also uses cfm (solver, steps, time embedding)
    vae: VAEConfig = VAEConfig()  # vae with prior flow also uses inn (the prior's coupling blocks)
    gan: GANConfig = GANConfig()
    lgatr: LGATrConfig = LGATrConfig()  # network.backbone lgatr only
    student: StudentConfig = StudentConfig()  # student also uses cfm (time embedding) and the network
    ensemble: EnsembleConfig = EnsembleConfig()  # members > 1: a repulsive ensemble of this family
    # nuisance parameters appended to the condition (hepgen.nuisance); () = none, left out of the dump
    nuisance: tuple[NuisanceConfig, ...] = field(default=(), metadata={"omit_empty": True})
