"""The cross section a sample stands for, under one naming, carried from file to file.

Every event file's provenance (``EventSample.info``) names the cross section of the events it
holds (after their selection) as :data:`XSEC` = ``cross_section_pb`` and its error as
:data:`XSEC_ERR` = ``cross_section_error_pb`` (pb, ``repr`` of a float). ``hepgen simulate``
writes them (Pythia's sigmaGen times the selection efficiency), the LHE reader takes them from
the ``<init>`` process lines, the LHE writer writes them as ``XSECUP`` / ``XERRUP``, training
keeps the training sample's value in the run folder, and ``hepgen generate`` scales it by the
fraction of generated events its selection keeps (:func:`scaled`).
"""

from __future__ import annotations

import math
from typing import Mapping

XSEC = "cross_section_pb"
XSEC_ERR = "cross_section_error_pb"


def cross_section(info: Mapping[str, str]) -> tuple[float, float] | None:
    """(sigma, error) in pb from a provenance, or None when it names none (or not a finite one)."""
    if XSEC not in info:
        return None
    try:
        sigma, err = float(info[XSEC]), float(info.get(XSEC_ERR, 0.0))
    except ValueError:
        return None
    return (sigma, err) if math.isfinite(sigma) and math.isfinite(err) else None


def scaled(sigma: float, err: float, passed: float, total: float) -> tuple[float, float]:
    """The cross section of the part ``passed / total`` of a sample of cross section ``sigma``
    (pb), with the error of ``sigma`` and the binomial error of the fraction added in
    quadrature: ``sigma eff sqrt((err / sigma)^2 + (1 - eff) / (eff total))``."""
    if total <= 0 or passed <= 0:
        return 0.0, 0.0
    eff = passed / total
    rel = math.hypot(err / sigma if sigma else 0.0, math.sqrt(max(1.0 - eff, 0.0) / (eff * total)))
    return sigma * eff, abs(sigma * eff) * rel


def record(sigma: float, err: float) -> dict[str, str]:
    """The provenance keys for a cross section."""
    return {XSEC: repr(float(sigma)), XSEC_ERR: repr(float(err))}


def scaled_record(info: Mapping[str, str], passed: float, total: float) -> dict[str, str]:
    """The provenance keys of the part ``passed / total`` of a sample with provenance ``info``
    (empty when ``info`` names no cross section)."""
    xs = cross_section(info)
    return record(*scaled(*xs, passed, total)) if xs else {}
