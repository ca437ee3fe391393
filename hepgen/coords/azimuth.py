"""The relative-azimuth coordinates of Z+jets (:mod:`hepgen.coords.zjets`): physics objects
p ``[N, 2 + J, 4]`` <-> raw columns, the global azimuth dropped, jets after the leading one measured
from it with the Delta R hole closed by a shear (:class:`RelativeAzimuth`)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..kinematics import MUON_MASS, wrap_angle, wrap_phi


def pair_gap(dphi: torch.Tensor, r: torch.Tensor | float) -> torch.Tensor:
    """Half-width in Delta eta of the Delta R < r hole at azimuthal distance ``dphi``:
    sqrt(max(r^2 - dphi^2, 0)) (Sqrt, Relu: exportable)."""
    return torch.sqrt(torch.relu(r * r - dphi * dphi))


class RelativeAzimuth(nn.Module):
    """p ``[N, 2 + J, 4]`` <-> raw columns ``[N, 5 + 4 J]`` (see module docstring).

    ``forward(p) -> (raw, phi1)``; ``inverse(raw, phi1) -> p`` (muon masses fixed). Unit
    Jacobian in the kept coordinates.

    Jets after the leading one (``jets_relative`` = 1, the default) are measured
    from the leading jet: wrap(Delta phi - ``pair_phi_offset``) with Delta phi = phi_j - phi_j1
    (offset pi: back-to-back jets, the densest region, sit at 0 and the collinear edge at the wrap
    edge) and the *sheared* Delta eta
    u = sign(Delta eta) (|Delta eta| - g(Delta phi)) with g = :func:`pair_gap` at radius
    ``pair_r`` (the card's jet_dr_min). The shear slides the two halves of the plane together
    along eta and closes the Delta R < r hole around the leading jet: every (u, Delta phi)
    decodes to Delta R_1j >= r, and the collinear enhancement at the edge of the hole becomes
    a smooth ridge at u = 0 instead of a cliff the network has to learn. Its Jacobian is
    triangular with unit diagonal (log-det 0). Delta R between two non-leading jets is not
    protected (such events are dropped and counted at generation).

    The conventions are float64 buffers (``jet_phi_offset``, ``jets_relative``, ``pair_r``,
    ``pair_phi_offset``); a state dict without them loads as 0 each: every jet measured from
    phi1 without offset, no shear.
    """

    reference = 0  # the object [N, 2 + J, 4] slot whose azimuth is the global one (the leading muon)

    def __init__(self, max_jets: int, jets_relative: bool = True, pair_r: float = 0.0,
                 pair_phi_offset: float = math.pi):
        super().__init__()
        self.max_jets = max_jets
        self.dim = 5 + 4 * max_jets
        # jets recoil against the Z, so phi_j - phi1 peaks at +-pi (42 % of leading jets within 0.4
        # of the wrap edge): measured from phi1 + pi, the peak sits at 0 as for muon 2
        self.register_buffer("jet_phi_offset", torch.tensor(math.pi, dtype=torch.float64))
        self.register_buffer("jets_relative", torch.tensor(float(jets_relative), dtype=torch.float64))
        self.register_buffer("pair_r", torch.tensor(float(pair_r), dtype=torch.float64))
        self.register_buffer("pair_phi_offset", torch.tensor(pair_phi_offset, dtype=torch.float64))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a state without the convention buffers: every jet measured from phi1, no shear
        state_dict.setdefault(prefix + "jet_phi_offset", torch.tensor(0.0, dtype=torch.float64))
        state_dict.setdefault(prefix + "jets_relative", torch.tensor(0.0, dtype=torch.float64))
        state_dict.setdefault(prefix + "pair_r", torch.tensor(0.0, dtype=torch.float64))
        state_dict.setdefault(prefix + "pair_phi_offset", torch.tensor(0.0, dtype=torch.float64))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, p: torch.Tensor, wrap=wrap_phi, relative: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``wrap``: :func:`~hepgen.kinematics.wrap_phi` for data, the exportable
        :func:`~hepgen.kinematics.wrap_angle` inside a graph (they differ only at +pi);
        ``relative``: the ``jets_relative`` convention as a Python bool (None: read the buffer,
        which a graph being exported cannot)."""
        phi1 = p[:, 0, 2]
        cols = [p[:, 0, 0], p[:, 0, 1], p[:, 1, 0], p[:, 1, 1], wrap(p[:, 1, 2] - phi1 - math.pi)]
        relative = bool(self.jets_relative) if relative is None else relative
        return torch.stack(cols + self.jet_columns(p, phi1, wrap, relative), dim=-1), phi1

    def jet_columns(self, p: torch.Tensor, phi1: torch.Tensor, wrap, relative: bool) -> list[torch.Tensor]:
        """The 4 raw columns of each jet slot: the leading jet's azimuth measured from ``phi1`` +
        ``jet_phi_offset``, the others' from the leading jet's (``relative``, with the shear) or
        like the leading one's."""
        cols, lead = [], p[:, 2]
        for j in range(self.max_jets):
            q = p[:, 2 + j]
            if j == 0 or not relative:
                cols += [q[:, 0], q[:, 1], wrap(q[:, 2] - phi1 - self.jet_phi_offset.to(p.dtype)), q[:, 3]]
            else:
                dphi = wrap(q[:, 2] - lead[:, 2])
                deta = q[:, 1] - lead[:, 1]
                shifted = torch.relu(deta.abs() - pair_gap(dphi, self.pair_r.to(p.dtype)))
                u = torch.where(deta < 0, -shifted, shifted)  # sign(deta) * shifted (0 at deta = 0 either way)
                cols += [q[:, 0], u, wrap(dphi - self.pair_phi_offset.to(p.dtype)), q[:, 3]]
        return cols

    def inverse(self, raw: torch.Tensor, phi1: torch.Tensor, n_jets: torch.Tensor | None = None) -> torch.Tensor:
        """Branch-free (the flags are tensors), so one exported graph serves both conventions;
        ``n_jets`` is not needed (every frame's inverse takes it)."""
        dt = raw.dtype
        mm = torch.full_like(phi1, MUON_MASS)
        objs = [
            torch.stack([raw[:, 0], raw[:, 1], phi1, mm], dim=-1),
            torch.stack([raw[:, 2], raw[:, 3], wrap_angle(phi1 + raw[:, 4] + math.pi), mm], dim=-1),
        ]
        lead_phi = wrap_angle(phi1 + raw[:, 7] + self.jet_phi_offset.to(dt))
        return torch.stack(objs + self.jets_from(raw, lead_phi, phi1), dim=1)

    def jets_from(self, raw: torch.Tensor, lead_phi: torch.Tensor, phi1: torch.Tensor) -> list[torch.Tensor]:
        """The jet slots ``[N, 4]`` (pT, eta, phi, m) of raw columns, the leading jet at azimuth
        ``lead_phi``; the inverse of :meth:`jet_columns`. Branch-free in the conventions."""
        dt = raw.dtype
        rel, r, offset = self.jets_relative.to(dt), self.pair_r.to(dt), self.jet_phi_offset.to(dt)
        pair_offset = self.pair_phi_offset.to(dt) * rel
        lead_eta = raw[:, 6]
        jets = []
        for j in range(self.max_jets):
            o = 5 + 4 * j
            if j == 0:
                eta, phi = raw[:, o + 1], lead_phi
            else:
                u, dphi = raw[:, o + 1], raw[:, o + 2] + pair_offset
                gap = pair_gap(wrap_angle(dphi), r * rel)
                deta = u + torch.where(u < 0, -gap, gap)
                eta = deta + rel * lead_eta
                phi = wrap_angle(dphi + rel * lead_phi + (1 - rel) * (phi1 + offset))
            jets.append(torch.stack([raw[:, o], eta, phi, raw[:, o + 3]], -1))
        return jets
