"""The dimuon columns of the Z+jets coordinates (:mod:`hepgen.coords.zjets`): the pT of muon 2
as the dimuon mass (:class:`DimuonMass`), and that mass as the logit of a fitted Breit-Wigner CDF
(:class:`BreitWignerMass`, ``process.settings.mass_coordinate: breit_wigner``)."""

from __future__ import annotations

import math

import torch

from .chain import Transform


class DimuonMass(Transform):
    """Raw column 2 (pT of muon 2) <-> the massless dimuon mass m0 (GeV).

    m0^2 = 2 pT1 pT2 (cosh(eta1 - eta2) + cos(d)) with d = raw column 4 = phi2 - phi1 - pi, i.e.
    the Z mass up to m_mu^2 / m^2 ~ 1e-6: the narrow Z peak becomes one coordinate instead of a
    function of six. Exactly invertible for fixed (pT1, eta1, eta2, d); log|dm0/dpT2| = log(m0 / 2 pT2).
    """

    @staticmethod
    def _angular(y: torch.Tensor) -> torch.Tensor:
        cosh = 0.5 * (torch.exp(y[:, 1] - y[:, 3]) + torch.exp(y[:, 3] - y[:, 1]))  # cosh via Exp (exportable)
        return cosh + torch.cos(y[:, 4])

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
        self.mass.fill_(float(q50))
        self.width.fill_(float((q75 ** 2 - q25 ** 2) / (2 * q50)))
        self.span.fill_(math.pi / 2 + math.atan(float(self.mass / self.width)))

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
