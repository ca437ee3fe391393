"""Four-vector formulas for exportable torch modules (the network coordinates of tt̄).

The torch-only companions of :mod:`hepgen.kinematics` (which serves numpy and torch but stays
free of torch at import): only Exp, Log, Sqrt, Atan, Sin, Cos, Where and arithmetic, so ONNX
graphs and SOFIE C++ carry them. Four-vectors are ``[..., 4]`` (E, px, py, pz) in GeV.
"""

from __future__ import annotations

import math

import torch

# keeps divisions by a transverse mass or momentum finite at 0 (an Add: SOFIE prints a Clip bound of 1e-30 as
# the C++ literal `1e-30.f`, which does not compile)
TINY = 1e-30


def atan2_exportable(y, x):
    """atan2(y, x) in (-pi, pi] from Atan and Where (x = 0: +-pi/2 from y / 0 = +-inf)."""
    base = torch.atan(y / x)
    return torch.where(x < 0, torch.where(y >= 0, base + math.pi, base - math.pi), base)


def asinh_exportable(z):
    """asinh(z), accurate for either sign: log(z + sqrt(z^2 + 1)), mirrored for z < 0."""
    s = torch.sqrt(z * z + 1)
    return torch.where(z < 0, -torch.log(s - z), torch.log(s + z))


def sinh_exportable(x):
    """sinh(x) from Exp (ONNX's Sinh is not in SOFIE's set)."""
    return 0.5 * (torch.exp(x) - torch.exp(-x))


def cosh_exportable(x):
    """cosh(x) from Exp (ONNX's Cosh is not in SOFIE's set)."""
    return 0.5 * (torch.exp(x) + torch.exp(-x))


def fourvector(pt, eta, phi, m):
    """(pt, eta, phi, m) tensors -> ``[..., 4]`` (E, px, py, pz) with Exp instead of Sinh/Cosh."""
    pz = pt * sinh_exportable(eta)
    e = torch.sqrt(m * m + pt * pt + pz * pz)
    return torch.stack([e, pt * torch.cos(phi), pt * torch.sin(phi), pz], dim=-1)


def ptetaphi(p):
    """``[..., 4]`` (E, px, py, pz) -> (pt, eta, phi), exportable."""
    pt = torch.sqrt(p[..., 1] ** 2 + p[..., 2] ** 2)
    return pt, asinh_exportable(p[..., 3] / pt), atan2_exportable(p[..., 2], p[..., 1])


def mass(p):
    """Invariant mass of ``[..., 4]`` four-vectors (0 where m^2 < 0)."""
    m2 = p[..., 0] ** 2 - (p[..., 1:] ** 2).sum(-1)
    return torch.sqrt(torch.clamp(m2, min=0.0))


def minkowski_dot(a, b):
    """p_a . p_b of particles given as ``[..., 4]`` (pt, eta, phi, m), without cancellation:
    2 mT_a mT_b sinh^2(dy / 2) + (m_a^2 pt_b^2 + m_b^2 pt_a^2 + m_a^2 m_b^2) / (mT_a mT_b + pt_a pt_b)
    + 2 pt_a pt_b sin^2(dphi / 2), y the rapidity. E_a E_b - p_a.p_b in float32 loses the
    product of boosted nearly collinear particles (a relative 1e-3 of m_t^2 for a top of 1 TeV)."""
    (pa, ea, fa, ma), (pb, eb, fb, mb) = a.unbind(-1), b.unbind(-1)
    ta, tb = torch.sqrt(ma * ma + pa * pa), torch.sqrt(mb * mb + pb * pb)
    ya = asinh_exportable(pa * sinh_exportable(ea) / ta)
    yb = asinh_exportable(pb * sinh_exportable(eb) / tb)
    h = 0.5 * (ya - yb)
    sh = sinh_exportable(h)
    sf = torch.sin(0.5 * (fa - fb))
    masses = (ma * ma * pb * pb + mb * mb * pa * pa + ma * ma * mb * mb) / (ta * tb + pa * pb)
    return 2 * ta * tb * sh * sh + masses + 2 * pa * pb * sf * sf


def invariant_mass(*particles):
    """Invariant mass of ``particles`` (each ``[..., 4]`` (pt, eta, phi, m)) together, from the
    masses and the pairwise products (:func:`minkowski_dot`): a sum of non-negative terms."""
    m2 = sum(p[..., 3] ** 2 for p in particles)
    for i, a in enumerate(particles):
        for b in particles[i + 1:]:
            m2 = m2 + 2 * minkowski_dot(a, b)
    return torch.sqrt(m2)


def rapidity(mt, pl):
    """Rapidity along an axis of a particle with transverse mass ``mt`` and
    momentum ``pl`` along the axis (finite for a massless collinear particle)."""
    return asinh_exportable(pl / (mt + TINY))


def rest_frame_angles(d, md, parent, mparent):
    """(atanh cos theta, phi) of a daughter in its parent's rest frame, about the axes of the
    parent's direction (:func:`helicity_axes`); ``d``, ``parent`` lab ``[..., 4]`` (E, px, py, pz),
    ``md``, ``mparent`` their masses. The boost along the parent's direction is a shift of the
    daughter's rapidity by the parent's, so that nothing cancels for a boosted parent; atanh cos
    theta = asinh(p_par / p_perp) in the rest frame, with p_perp the same in both frames."""
    x, y, z = helicity_axes(parent[..., 1:])
    v = d[..., 1:]
    px, py, pl = (v * x).sum(-1), (v * y).sum(-1), (v * z).sum(-1)
    pperp = torch.sqrt(px * px + py * py)
    mt = torch.sqrt(md * md + pperp * pperp)
    zeta = asinh_exportable(torch.sqrt((parent[..., 1:] ** 2).sum(-1)) / mparent)
    rap = rapidity(mt, pl) - zeta
    pl_rest = mt * sinh_exportable(rap)
    return asinh_exportable(pl_rest / (pperp + TINY)), atan2_exportable(py, px)


def boost_from_rest(q, p, m):
    """``q`` ``[..., 4]`` given in the rest frame of ``p`` ``[..., 4]`` (mass ``m`` ``[...]``) ->
    ``q`` in the frame where ``p`` is given: E = (E_p E_q + p.q) / m, q + ((p.q) / (E_p + m) + E_q) / m p."""
    pq = (p[..., 1:] * q[..., 1:]).sum(dim=-1)
    e = (p[..., 0] * q[..., 0] + pq) / m
    scale = (pq / (p[..., 0] + m) + q[..., 0]) / m
    return torch.cat([e.unsqueeze(-1), q[..., 1:] + scale.unsqueeze(-1) * p[..., 1:]], dim=-1)


def decay_to_lab(parent, mparent, m1, m2, acos, phi):
    """The lab four-vectors ``[..., 4]`` of the two daughters (masses m1, m2) of ``parent`` (lab
    ``[..., 4]``, mass ``mparent``), the first flying along (theta, phi) about the parent's axes
    in its rest frame (``acos`` = atanh cos theta; the second opposite). Boosted as rapidity
    shifts along the parent's direction (no cancellation for backward daughters of a boosted
    parent); sin theta = 1 / cosh(acos) without 1 - cos^2."""
    x, y, z = helicity_axes(parent[..., 1:])
    q = two_body_momentum(mparent, m1, m2)
    a = torch.clamp(acos, -40.0, 40.0)
    ea, inv = torch.exp(a), torch.exp(-a)
    cos, sin = (ea - inv) / (ea + inv), 2 / (ea + inv)
    perp = q * sin
    u = torch.cos(phi).unsqueeze(-1) * x + torch.sin(phi).unsqueeze(-1) * y
    zeta = asinh_exportable(torch.sqrt((parent[..., 1:] ** 2).sum(-1)) / mparent)
    out = []
    for sign, m in ((1.0, m1), (-1.0, m2)):
        mt = torch.sqrt(m * m + perp * perp)
        rap = rapidity(mt, sign * q * cos) + zeta
        er, ir = torch.exp(rap), torch.exp(-rap)
        e, pl = 0.5 * mt * (er + ir), 0.5 * mt * (er - ir)
        vec = (sign * perp).unsqueeze(-1) * u + pl.unsqueeze(-1) * z
        out.append(torch.cat([e.unsqueeze(-1), vec], dim=-1))
    return out[0], out[1]


def helicity_axes(direction):
    """Right-handed unit axes (x', y', z') ``[..., 3]`` each: z' along ``direction`` ``[..., 3]``,
    x' in the plane of z' and the beam (+z), pointing towards the beam.

    Written with the direction's transverse length, never as ``beam - cos(theta) z'`` (whose z
    component ``1 - cos^2`` cancels in float32 for directions near the beam):
    x' = (-cos(theta) cos(phi), -cos(theta) sin(phi), sin(theta)), y' = (sin(phi), -cos(phi), 0)."""
    px, py, pz = direction.unbind(-1)
    pt = torch.sqrt(px * px + py * py)
    p = torch.sqrt(pt * pt + pz * pz)
    cphi, sphi = px / pt, py / pt
    cth, sth = pz / p, pt / p
    z = torch.stack([sth * cphi, sth * sphi, cth], dim=-1)
    x = torch.stack([-cth * cphi, -cth * sphi, sth], dim=-1)
    y = torch.stack([sphi, -cphi, torch.zeros_like(px)], dim=-1)
    return x, y, z


def two_body_momentum(m, m1, m2):
    """Momentum of either daughter in the rest frame of a parent of mass ``m`` decaying to masses
    ``m1``, ``m2`` (0 where the decay is closed)."""
    lam = (m * m - (m1 + m2) ** 2) * (m * m - (m1 - m2) ** 2)
    return torch.sqrt(torch.clamp(lam, min=0.0)) / (2 * m)
