"""Validation of generated samples against a reference (``hepgen validate``).

Modules: :mod:`.obsset` (observable sets from ``validation/<process>.yaml``), :mod:`.histograms`
(normalised histograms, Bayesian bands), :mod:`.plots` (mplhep figures), :mod:`.classifier`
(two-sample test, DCTR weights), :mod:`.metrics` (precision table numbers), :mod:`.amplification`
(GANplification), :mod:`.inputs` (samples and run folders), :mod:`.report` (the whole report),
:mod:`.reweight` (``hepgen reweight``).
"""

from __future__ import annotations


def validate(*args, **kwargs):
    """See :func:`hepgen.validate.report.validate`."""
    from .report import validate as _validate

    return _validate(*args, **kwargs)


def validate_run(path, log=print, force: bool = True):
    """The training loop's hook: validate a run folder against its held-out split, writing
    ``<run>/validation/`` (replacing an earlier one). Returns the output folder (None for toys)."""
    from pathlib import Path

    from .report import validate as _validate

    card_file = Path(path) / "card.yaml"
    if card_file.is_file():
        from ..cards import load_card

        from .. import processes

        process = processes.get(load_card(card_file).process.name)
        if process.observables is None:  # e.g. the toys: their own density report (toy.png)
            log(f"validation: skipped for the {process.name} process (it has no observable set)")
            return None

    out = _validate(path, output=Path(path) / "validation", force=force, log=log)
    log(f"validation: {out / 'index.html'}")
    return out


__all__ = ["validate", "validate_run"]
