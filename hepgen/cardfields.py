"""Card fields with range checks: ``ranged(default, ge=..., gt=..., le=..., lt=...)``.

Every frozen card section (hepgen.cards, hepgen.modelcards, the detector, the processes' own
settings) declares a bounded number this way; :func:`hepgen.cards.build_section` checks it and
names the key and the allowed range in its one-line error.
"""

from __future__ import annotations

from dataclasses import field


def ranged(default, **limits):
    """A dataclass field with ``default`` whose value must satisfy ``limits`` (ge, gt, le, lt)."""
    return field(default=default, metadata={"range": limits})
