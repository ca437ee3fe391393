"""The dimuon columns of the Z+jets coordinates (:mod:`hepgen.coords.zjets`): the pT of muon 2
as the dimuon mass (:class:`DimuonMass`), that mass as the logit of a fitted Breit-Wigner CDF
(:class:`BreitWignerMass`, ``process.settings.mass_coordinate: breit_wigner``), and, for
leading-order mu mu + parton events, the dimuon system with its decay and the parton as its
recoil (:class:`DimuonFrame`, ``process.settings.jet_recoil``)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..fourvectors import (atan2_exportable, cosh_exportable, decay_to_lab, fourvector, mass, ptetaphi, rapidity,
                           rest_frame_angles, sinh_exportable)
from ..kinematics import MUON_MASS, wrap_angle, wrap_phi
from .chain import Transform


class DimuonMass(Transform):
    """Raw column 2 (pT of muon 2) <-> the massless dimuon mass m0 (GeV).

    m0^2 = 2 pT1 pT2 (cosh(eta1 - eta2) + cos(d)) with d = raw column 4 = phi2 - phi1 - pi, i.e.
    the Z mass up to m_mu^2 / m^2 ~ 1e-6: the narrow Z peak becomes one coordinate instead of a
    function of six. Exactly invertible for fixed (pT1, eta1, eta2, d); log|dm0/dpT2| = log(m0 / 2 pT2).
    """

    @staticmethod
    def _angular(y: torch.Tensor) -> torch.Tensor:
        return cosh_exportable(y[:, 1] - y[:, 3]) + torch.cos(y[:, 4])

    def forward(self, y):
        m0 = torch.sqrt(2 * y[:, 0] * y[:, 2] * self._angular(y))
        return torch.cat([y[:, :2], m0.unsqueeze(-1), y[:, 3:]], -1), torch.log(m0 / (2 * y[:, 2]))

    def inverse(self, y):
        pt2 = y[:, 2] * y[:, 2] / (2 * y[:, 0] * self._angular(y))
        return torch.cat([y[:, :2], pt2.unsqueeze(-1), y[:, 3:]], -1)


class BreitWignerMass(Transform):
    """Column ``col`` (log m0) <-> logit F(m0): F(m) = (atan s - a0) / (pi/2 - a0), s = (m^2 - M^2) / (M G),
    a0 = atan(-M / G): the cumulative Breit-Wigner in m^2 on m^2 >= 0.

    A sample that is a Breit-Wigner of (M, G) becomes a logistic distribution; the Z peak of
    Drell-Yan (radiative tail, photon exchange) becomes smooth and a few units wide, with the
    low-mass tail on the left. M and G (float64 buffers ``mass``, ``width``) are fitted by
    :meth:`fit`: M the median of m0, G from its quartiles, (q75^2 - q25^2) / (2 M), which is
    exact for a Breit-Wigner. The inverse uses only exportable ops (Sigmoid, Sin, Div, Log) and
    stays precise and finite in float32 for any input (see :meth:`inverse`).
    """

    def __init__(self, col: int):
        super().__init__()
        self.col = col
        self.register_buffer("mass", torch.tensor(91.0, dtype=torch.float64))
        self.register_buffer("width", torch.tensor(2.5, dtype=torch.float64))
        self.register_buffer("span", torch.tensor(math.pi / 2 + math.atan(91.0 / 2.5), dtype=torch.float64))  # pi/2 - a0

    @torch.no_grad()
    def fit(self, m0: torch.Tensor) -> None:
        q25, q50, q75 = torch.quantile(m0.double(), torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
        self.set(float(q50), float((q75 ** 2 - q25 ** 2) / (2 * q50)))

    @torch.no_grad()
    def set(self, mass: float, width: float) -> "BreitWignerMass":
        """Use the Breit-Wigner of this ``mass`` and ``width`` (GeV) instead of a fitted one."""
        self.mass.fill_(mass)
        self.width.fill_(width)
        self.span.fill_(math.pi / 2 + math.atan(mass / width))
        return self

    def _constants(self, dtype):
        return self.mass.to(dtype), self.width.to(dtype), self.span.to(dtype)

    def forward(self, y):
        mass, width, span = self._constants(y.dtype)
        m2 = torch.exp(2 * y[:, self.col])
        s = (m2 - mass * mass) / (mass * width)
        angle = torch.atan(s)
        f = (angle + torch.atan(mass / width)) / span  # F, precise in the lower tail
        upper = (math.pi / 2 - angle) / span  # 1 - F, precise in the upper tail
        z = torch.log(f) - torch.log(upper)
        logdet = -torch.log(f) - torch.log(upper) - torch.log(span) - torch.log1p(s * s) + torch.log(2 * m2 / (mass * width))
        return torch.cat([y[:, :self.col], z.unsqueeze(-1), y[:, self.col + 1:]], -1), logdet

    def inverse(self, y):
        # m^2 = M^2 + M G cot(delta) with delta = pi/2 - angle = span (1 - F); written as
        # M G sin(span - delta) / (sin(delta) sin(span)), a ratio of positive terms (no cancellation
        # in the low tail, no sign change at the ends); delta >= 1e-30 keeps m finite for any input
        mass, width, span = self._constants(y.dtype)
        z = y[:, self.col]
        delta = span * torch.sigmoid(-z) + 1e-30
        m2 = mass * width * torch.sin(span * torch.sigmoid(z)) / (torch.sin(delta) * torch.sin(span)) + 1e-12
        return torch.cat([y[:, :self.col], (0.5 * torch.log(m2)).unsqueeze(-1), y[:, self.col + 1:]], -1)


def dimuon_system(p: torch.Tensor):
    """The dimuon of p ``[N, P, 4]`` (the muons first, pT, eta, phi): (its four-vector ``[N, 4]``,
    mass, pT, rapidity, and the leading muon's decay angles atanh cos theta, phi about the helicity
    axes, :func:`hepgen.fourvectors.rest_frame_angles`)."""
    mu = fourvector(p[:, :2, 0], p[:, :2, 1], p[:, :2, 2], torch.full_like(p[:, :2, 3], MUON_MASS))
    z = mu[:, 0] + mu[:, 1]
    mz = mass(z)
    ptz = torch.sqrt(z[:, 1] ** 2 + z[:, 2] ** 2)
    rap = rapidity(torch.sqrt(mz * mz + ptz * ptz), z[:, 3])
    acos, phistar = rest_frame_angles(mu[:, 0], torch.full_like(mz, MUON_MASS), z, mz)
    return z, mz, ptz, rap, acos, phistar


def decay_muons(z: torch.Tensor, mz: torch.Tensor, acos: torch.Tensor, phi: torch.Tensor):
    """The inverse of :func:`dimuon_system`'s angles: the two muons ``[N, 4]`` (pT, eta, phi, m) of
    the dimuon ``z`` (lab, mass ``mz``), pT-ordered (a Where), so a point whose first decay muon is
    the softer one gives the same event as its mirror."""
    mm = torch.full_like(mz, MUON_MASS)
    a, b = decay_to_lab(z, mz, mm, mm, acos, phi)
    muons = [torch.stack([*ptetaphi(v), mm], -1) for v in (a, b)]
    swap = (muons[1][:, 0] > muons[0][:, 0]).unsqueeze(-1)
    return torch.where(swap, muons[1], muons[0]), torch.where(swap, muons[0], muons[1])


class DimuonFrame(nn.Module):
    """p ``[N, 3, 4]`` (mu1, mu2 pT-ordered, the parton; pT, eta, phi, m) <-> raw columns ``[N, 9]``
    and the global azimuth (the dimuon's, drawn from uniform noise on output); the frame of
    leading-order mu mu + parton events, which balance in pT.

        0 pT of the dimuon      1 its rapidity     2 its mass
        3 atanh cos theta, 4 phi: the leading muon in the dimuon rest frame, about the dimuon's
          direction and the beam (:func:`hepgen.fourvectors.helicity_axes`)
        5 the parton's pT       6 its eta          7 its azimuth from the dimuon's + pi
        8 its mass

    Columns 5 and 7 are not learned: the inverse writes the parton as the recoil (the dimuon's
    pT, its azimuth + pi), so the events balance exactly and the parton's pT cut is the cut on
    column 0 (a log shift by pT_min in the Z+jets chain: no event below it). The decay returns
    both muons; the inverse orders them by pT (a Where), so a generated point that puts the
    trailing muon first gives the same event. Not volume-preserving: the log-det of
    :meth:`ZJetsCoords.forward <hepgen.coords.zjets.ZJetsCoords.forward>` then counts only the
    chain's steps (nothing in hepgen uses it for densities of physics events).
    """

    dim = 9

    def forward(self, p: torch.Tensor, wrap=wrap_phi, relative: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``wrap`` and ``relative`` as :meth:`RelativeAzimuth.forward` (``relative`` is unused)."""
        z, mz, ptz, rap, acos, phistar = dimuon_system(p)
        phiz = atan2_exportable(z[:, 2], z[:, 1])
        jet = p[:, 2]
        cols = [ptz, rap, mz, acos, phistar, jet[:, 0], jet[:, 1], wrap(jet[:, 2] - phiz - math.pi), jet[:, 3]]
        return torch.stack(cols, dim=-1), phiz

    def inverse(self, raw: torch.Tensor, phiz: torch.Tensor, n_jets: torch.Tensor | None = None) -> torch.Tensor:
        """``n_jets`` is not needed (one jet, the recoil; every frame's inverse takes it)."""
        ptz, rap, mz = raw[:, 0], raw[:, 1], raw[:, 2]
        mt = torch.sqrt(mz * mz + ptz * ptz)
        z = torch.stack([mt * cosh_exportable(rap), ptz * torch.cos(phiz), ptz * torch.sin(phiz), mt * sinh_exportable(rap)], -1)
        lead, trail = decay_muons(z, mz, raw[:, 3], raw[:, 4])
        parton = torch.stack([ptz, raw[:, 6], wrap_angle(phiz + math.pi), raw[:, 8]], -1)
        return torch.stack([lead, trail, parton], dim=1)
