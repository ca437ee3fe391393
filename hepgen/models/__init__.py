"""Generator families behind one protocol (:class:`~hepgen.models.base.Generator`)."""

from __future__ import annotations

import importlib

from ..cards import ModelConfig
from ..errors import CardError
from .base import Generator
from .ensemble import Ensemble

FAMILIES = {
    "cfm": "hepgen.models.cfm:CFM",
    "ddpm": "hepgen.models.ddpm:DDPM",
    "didi": "hepgen.models.didi:DiDi",
    "gan": "hepgen.models.gan:GAN",
    "inn": "hepgen.models.inn:INN",
    "jetgpt": "hepgen.models.jetgpt:JetGPT",
    "student": "hepgen.models.student:Student",
    "vae": "hepgen.models.vae:VAE",
}


def family_class(name: str) -> type[Generator]:
    """The class of family ``name`` (imported on first use)."""
    if name not in FAMILIES:
        raise CardError(f"model.family {name!r} is not available; choose from {', '.join(FAMILIES)}")
    module, cls = FAMILIES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_model(cfg: ModelConfig, dim: int, cond_dim: int = 0) -> Generator:
    """The generator of family ``cfg.family`` for ``dim`` coordinates and ``cond_dim`` conditions."""
    family = family_class(cfg.family)
    backbone = cfg.network.backbone
    if backbone not in family.backbones:
        serves = [name for name in FAMILIES if backbone in family_class(name).backbones]
        raise CardError(f"model.network.backbone {backbone} does not apply to model.family {cfg.family} (its network "
                        f"is built from: {', '.join(family.backbones)}); {backbone} serves {', '.join(serves)}")
    if cfg.network.fourier and not (family.fourier_features and backbone == "mlp"):
        serves = [name for name in FAMILIES if family_class(name).fourier_features]
        raise CardError(f"model.network.fourier needs the mlp backbone of a family whose input it serves "
                        f"({', '.join(serves)}); set it to 0")
    bad = [i for i in cfg.network.fourier_columns if not 0 <= i < dim]
    if bad:
        raise CardError(f"model.network.fourier_columns: {bad[0]} is not a column (0..{dim - 1})")
    k = cfg.ensemble.members
    if k == 1 and cfg.ensemble.bootstrap:
        raise CardError("model.ensemble.bootstrap resamples the training events per member; set "
                        "model.ensemble.members > 1")
    if k == 1:
        return family(dim, cond_dim, cfg)
    if cfg.bayes.enabled:
        raise CardError(f"model.ensemble.members {k} with model.bayes.enabled: the draws are either ensemble members "
                        "or posterior draws; choose one")
    return Ensemble([family(dim, cond_dim, cfg) for _ in range(k)], cfg)
