"""Generator families behind one protocol (:class:`~hepgen.models.base.Generator`)."""

from __future__ import annotations

import importlib

from ..cards import ModelConfig
from .base import Generator

FAMILIES = {
    "cfm": "hepgen.models.cfm:CFM",
    "ddpm": "hepgen.models.ddpm:DDPM",
    "inn": "hepgen.models.inn:INN",
    "jetgpt": "hepgen.models.jetgpt:JetGPT",
}


def build_model(cfg: ModelConfig, dim: int, cond_dim: int = 0) -> Generator:
    """The generator of family ``cfg.family`` for ``dim`` coordinates and ``cond_dim`` conditions."""
    if cfg.family not in FAMILIES:
        from ..errors import CardError

        raise CardError(f"model.family {cfg.family!r} is not available; choose from {', '.join(FAMILIES)}")
    module, cls = FAMILIES[cfg.family].split(":")
    return getattr(importlib.import_module(module), cls)(dim, cond_dim, cfg)
