"""The integrand of p p -> gamma*/Z -> mu- mu+ at LO over the unit hypercube, per channel.

With the invariants of :mod:`hepgen.integrate.phasespace` (theta: the mu- angle from the +z
beam in the pair's rest frame), the fully differential cross section is ::

    dsigma / (ds dy dcos dphi) = sum_q [ xf_q(x1) xf_qbar(x2) |M_q|^2(cos)
                                       + xf_qbar(x1) xf_q(x2) |M_q|^2(-cos) ] / (64 pi^2 s^2)

(``f(x1) f(x2) dx1 dx2 = xf1 xf2 / tau * ds / S dy`` and ``dsigma = |M|^2 / (2 s) dPhi_2``
with ``dPhi_2 = dcos dphi / (32 pi^2)``), in pb after ``(hbar c)^2``. The PDFs are taken at
``mu_F^2 = (scale_factor m_mumu)^2`` (Pythia's 2 -> 1 default, ``SigmaProcess:factorScale1``),
the quarks are d u s c b (``flavours``). The m_mumu window is the whole range of the ``s``
mappings, so no point falls outside the cuts (cut efficiency 1).

Channel ``c`` maps the hypercube with its ``s`` mapping; :meth:`DrellYan.channel_integrand` is
``dsigma * Jacobian_c`` (the integral over the hypercube is sigma for every channel), and
:meth:`DrellYan.prior_weights` the multi-channel weights ``alpha_c = g_c(s) / sum_k g_k(s)``
from the mappings' densities (``sum_c <alpha_c f_c>`` is sigma).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import crosssection
from ..electroweak import GEV2_TO_PB, Z_MASS, Z_WIDTH
from ..events import EventSample, make_collection
from ..kinematics import MUON_MASS, epxpypz_to_ptetaphim
from .config import IntegrateConfig
from .matrix import QUARKS, squared_me
from .pdf import GridPDF, pythia_pdf_path
from .phasespace import BreitWigner, PhaseSpacePoint, PhotonPole, common_coordinates, kinematics, muon_momenta

DIM = 4


class DrellYan:
    """The LO Drell-Yan integrand of one card (``sqrt_s`` in GeV) on the ``dim``-dimensional
    hypercube; :class:`hepgen.integrate.emission.DrellYanJet` is the one with a real emission."""

    dim = DIM

    def __init__(self, cfg: IntegrateConfig, sqrt_s: float, pdf: GridPDF | None = None):
        self.cfg = cfg
        self.s_hadronic = sqrt_s ** 2
        self.s_min, self.s_max = cfg.m_min ** 2, cfg.m_max ** 2
        self.pdf = pdf if pdf is not None else GridPDF(pythia_pdf_path(cfg.pdf))
        known = {"photon": PhotonPole(self.s_min, self.s_max),
                 "z": BreitWigner(self.s_min, self.s_max, Z_MASS, Z_WIDTH)}
        self.mappings = [known[c] for c in cfg.channels]
        self.quarks = QUARKS[:cfg.flavours]
        self.calls = 0  # integrand evaluations so far

    @property
    def channel_count(self) -> int:
        return len(self.mappings)

    def point(self, r: torch.Tensor, channel: int) -> PhaseSpacePoint:
        return kinematics(r, self.mappings[channel], self.s_hadronic)

    def differential(self, p: PhaseSpacePoint) -> torch.Tensor:
        """``dsigma / (ds dy dcos dphi)`` in pb GeV^-2, float64 ``[N]``."""
        self.calls += len(p.s)
        q2 = self.cfg.scale_factor ** 2 * p.s
        running = self.cfg.alpha_em == "running"
        photon, z = self.cfg.exchange != "z", self.cfg.exchange != "photon"
        total = torch.zeros_like(p.s)
        for q in self.quarks:
            forward = squared_me(q, p.s, p.cos_theta, running, photon, z)
            backward = squared_me(q, p.s, -p.cos_theta, running, photon, z)
            total = total + (self.pdf.xfx(q, p.x1, q2) * self.pdf.xfx(-q, p.x2, q2) * forward
                             + self.pdf.xfx(-q, p.x1, q2) * self.pdf.xfx(q, p.x2, q2) * backward)
        return total * GEV2_TO_PB / (64 * math.pi ** 2 * p.s ** 2)

    def channel_integrand(self, r: torch.Tensor, channel: int) -> tuple[torch.Tensor, PhaseSpacePoint]:
        """``(dsigma * Jacobian_c, point)``: the integrand over the hypercube in channel ``channel`` (pb)."""
        p = self.point(r, channel)
        return self.differential(p) * p.jacobian, p

    def coordinates(self, p: PhaseSpacePoint) -> torch.Tensor:
        """The channel-independent point of the hypercube (:func:`common_coordinates`)."""
        return common_coordinates(p, self.s_min, self.s_max)

    def prior_weights(self, p: PhaseSpacePoint) -> torch.Tensor:
        """``alpha_c = g_c / sum_k g_k`` ``[N, channels]`` (the densities of s; y, cos, phi are mapped alike)."""
        g = torch.stack([m.density(p.s) for m in self.mappings], dim=1)
        return g / g.sum(dim=1, keepdim=True)

    def madnis_function(self, x: torch.Tensor, channels: torch.Tensor):
        """MadNIS's ``(x, c) -> (f, y, alpha_prior)`` (``madnis.integrator.Integrand`` with
        ``remapped_dim`` and ``has_channel_weight_prior``): ``y`` the channel-independent point."""
        f = torch.empty(len(x), dtype=torch.float64, device=x.device)
        y = torch.empty(len(x), self.dim, dtype=torch.float64, device=x.device)
        alpha = torch.empty(len(x), self.channel_count, dtype=torch.float64, device=x.device)
        for c in range(self.channel_count):
            sel = channels == c
            if bool(sel.any()):
                f[sel], p = self.channel_integrand(x[sel].double(), c)
                y[sel] = self.coordinates(p)
                alpha[sel] = self.prior_weights(p)
        return f.to(x.dtype), y.to(x.dtype), alpha.to(x.dtype)

    def final_state(self, p: PhaseSpacePoint) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Lab (E, px, py, pz) ``[N, 4]`` of the mu-, the mu+ and the outgoing parton (None: none)."""
        return (*muon_momenta(p), None)

    def to_events(self, r: torch.Tensor, channels: torch.Tensor, weights: np.ndarray,
                  info: dict[str, str] | None = None) -> EventSample:
        """hepgen event records of the points ``r`` ``[N, dim]`` of ``channels`` ``[N]``: a Muon
        collection (mu- and mu+, pT-ordered, with charge, the muon mass) and, when
        :meth:`final_state` has a parton, a one-entry Jet collection of mass 0."""
        mu = np.empty((len(r), 2, 4))
        charge = np.empty((len(r), 2), dtype=np.int32)
        jet = None
        for c in range(self.channel_count):
            sel = (channels == c).numpy()
            if sel.any():
                minus, plus, parton = self.final_state(self.point(r[sel].double(), c))
                for k, (p4, q) in enumerate(((minus, -1), (plus, 1))):
                    pt, eta, phi, _ = epxpypz_to_ptetaphim(*(p4[:, i].numpy() for i in range(4)))
                    mu[sel, k] = np.stack([pt, eta, phi, np.full(len(pt), MUON_MASS)], axis=1)
                    charge[sel, k] = q
                if parton is not None:
                    jet = np.empty((len(r), 4)) if jet is None else jet
                    pt, eta, phi, _ = epxpypz_to_ptetaphim(*(parton[:, i].numpy() for i in range(4)))
                    jet[sel] = np.stack([pt, eta, phi, np.zeros(len(pt))], axis=1)
        lead = mu[:, 0, 0] >= mu[:, 1, 0]
        order = np.where(lead[:, None], [0, 1], [1, 0])
        mu = np.take_along_axis(mu, order[:, :, None], axis=1).reshape(-1, 4)
        charge = np.take_along_axis(charge, order, axis=1).reshape(-1)
        coll = {"Muon": make_collection(mu[:, 0], mu[:, 1], mu[:, 2], mu[:, 3], counts=np.full(len(r), 2), charge=charge)}
        if jet is not None:
            coll["Jet"] = make_collection(jet[:, 0], jet[:, 1], jet[:, 2], jet[:, 3], counts=np.ones(len(r), dtype=np.int64))
        return EventSample.build(coll, weights, info or {})


def process_name(cfg: IntegrateConfig) -> str:
    """The card's process in words."""
    if cfg.emission == "real":
        return f"p p -> gamma*/Z + parton -> mu- mu+ + (g or q), pT > {cfg.pt_min:g} GeV (LO)"
    return "p p -> gamma*/Z -> mu- mu+ (LO)"


def sample_info(cfg: IntegrateConfig, sigma: float, error: float, method: str) -> dict[str, str]:
    """The provenance of a sample: generator, PDF set, window, cross section (pb)."""
    return {"generator": f"hepgen integrate ({method})", "process": process_name(cfg),
            "pdf_set": cfg.pdf, "m_mumu_window_gev": f"{cfg.m_min} {cfg.m_max}",
            **crosssection.record(sigma, error)}
