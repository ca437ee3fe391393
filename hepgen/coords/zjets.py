"""Z -> mu mu + {1, 2, 3} jets: physics four-momenta <-> network coordinates.

Physics objects ``p`` ``[N, P, 4]`` are (pT [GeV], eta, phi [rad], m [GeV]) with P = 2 muons
then up to J = max_jets jets (pT-ordered, missing jets all zero). The learned coordinates ``x``
``[N, D]``, D = 5 + 4 J (17 for J = 3):

    muon 1 : log pT, eta                          (its phi is the reference azimuth)
    muon 2 : log m0, eta, wrap(phi2 - phi1 - pi)  (m0: massless dimuon mass, replaces pT2;
                                                  the angle peaks at 0: muons back to back)
    jet 1  : log(pT - pT_min), eta, wrap(phi_j1 - phi1 - pi), log m   (jets recoil against
                                                  the Z: the angle peaks at 0)
    jet j>1: log(pT - pT_min), u, wrap(phi_j - phi_j1 - pi), log m    (measured from jet 1,
                                                  u the sheared Delta eta, see RelativeAzimuth)

then standardised with the mean / std fitted on the training set (float64 buffers, saved with
the model). The condition ``c`` ``[N, K]`` is the one-hot jet multiplicity over ``n_values``.

:class:`RelativeAzimuth` maps p to raw columns (dropping the global azimuth phi1, which is
not learned: on output it is drawn from an explicit uniform noise column); the named steps of
``ZJetsCoords.chain`` then act on the raw columns:

1. ``"dimuon"`` :class:`DimuonMass`: pT of muon 2 -> the (massless) dimuon mass m0, so the
   narrow Z peak is one learned coordinate (without it a CFM smeared the peak 3x: IQR 10 GeV
   vs 3.5 GeV).
2. ``"log"`` :class:`~hepgen.coords.chain.LogShift`: log(y - shift) on the pT / m0 columns
   (shift = pT_min for jets, so the jet cut sits at -inf and generated jets have pT > pT_min by
   construction; 0 for muons) and on the jet masses (jets with m below ``mass_floor`` are
   lifted to it on input; the one non-invertible step, touching only single-particle jets and
   partons). On output a jet mass at the floor (within ``MASSLESS_MARGIN``) or below is written
   as 0: a massless parton stays massless through the round trip.
3. ``"lineshape"`` :class:`BreitWignerMass`, only with ``process.settings.mass_coordinate:
   breit_wigner``: log m0 -> logit F(m0), F the Breit-Wigner CDF in m0^2 with a mass and width
   fitted to the training sample, so the narrow Z peak is spread over a few units instead of a
   quarter of a standard deviation of log m0.
4. ``"standardize"`` :class:`~hepgen.coords.chain.Standardize`: (y - mean) / std.

Periodic phi: the relative azimuths are learned plainly on (-pi, pi) and wrapped back onto the
circle on output (:func:`hepgen.kinematics.wrap_angle`). The network density on R, wrapped, is
a density on the circle, so mass a generator places beyond +-pi is not lost but lands on the
other side, where it belongs; a smooth bijection of (-pi, pi) onto R (e.g. atanh) would instead
push the back-to-back muon peak to infinity. The offset of pi puts the peaks in the middle.

The inverse used at generation (:class:`ZJetsInverse`) runs in the dtype of its input (float32
for export) with elementary ops only (Exp, Log, Add/Mul/Div, Slice, Concat, Where, compare):
it is exported inside the ONNX generator, so C++ gets physical four-momenta.

Missing jets (events with fewer than max_jets jets) get independent N(0, 1) values in their
standardised columns at training time (:meth:`ZJetsCoords.encode`), so every family learns a
proper density in all D dimensions; the columns are ignored on output.
"""

from __future__ import annotations

import math

import awkward as ak
import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..fourvectors import fourvector, mass
from ..kinematics import MUON_MASS, wrap_angle, wrap_phi
from .chain import Chain, LogShift, Standardize, Transform

TWO_PI = 2 * math.pi
MASSLESS_MARGIN = 1e-3  # relative: a decoded jet mass below mass_floor * (1 + this) is written as 0


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
        lead = p[:, 2]
        relative = bool(self.jets_relative) if relative is None else relative
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
        return torch.stack(cols, dim=-1), phi1

    def inverse(self, raw: torch.Tensor, phi1: torch.Tensor) -> torch.Tensor:
        """Branch-free (the flags are tensors), so one exported graph serves both conventions."""
        dt = raw.dtype
        mm = torch.full_like(phi1, MUON_MASS)
        objs = [
            torch.stack([raw[:, 0], raw[:, 1], phi1, mm], dim=-1),
            torch.stack([raw[:, 2], raw[:, 3], wrap_angle(phi1 + raw[:, 4] + math.pi), mm], dim=-1),
        ]
        rel, r, offset = self.jets_relative.to(dt), self.pair_r.to(dt), self.jet_phi_offset.to(dt)
        pair_offset = self.pair_phi_offset.to(dt) * rel
        lead_eta = raw[:, 6]
        lead_phi = wrap_angle(phi1 + raw[:, 7] + offset)
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
            objs.append(torch.stack([raw[:, o], eta, phi, raw[:, o + 3]], -1))
        return torch.stack(objs, dim=1)


class ZJetsCoords(nn.Module):
    """Fitted coordinates of Z -> mu mu + jets; all fitted numbers are (float64) buffers.

    Besides the transform chain, :meth:`fit` records the exclusive jet-multiplicity counts of
    the training set (``mult_counts`` ``[K]`` for ``n_values``; for weighted events Σw per
    multiplicity scaled to the effective sample size) and the (weighted) fraction of events whose
    leading muon is positive (``charge_frac``): the generator draws both from explicit uniform
    noise (:mod:`hepgen.generate`).
    """

    def __init__(self, n_jets: tuple[int, ...] = (1, 2, 3), jet_pt_min: float = 20.0, mass_floor: float = 1e-2,
                 jet_dr_min: float = 0.4, jets_relative: bool = True, mass_coordinate: str = "log"):
        super().__init__()
        self.n_values = tuple(sorted(n_jets))
        self.max_jets = max(self.n_values)
        self.jet_pt_min, self.mass_floor = float(jet_pt_min), float(mass_floor)
        self.azimuth = RelativeAzimuth(self.max_jets, jets_relative, jet_dr_min)
        d = self.azimuth.dim
        cols, shifts = [0, 2], [0.0, 0.0]
        for j in range(self.max_jets):
            cols += [5 + 4 * j, 8 + 4 * j]
            shifts += [self.jet_pt_min, 0.0]
        lineshape = [("lineshape", BreitWignerMass(2))] if mass_coordinate == "breit_wigner" else []
        self.chain = Chain(("dimuon", DimuonMass()), ("log", LogShift(d, cols, shifts)), *lineshape,
                           ("standardize", Standardize(d)))
        self.register_buffer("mult_counts", torch.zeros(len(self.n_values), dtype=torch.float64))
        self.register_buffer("charge_frac", torch.tensor(0.5, dtype=torch.float64))

    @property
    def dim(self) -> int:
        return self.azimuth.dim

    @property
    def cond_dim(self) -> int:
        return len(self.n_values)

    def active_columns(self) -> torch.Tensor:
        """``[K, D]`` bool: the columns of present objects for each multiplicity in ``n_values``."""
        active = torch.zeros(len(self.n_values), self.dim, dtype=torch.bool)
        for k, n in enumerate(self.n_values):
            active[k, :5 + 4 * n] = True
        return active

    # -- physics arrays ------------------------------------------------------------------
    def physics(self, sample) -> tuple[torch.Tensor, torch.Tensor]:
        """EventSample -> (p ``[N, 2 + J, 4]`` float64 with missing jets 0, n_jets ``[N]``)."""
        mu = sample.padded("Muon", 2)
        jet = sample.padded("Jet", self.max_jets)
        p = torch.from_numpy(np.nan_to_num(np.concatenate([mu, jet], axis=1), nan=0.0))
        return p, torch.from_numpy(sample.n_jets)

    def _raw(self, p: torch.Tensor, n: torch.Tensor, relative: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw columns ``[N, D]`` (missing jets replaced by harmless placeholders) and the
        ``[N, D]`` mask of columns that belong to present objects; float64, or, given the
        ``relative`` convention as a bool (an encoder inside a graph), in p's dtype with the
        exportable angle wrap."""
        raw, _ = self.azimuth(p.double()) if relative is None else self.azimuth(p, wrap_angle, relative)
        cols, valid = [raw[:, :5]], [torch.ones_like(raw[:, :5], dtype=torch.bool)]
        fill = torch.tensor([self.jet_pt_min + 1.0, 0.0, 0.0, 1.0], dtype=raw.dtype)
        for j in range(self.max_jets):
            has = (n > j).unsqueeze(-1)
            jet = torch.where(has, raw[:, 5 + 4 * j:9 + 4 * j], fill)
            jet = torch.cat([jet[:, :1].clamp_min(self.jet_pt_min + 1e-6), jet[:, 1:3],
                             jet[:, 3:].clamp_min(self.mass_floor)], dim=-1)
            cols.append(jet)
            valid.append(has.expand(-1, 4))
        return torch.cat(cols, -1), torch.cat(valid, -1)

    # -- fit / encode / decode --------------------------------------------------------------
    @torch.no_grad()
    def fit(self, sample) -> "ZJetsCoords":
        """Fit standardisation, multiplicity counts and charge fraction on a training sample."""
        p, n = self.physics(sample)
        raw, valid = self._raw(p, n)
        y, _ = self.chain.step("dimuon")(raw)
        logs, _ = self.chain.step("log")(y)
        if "lineshape" in self.chain.names:
            self.chain.step("lineshape").fit(y[:, 2])
            logs, _ = self.chain.step("lineshape")(logs)
        self.chain.step("standardize").fit(logs, valid)
        # multiplicity counts and charge fraction of the weighted sample: Σw per multiplicity, scaled
        # to the effective sample size (Σw)²/Σw² (the counts themselves for unit weights), so the
        # fractions are Σw_k / Σw and a Bayesian draw's Dirichlet spread is that of the effective events
        w = np.asarray(sample.weight, dtype=np.float64)
        per = np.array([w[n.numpy() == v].sum() for v in self.n_values])
        if not np.all(per > 0):
            bad = [v for v, s in zip(self.n_values, per) if s <= 0]
            raise InputError(f"the training events with {bad} jet(s) have a total weight <= 0: their fraction "
                             "cannot be learned (negative weights dominate there)")
        self.mult_counts.copy_(torch.from_numpy(per * (w.sum() / np.sum(w**2))))
        if "charge" in sample["Muon"].fields:
            q1 = ak.to_numpy(ak.firsts(sample["Muon"].charge)).astype(np.float64)
            self.charge_frac.fill_(float(np.clip(w[q1 > 0].sum() / w.sum(), 0.0, 1.0)))
        return self

    def forward(self, p: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p ``[N, P, 4]``, n ``[N]`` -> (x ``[N, D]`` float64, log|det dx/dp| ``[N]``).

        Missing-jet columns of x are meaningless (placeholders); the log-det counts only the
        present objects.
        """
        raw, valid = self._raw(p, n)
        # the chain once, step by step: the log and standardize log-dets per column (missing columns
        # left out), those of dimuon and lineshape (muon columns, always present) per event
        y, ld_muons = raw, torch.zeros_like(raw[:, 0])
        for name, step in zip(self.chain.names, self.chain.steps):
            if name == "log":
                ld_cols = -torch.log(torch.where(step.mask, y - step.shift, torch.ones_like(y)))
            elif name == "standardize":
                ld_cols = ld_cols - torch.log(step.std)
            y, ld = step(y)
            if name in ("dimuon", "lineshape"):
                ld_muons = ld_muons + ld
        return y, (ld_cols * valid).sum(-1) + ld_muons

    def encode(self, sample, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """EventSample -> (x ``[N, D]`` float64 with N(0,1) in missing-jet columns, c one-hot ``[N, K]``)."""
        p, n = self.physics(sample)
        bad = ~np.isin(n.numpy(), self.n_values)
        if bad.any():
            raise InputError(f"{int(bad.sum())} events have a jet multiplicity outside process.n_jets {list(self.n_values)}")
        x, _ = self(p, n)
        _, valid = self._raw(p, n)
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        x = torch.where(valid, x, noise)
        c = torch.stack([(n == v).double() for v in self.n_values], dim=-1)
        return x, c

    def inverse(self, x: torch.Tensor, phi_noise: torch.Tensor) -> torch.Tensor:
        """x ``[N, D]``, uniform ``phi_noise`` ``[N]`` in [0, 1) -> p ``[N, 2 + J, 4]`` (all jets)."""
        return ZJetsInverse(self, x.dtype)(x, phi_noise)

    # -- physics inside a network or a loss ------------------------------------------------------
    # observables a loss can ask for by name (:meth:`observable`), e.g. the GAN's MMD term
    differentiable_observables = ("m_mumu",)

    def momenta(self, x: torch.Tensor) -> torch.Tensor:
        """x ``[N, D]`` -> four-momenta ``[N, 2 + J, 4]`` (E, px, py, pz; GeV) in x's dtype,
        differentiable and exportable, with the leading muon at azimuth 0 (the global azimuth is
        not learned). Absent jets decode from their fill columns: mask them with the condition."""
        p = self.inverse(x, torch.full_like(x[:, 0], 0.5))
        return fourvector(p[..., 0], p[..., 1], p[..., 2], p[..., 3])

    def observable(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """The observable ``name`` (one of :attr:`differentiable_observables`) of x ``[N, D]``,
        ``[N]``, differentiable; m_mumu in GeV (muon masses included)."""
        if name != "m_mumu":
            raise InputError(f"{name!r} is not a differentiable Z+jets observable; choose from "
                             f"{', '.join(self.differentiable_observables)}")
        p = self.momenta(x)
        return mass(p[:, 0] + p[:, 1])


class ZJetsInverse(nn.Module):
    """Exportable x ``[N, D]``, u ``[N]`` -> p ``[N, 2 + J, 4]``, in the dtype of x.

    Copies the fitted numbers of a :class:`ZJetsCoords`; no float64, no atan2/sinh/cosh.
    """

    def __init__(self, coords: ZJetsCoords, dtype: torch.dtype = torch.float32):
        super().__init__()
        log_step, std_step = coords.chain.step("log"), coords.chain.step("standardize")
        self.register_buffer("mean", std_step.mean.to(dtype).clone())
        self.register_buffer("std", std_step.std.to(dtype).clone())
        self.register_buffer("mask", log_step.mask.clone())
        self.register_buffer("shift", log_step.shift.to(dtype).clone())
        self.lineshape = None
        if "lineshape" in coords.chain.names:
            self.lineshape = BreitWignerMass(2)
            self.lineshape.load_state_dict(coords.chain.step("lineshape").state_dict())
            self.lineshape.to(dtype)
        self.azimuth = RelativeAzimuth(coords.max_jets)
        for name in ("jet_phi_offset", "jets_relative", "pair_r", "pair_phi_offset"):
            setattr(self.azimuth, name, getattr(coords.azimuth, name).to(dtype).clone())
        # jet masses at the floor stand for massless jets (the encoder lifted them there): a decoded
        # mass within MASSLESS_MARGIN of the floor or below it is written as 0
        # (one Greater against a per-column bound, -1e30 where the column is not a jet mass: no And)
        keep_above = torch.full((coords.dim,), -1e30, dtype=dtype)
        keep_above[8::4] = coords.mass_floor * (1.0 + MASSLESS_MARGIN)
        self.register_buffer("keep_above", keep_above)

    def forward(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        dt = x.dtype
        y = x * self.std.to(dt) + self.mean.to(dt)
        if self.lineshape is not None:
            y = self.lineshape.inverse(y)
        y = torch.where(self.mask, torch.exp(y) + self.shift.to(dt), y)
        y = torch.where(y > self.keep_above.to(dt), y, torch.zeros_like(y))
        y = DimuonMass().inverse(y)
        phi1 = u * TWO_PI - math.pi
        return self.azimuth.inverse(y, phi1)
