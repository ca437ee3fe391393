"""Processes, looked up by name: the one place that knows which processes exist.

Each process is one module here with one object that follows
:class:`~hepgen.processes.base.Process` (Z+jets: :mod:`.zjets`; tt̄: :mod:`.ttbar`; the toys: :mod:`.toys`).
:func:`get` returns the process of a card's ``process.name``; :func:`register` adds one (a
plugin, or a test's own process) without editing hepgen. CONTRIBUTING.md says how to add one.
"""

from __future__ import annotations

from ..errors import CardError
from .base import AfterTraining, Process, Selection, settings_of
from .toys import TOYS
from .ttbar import PROCESS as TTBAR
from .zjets import PROCESS as ZJETS
from .zjets_unfold import PROCESS as ZJETS_UNFOLD

_REGISTRY: dict[str, Process] = {}


def register(process: Process, replace: bool = False) -> Process:
    """Make ``process`` available as ``process.name: <its name>`` in cards. Returns it."""
    if process.name in _REGISTRY and not replace and _REGISTRY[process.name] is not process:
        raise ValueError(f"a process named {process.name!r} is registered already")
    _REGISTRY[process.name] = process
    return process


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def get(name: str) -> Process:
    """The registered process called ``name`` (a one-line CardError naming the choices if none)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise CardError(f"process.name {name!r} is not a known process; choose from {', '.join(sorted(_REGISTRY))}") from None


def settings(card):
    """The card's process's own settings (its ``process.settings`` checked by its
    ``settings_class``), or None; a one-line CardError for an unknown process or a bad key."""
    return settings_of(get(card.process.name), card)


def names() -> list[str]:
    return sorted(_REGISTRY)


for _p in (ZJETS, ZJETS_UNFOLD, TTBAR, *TOYS.values()):
    register(_p)

__all__ = ["AfterTraining", "Process", "Selection", "get", "names", "register", "settings", "unregister"]
