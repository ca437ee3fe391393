"""Every random state a training consumes, captured and restored for a bit-identical resume.

:func:`rng_state` returns a dict (torch CPU, the loop's shuffling ``torch.Generator``, numpy,
python ``random`` and, when CUDA is available, every GPU's); :func:`set_rng_state` puts it back.
The checkpoint keeps one such dict per rank. :func:`derived_seed` is the one way a random stream is
seeded from names and numbers (a posterior draw, a noise block, a Dirichlet draw), so that it is the
same on every machine and in every process.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def rng_state(shuffle: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state(),
             "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, shuffle: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    shuffle.set_state(state["shuffle"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def derived_seed(tag: str, *keys: int, bits: int = 64) -> int:
    """A seed fixed by ``tag`` and ``keys``: the first 8 bytes (little-endian) of
    sha256(``"hepgen-<tag>/<k1>/<k2>..."``), cut to ``bits`` bits (63 where a torch seed must be
    non-negative as a signed 64-bit integer)."""
    text = "/".join([f"hepgen-{tag}", *(str(k) for k in keys)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << bits) - 1)
