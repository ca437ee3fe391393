"""Every random state a training consumes, captured and restored for a bit-identical resume.

:func:`rng_state` returns a dict (torch CPU, the loop's shuffling ``torch.Generator``, numpy,
python ``random`` and, when CUDA is available, every GPU's); :func:`set_rng_state` puts it back.
The checkpoint keeps one such dict per rank.
"""

from __future__ import annotations

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
