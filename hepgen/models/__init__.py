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
    "vae": "hepgen.models.vae:VAE",
}

# the families whose network is CFM's velocity field, the one place the L-GATr backbone plugs in
LGATR_FAMILIES = ("cfm", "didi")


def build_model(cfg: ModelConfig, dim: int, cond_dim: int = 0) -> Generator:
    """The generator of family ``cfg.family`` for ``dim`` coordinates and ``cond_dim`` conditions."""
    if cfg.family not in FAMILIES:
        raise CardError(f"model.family {cfg.family!r} is not available; choose from {', '.join(FAMILIES)}")
    if cfg.network.backbone == "lgatr" and cfg.family not in LGATR_FAMILIES:
        raise CardError(f"model.network.backbone lgatr needs a family whose network is a velocity field on the "
                        f"event's four-momenta ({', '.join(LGATR_FAMILIES)}); model.family {cfg.family} has none")
    if cfg.network.fourier and (cfg.family == "jetgpt" or cfg.network.backbone != "mlp"):
        raise CardError("model.network.fourier needs the mlp backbone (families cfm, ddpm, inn); set it to 0")
    bad = [i for i in cfg.network.fourier_columns if not 0 <= i < dim]
    if bad:
        raise CardError(f"model.network.fourier_columns: {bad[0]} is not a column (0..{dim - 1})")
    module, cls = FAMILIES[cfg.family].split(":")
    family = getattr(importlib.import_module(module), cls)
    k = cfg.ensemble.members
    if k == 1:
        return family(dim, cond_dim, cfg)
    if cfg.bayes.enabled:
        raise CardError(f"model.ensemble.members {k} with model.bayes.enabled: the draws are either ensemble members "
                        "or posterior draws; choose one")
    return Ensemble([family(dim, cond_dim, cfg) for _ in range(k)], cfg)
