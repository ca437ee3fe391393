"""The pT-imbalance frame of Z+jets (``process.settings.frame: imbalance``): the event's pT
imbalance is a learned coordinate, the dimuon system's transverse momentum follows from it.

In the default frame (:class:`~hepgen.coords.azimuth.RelativeAzimuth`) the muons and every jet
are learned one by one, so the vector sum of their pT, a dozen GeV where each object carries
tens, is a cancellation: errors per object add up in it, and the classifier's pT-balance
feature separates generated from simulated events most (docs/training.md). Here the imbalance
itself is learned; the dimuon's pT is the imbalance minus the jets' vector sum, a sum of large
terms where per-object errors stay relative. Raw columns ``[N, 5 + 4 J]`` (the layout of the
default frame where the meaning is shared, so the chain's column lists and the mass column stay):

    0 I_par: the imbalance (vector sum of muon and jet pT) along jet 1's azimuth, as s asinh(I / s)
    1 the dimuon's rapidity     2 its mass
    3 atanh cos theta, 4 phi: the leading muon in the dimuon rest frame (helicity axes,
      :func:`hepgen.fourvectors.rest_frame_angles`)
    5 jet 1's pT                6 its eta    7 I_perp: the imbalance across jet 1 (as I_par)
    8 its mass
    then jets 2..J as in the default frame: measured from jet 1, with the Delta R shear

The imbalance components are compressed, s asinh(I / s) with s = :data:`IMBALANCE_SCALE` (the
buffer ``imbalance_scale``): linear below s, logarithmic above. Without it their tails reach 24
standard deviations, and a flow-matching loss spends its weight on them. A state without the
buffer (runs of the frame's first version) loads with 0: the plain components.

The global azimuth is jet 1's (uniform noise on output). The inverse needs the jet multiplicity
(only present jets enter the sum); the dimuon and its decay are those of
:class:`~hepgen.coords.dimuon.DimuonFrame` (:func:`~hepgen.coords.dimuon.dimuon_system`,
:func:`~hepgen.coords.dimuon.decay_muons`). Exactly invertible; not volume-preserving (the
log-det of :meth:`ZJetsCoords.forward <hepgen.coords.zjets.ZJetsCoords.forward>` then counts
the chain's steps only). Exportable: Cos/Sin, Sqrt, Exp, Where, the helpers of
:mod:`hepgen.fourvectors`.
"""

from __future__ import annotations

import torch

from ..fourvectors import asinh_exportable, cosh_exportable, sinh_exportable
from ..kinematics import wrap_phi
from .azimuth import RelativeAzimuth
from .dimuon import decay_muons, dimuon_system

PERP_COLUMN = 7  # I_perp sits where the default frame keeps jet 1's azimuth
IMBALANCE_SCALE = 10.0  # GeV: s of the s asinh(I / s) columns (the median |I| is 13-17 GeV)


class ImbalanceFrame(RelativeAzimuth):
    """p ``[N, 2 + J, 4]`` (mu1, mu2 pT-ordered, jets pT-ordered, absent jets all zero) <-> raw
    columns (module docstring). The jet conventions (buffers, shear) are
    :class:`~hepgen.coords.azimuth.RelativeAzimuth`'s, with the jets after the first always relative."""

    reference = 2  # jet 1's azimuth is the global one

    def __init__(self, max_jets: int, pair_r: float = 0.0, scale: float = IMBALANCE_SCALE):
        super().__init__(max_jets, jets_relative=True, pair_r=pair_r)
        self.register_buffer("imbalance_scale", torch.tensor(float(scale), dtype=torch.float64))
        self.scale = float(scale)  # the buffer as a Python number: a branch fixed when a graph is traced

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.setdefault(prefix + "imbalance_scale", torch.tensor(0.0, dtype=torch.float64))  # plain components
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.scale = float(state_dict[prefix + "imbalance_scale"])

    def _compress(self, i: torch.Tensor) -> torch.Tensor:
        return self.scale * asinh_exportable(i / self.scale) if self.scale > 0 else i

    def _expand(self, y: torch.Tensor) -> torch.Tensor:
        return self.scale * sinh_exportable(y / self.scale) if self.scale > 0 else y

    def forward(self, p: torch.Tensor, wrap=wrap_phi, relative: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``wrap`` as :meth:`RelativeAzimuth.forward`; ``relative`` is unused (always relative)."""
        phi_ref = p[:, 2, 2]
        _, mz, _, rap, acos, phistar = dimuon_system(p)
        i_par, i_perp = pt_imbalance(p, p[:, 2:, 0], phi_ref)  # absent jets have pT 0
        cols = [self._compress(i_par), rap, mz, acos, phistar] + self.jet_columns(p, phi_ref, wrap, True)
        cols[PERP_COLUMN] = self._compress(i_perp)
        return torch.stack(cols, dim=-1), phi_ref

    def inverse(self, raw: torch.Tensor, phi_ref: torch.Tensor, n_jets: torch.Tensor | None = None) -> torch.Tensor:
        """``n_jets`` ``[N]`` (float or int): jet slots at index >= n_jets are left out of the
        dimuon's recoil (their decoded values are the fill columns'). Required."""
        if n_jets is None:
            raise ValueError("the imbalance frame decodes the dimuon from the present jets: give n_jets")
        jets = self.jets_from(raw, phi_ref, phi_ref)
        jx = torch.zeros_like(phi_ref)
        jy = torch.zeros_like(phi_ref)
        for j, q in enumerate(jets):
            pt = torch.where(n_jets > j + 0.5, q[:, 0], torch.zeros_like(q[:, 0]))
            jx = jx + pt * torch.cos(q[:, 2])
            jy = jy + pt * torch.sin(q[:, 2])
        c, s = torch.cos(phi_ref), torch.sin(phi_ref)
        i_par, i_perp = self._expand(raw[:, 0]), self._expand(raw[:, PERP_COLUMN])
        zx = i_par * c - i_perp * s - jx
        zy = i_par * s + i_perp * c - jy
        rap, mz = raw[:, 1], raw[:, 2]
        mt = torch.sqrt(mz * mz + zx * zx + zy * zy)
        z = torch.stack([mt * cosh_exportable(rap), zx, zy, mt * sinh_exportable(rap)], -1)
        lead, trail = decay_muons(z, mz, raw[:, 3], raw[:, 4])
        return torch.stack([lead, trail] + jets, dim=1)


class BalanceFrame(RelativeAzimuth):
    """``process.settings.frame: balance``: the default frame's columns
    (:class:`~hepgen.coords.azimuth.RelativeAzimuth`: muons, jet 1 from the leading muon's azimuth,
    jets 2..J from jet 1 with the shear) with one change: column 5, jet 1's pT there, is the event's
    pT imbalance along jet 1, I_par = (muons + present jets) . n_j1, compressed as in
    :class:`ImbalanceFrame`. Jet 1's pT is then I_par minus the other objects' pT along its
    direction, so the balance along the leading jet, where the jets' pT errors add up, is a learned
    number, while the muon columns stay those of the default frame (unfolding keeps them as
    residuals from the reco muons, measured to about a per cent; in :class:`ImbalanceFrame` the
    dimuon's pT is a difference of learned jets). The imbalance across jet 1 follows from the
    azimuths. A decoded jet 1 can fall below the jet cut (then the event fails the selection).
    The inverse needs the multiplicity; the buffers are :class:`ImbalanceFrame`'s scale and
    :class:`RelativeAzimuth`'s conventions."""

    def __init__(self, max_jets: int, jets_relative: bool = True, pair_r: float = 0.0, scale: float = IMBALANCE_SCALE):
        super().__init__(max_jets, jets_relative=jets_relative, pair_r=pair_r)
        self.register_buffer("imbalance_scale", torch.tensor(float(scale), dtype=torch.float64))
        self.scale = float(scale)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.scale = float(state_dict[prefix + "imbalance_scale"])

    def forward(self, p: torch.Tensor, wrap=wrap_phi, relative: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        raw, phi1 = super().forward(p, wrap, relative)
        i_par, _ = pt_imbalance(p, p[:, 2:, 0], p[:, 2, 2])  # absent jets have pT 0
        i_par = self.scale * asinh_exportable(i_par / self.scale)
        return torch.cat([raw[:, :BALANCE_COLUMN], i_par.unsqueeze(-1), raw[:, BALANCE_COLUMN + 1:]], -1), phi1

    def inverse(self, raw: torch.Tensor, phi1: torch.Tensor, n_jets: torch.Tensor | None = None) -> torch.Tensor:
        """``n_jets`` ``[N]`` (float or int): jets at index >= n_jets are left out of the balance. Required."""
        if n_jets is None:
            raise ValueError("the balance frame decodes jet 1's pT from the present objects: give n_jets")
        p = super().inverse(raw, phi1)
        others = present_jet_pt(p, n_jets)
        others = torch.cat([torch.zeros_like(others[:, :1]), others[:, 1:]], 1)  # all but jet 1
        i_par = self.scale * sinh_exportable(raw[:, BALANCE_COLUMN] / self.scale)
        pt1 = i_par - pt_imbalance(p, others, p[:, 2, 2])[0]
        jet1 = torch.cat([pt1.unsqueeze(-1), p[:, 2, 1:]], -1)
        return torch.cat([p[:, :2], jet1.unsqueeze(1), p[:, 3:]], 1)


BALANCE_COLUMN = 5  # the balance frame's I_par sits where the default frame keeps jet 1's pT


def pt_imbalance(p: torch.Tensor, jet_pt: torch.Tensor, phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The vector sum of the muons' pT and the jets' (p ``[N, 2 + J, 4]``; ``jet_pt`` ``[N, J]`` the
    jets' pT to sum, 0 for the ones left out; azimuths from p) along the azimuth ``phi`` ``[N]`` and
    across it (90 degrees on), each ``[N]``, in p's dtype (exportable: Cos, Sin, sums)."""
    dphi = p[:, :, 2] - phi.unsqueeze(-1)
    pt = torch.cat([p[:, :2, 0], jet_pt], 1)
    return (pt * torch.cos(dphi)).sum(-1), (pt * torch.sin(dphi)).sum(-1)


def present_jet_pt(p: torch.Tensor, n_jets: torch.Tensor) -> torch.Tensor:
    """``[N, J]``: the jets' pT of p ``[N, 2 + J, 4]``, 0 in the slots at index >= n_jets ``[N]`` (float
    or int; exportable: compares and Where), for :func:`pt_imbalance`."""
    jets = p[:, 2:, 0]
    slot = torch.arange(jets.shape[1], dtype=jets.dtype)
    return torch.where(n_jets.to(jets.dtype).unsqueeze(-1) > slot + 0.5, jets, torch.zeros_like(jets))
