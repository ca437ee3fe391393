"""Coordinates of dileptonic tt̄: the six decay products <-> 17 network coordinates.

The six particles come in the fixed order of :mod:`hepgen.dilepton` (b, l+, nu, bbar, l-,
nubar). Their masses are not learned: each is a constant of its species (fitted per role and
lepton flavour as the training sample's median: 4.8 GeV for Pythia's b, the lepton masses, 0
for neutrinos). One global azimuth is not learned either (the physics is symmetric under
rotations about the beam): it is drawn uniformly at generation (or, for a map of a source event,
kept from the source). That leaves 6 x 3 - 1 = 17 columns, in one of two schemes
(``process.settings.coordinates``):

``particles`` — each particle's own kinematics, azimuths relative to the b's::

    b: log pT, eta;   l+, nu, bbar, l-, nubar: log pT, eta, phi - phi_b (wrapped to [-pi, pi])

``decay`` (default) — resonance-aware: per top (t = b l+ nu, then tbar = bbar l- nubar), nine columns::

    log pT_t, eta_t, [phi_tbar - phi_t - pi], BW(m_t), BW(m_W),
    the W direction in the top rest frame (atanh cos theta, phi) and the lepton direction in the
    W rest frame (atanh cos theta, phi)

  where the rest-frame angles are measured about axes built from the parent's lab direction
  and the beam (:func:`hepgen.fourvectors.helicity_axes`), and the top's azimuth is the
  global one (so the antitop's is relative to it, less pi: tops are back to back in the
  transverse plane, exactly so without initial-state radiation, which would put this column on
  the branch cut at +-pi). m_t and m_W are columns of their own here,
  which is what the line shapes need; the particles scheme learns them only through the
  correlations of nine columns. BW(m) = Phi^-1(1/2 + atan((m - M) / g) / pi), the normal
  quantile (probit) of a Breit-Wigner's CDF, with M the training sample's median mass and g half
  its interquartile range (Gamma / 2 for a Breit-Wigner; floored at 1e-6 M for a narrow one): a
  Breit-Wigner becomes a standard normal column instead of a Cauchy tail 40 standard deviations
  long, the very distribution of the noise a CFM starts from (and of DiDi's fill noise), so the
  flow has next to nothing to move in these columns. (A logit in its place gives a logistic
  column; measured with the same short training, the probit columns have 4-5 times smaller
  chi2/ndf of the top line shapes: docs/ttbar.md.) The inverse keeps every mass inside its
  kinematic range (m_t > m_b + m_l + m_nu, m_l + m_nu < m_W < m_t - m_b).

Both schemes are exportable torch modules (float32 buffers, elementary ops): an encoder
p ``[N, 6, 4]`` (pt, eta, phi, m) -> (x ``[N, 17]``, global azimuth ``[N]``) and an inverse
(x, azimuth, masses ``[N, 6]``) -> (pt, eta, phi) ``[N, 6, 3]``. :class:`TTbarCoords` holds the
fitted numbers (float64 buffers) and the training sample's lepton-flavour fractions, which the
generator draws from uniform noise.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .. import dilepton
from ..fourvectors import decay_to_lab, fourvector, invariant_mass, mass, ptetaphi, rest_frame_angles
from ..kinematics import wrap_angle
from ..errors import HepgenError
from .chain import Standardize
from .lineshape import TailMap, fit_slopes, identity_slopes

N = dilepton.N_PARTICLES
DIM = 3 * N - 1
LEPTON_ROLES = (1, 2, 4, 5)  # l+, nu, l-, nubar: their flavour follows their W's lepton
SIDES = (dilepton.TOP, dilepton.ANTITOP)
COS_LIMIT = 1.0 - 1e-6  # |cos theta| is clipped here: the angle columns atanh cos theta stay within ATANH_LIMIT
ATANH_LIMIT = math.atanh(COS_LIMIT)
SQRT2 = math.sqrt(2.0)
SQRT2PI = math.sqrt(2.0 * math.pi)
NEWTON_STEPS = 3  # from the Abramowitz-Stegun start (error < 4.5e-4): float64 round off after 3
TAIL_FLOOR = 1e-7  # the smallest Breit-Wigner tail probability the inverse takes (|m - M| < 3e6 g)
MASS_MARGIN = 1e-3  # the inverse keeps masses this fraction of their peak inside their kinematic limits
NARROW_FLOOR = 1e-6  # half widths below this fraction of the peak are raised to it
# columns that (nearly) do not vary keep this scale: float32 rounding in them (e.g. the tops'
# azimuth gap of samples without initial-state radiation, pi up to 1e-7) stays far below 1
STD_FLOOR = 1e-2


def lepton_flavours(pdg: np.ndarray) -> np.ndarray:
    """int ``[N, 2]``: per W (W+, W-) 1 for a muon decay, 0 for an electron."""
    return (np.abs(np.asarray(pdg)[:, [1, 4]]) == 13).astype(np.int64)


def pdg_ids(flavour: torch.Tensor) -> torch.Tensor:
    """PDG ids ``[N, 6]`` (float, exportable) from the W+/W- flavours ``[N, 2]`` (1 = muon)."""
    fp, fm = flavour[:, 0], flavour[:, 1]
    one = torch.ones_like(fp)
    ids = [5 * one, -(11 + 2 * fp), 12 + 2 * fp, -5 * one, 11 + 2 * fm, -(12 + 2 * fm)]
    return torch.stack(ids, dim=-1)


def uniform_azimuth(u: torch.Tensor) -> torch.Tensor:
    """A uniform [0, 1) column -> an azimuth in [-pi, pi)."""
    return u * (2 * math.pi) - math.pi


# erfc(x) = t exp(-x^2 + P(t)), t = 1 / (1 + x / 2), x >= 0: the Chebyshev fit of Numerical Recipes
# (Press et al., 2nd ed., section 6.2), relative error below 1.2e-7 for every x >= 0
ERFC_COEFFICIENTS = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398,
                     1.48851587, -0.82215223, 0.17087277)


def erfc_tail(x: torch.Tensor) -> torch.Tensor:
    """erfc(x) for x >= 0 to a relative 1.2e-7 (float64) or 1e-5 (float32, x < 4), from Exp and
    arithmetic only: 1 - erf(x) would cancel in float32 (a relative 1e-3 already at x = 2.7)."""
    t = 1 / (1 + 0.5 * x)
    poly = torch.zeros_like(x)
    for c in reversed(ERFC_COEFFICIENTS):
        poly = c + t * poly
    return t * torch.exp(poly - x * x)


def normal_tail(z: torch.Tensor) -> torch.Tensor:
    """P(Z > z) of a standard normal Z, for z >= 0, accurate far out in float32 (exportable)."""
    return 0.5 * erfc_tail(z / SQRT2)


def normal_tail_quantile(a: torch.Tensor) -> torch.Tensor:
    """The z >= 0 with P(Z > z) = a, for a in (0, 1/2]: the rational start of Abramowitz and
    Stegun 26.2.23 (|error| < 4.5e-4), then Newton steps on :func:`normal_tail` (Log, Sqrt,
    Exp, Erf: exportable, where torch.special.ndtri is not)."""
    t = torch.sqrt(-2 * torch.log(a))
    z = t - (2.515517 + 0.802853 * t + 0.010328 * t * t) / (1 + t * (1.432788 + t * (0.189269 + 0.001308 * t)))
    for _ in range(NEWTON_STEPS):
        z = z + (normal_tail(z) - a) * SQRT2PI * torch.exp(0.5 * z * z)
    return torch.relu(z)


class _Standardized(nn.Module):
    """Holds the fitted numbers (``mean``, ``std``, and for the decay scheme the resonances'
    ``peak`` and ``half_width`` ``[4]``: t, W+, tbar, W-) in ``dtype``."""

    def __init__(self, fitted: dict[str, torch.Tensor], dtype: torch.dtype):
        super().__init__()
        for name, value in fitted.items():
            self.register_buffer(name, value.to(dtype).clone())
        slopes = fitted.get("tail_slopes")
        # line_shape fitted (hepgen.coords.lineshape); a Breit-Wigner run has no map in its graph
        self.tails = None if slopes is None or bool((slopes == 1).all()) else TailMap(slopes, dtype)

    def _resonance(self, m, k: int):
        """Probit of the Breit-Wigner CDF of resonance ``k`` at mass ``m``, from the smaller tail
        probability a = atan(g / |m - M|) / pi (accurate far out in float32)."""
        d = (m - self.peak[k]) / self.half_width[k]
        down = d < 0  # (d = +-0 must give 1 / +0 = +inf: a = 1/2)
        a = torch.clamp(torch.atan(1 / torch.where(down, -d, d)) / math.pi, min=TAIL_FLOOR)
        if self.tails is not None:
            a = self.tails(a, k, down)
        z = normal_tail_quantile(a)
        return torch.where(down, -z, z)

    def _mass(self, y, k: int, lo, hi=None):
        """The mass of resonance ``k`` from its column (the inverse of :meth:`_resonance`:
        |m - M| = g cot(pi a) with a = P(Z > |y|)), kept inside (lo, hi)."""
        up = y > 0
        a = torch.clamp(normal_tail(torch.where(up, y, -y)), min=TAIL_FLOOR)
        if self.tails is not None:
            a = torch.clamp(self.tails(a, k, ~up, inverse=True), min=TAIL_FLOOR)
        offset = self.half_width[k] * torch.cos(math.pi * a) / torch.sin(math.pi * a)
        m = self.peak[k] + torch.where(up, offset, -offset)
        margin = MASS_MARGIN * self.peak[k]
        m = torch.where(m > lo + margin, m, lo + margin)
        return m if hi is None else torch.where(m < hi - margin, m, hi - margin)


class _Encoder(_Standardized):
    """p ``[N, 6, 4]`` -> (x ``[N, 17]`` standardised, global azimuth ``[N]``); a scheme gives :meth:`raw`."""

    def raw(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, p):
        raw, phi0 = self.raw(p)
        return (raw - self.mean) / self.std, phi0


class ParticleEncoder(_Encoder):
    """p ``[N, 6, 4]`` -> (x ``[N, 17]``, phi_b ``[N]``): the particles scheme."""

    def raw(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        phi0 = p[:, 0, 2]
        cols = [torch.log(p[:, 0, 0]), p[:, 0, 1]]
        for i in range(1, N):
            cols += [torch.log(p[:, i, 0]), p[:, i, 1], wrap_angle(p[:, i, 2] - phi0)]
        return torch.stack(cols, dim=-1), phi0


class ParticleInverse(_Standardized):
    """(x ``[N, 17]``, phi_b ``[N]``, masses ``[N, 6]``) -> (pt, eta, phi) ``[N, 6, 3]``."""

    def forward(self, x, phi0, masses):
        y = x * self.std + self.mean
        parts = [torch.stack([torch.exp(y[:, 0]), y[:, 1], phi0], dim=-1)]
        for i in range(1, N):
            o = 2 + 3 * (i - 1)
            parts.append(torch.stack([torch.exp(y[:, o]), y[:, o + 1], wrap_angle(y[:, o + 2] + phi0)], dim=-1))
        return torch.stack(parts, dim=1)


class DecayEncoder(_Encoder):
    """p ``[N, 6, 4]`` -> (x ``[N, 17]``, phi_top ``[N]``): the decay scheme."""

    def raw(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        four = fourvector(p[..., 0], p[..., 1], p[..., 2], p[..., 3])
        cols, phis = [], []
        for s, (b, l, n) in enumerate(SIDES):
            w = four[:, l] + four[:, n]
            t = four[:, b] + w
            mw, mt = invariant_mass(p[:, l], p[:, n]), invariant_mass(p[:, b], p[:, l], p[:, n])
            pt, eta, phi = ptetaphi(t)
            aw, phiw = rest_frame_angles(w, mw, t, mt)
            al, phil = rest_frame_angles(four[:, l], p[:, l, 3], w, mw)
            aw, al = (torch.clamp(v, -ATANH_LIMIT, ATANH_LIMIT) for v in (aw, al))
            cols.append([torch.log(pt), eta, self._resonance(mt, 2 * s), self._resonance(mw, 2 * s + 1),
                         aw, phiw, al, phil])
            phis.append(phi)
        side1 = cols[1][:2] + [wrap_angle(phis[1] - phis[0] - math.pi)] + cols[1][2:]
        return torch.stack(cols[0] + side1, dim=-1), phis[0]


class DecayInverse(_Standardized):
    """(x ``[N, 17]``, phi_top ``[N]``, masses ``[N, 6]``) -> (pt, eta, phi) ``[N, 6, 3]``."""

    def forward(self, x, phi0, masses):
        y = x * self.std + self.mean
        out = [None] * N
        for s, (b, l, n) in enumerate(SIDES):
            o = 8 * s  # side 0: 8 columns; side 1: 9 (its azimuth relative to the top's, column 10)
            phi = phi0 if s == 0 else wrap_angle(y[:, o + 2] + phi0 + math.pi)
            c = y[:, o:o + 2].unbind(-1) + y[:, o + 2 + s:o + 8 + s].unbind(-1)
            logpt, eta, yt, yw, aw, phiw, al, phil = c
            mb, ml, mn = masses[:, b], masses[:, l], masses[:, n]
            mt = self._mass(yt, 2 * s, mb + ml + mn)
            mw = self._mass(yw, 2 * s + 1, ml + mn, mt - mb)
            t = fourvector(torch.exp(logpt), eta, phi, mt)
            w, bq = decay_to_lab(t, mt, mw, mb, aw, phiw)
            lep, nu = decay_to_lab(w, mw, ml, mn, al, phil)
            out[b], out[l], out[n] = bq, lep, nu
        four = torch.stack(out, dim=1)
        pt, eta, phi = ptetaphi(four)
        return torch.stack([pt, eta, phi], dim=-1)


SCHEMES = {"particles": (ParticleEncoder, ParticleInverse), "decay": (DecayEncoder, DecayInverse)}
# the decay scheme's mass columns: observable -> (network column, resonance index of peak / half_width)
MASS_COLUMNS = {"m_t": (2, 0), "m_Wp": (3, 1), "m_tbar": (11, 2), "m_Wm": (12, 3)}


class TTbarCoords(nn.Module):
    """Fitted tt̄ coordinates (see the module docstring); fitted numbers are float64 buffers.

    ``masses`` ``[6, 2]``: the mass of each role for an electron (column 0) and a muon (column 1)
    W decay; ``muon_frac`` ``[2]``: the fraction of W+ and of W- decays to muons.
    """

    def __init__(self, scheme: str = "decay", line_shape: str = "breit_wigner"):
        super().__init__()
        self.scheme, self.line_shape = scheme, line_shape
        self._encoder_class, self._inverse_class = SCHEMES[scheme]
        self.standardize = Standardize(DIM)
        self.register_buffer("peak", torch.ones(4, dtype=torch.float64))
        self.register_buffer("half_width", torch.ones(4, dtype=torch.float64))
        self.register_buffer("masses", torch.zeros(N, 2, dtype=torch.float64))
        self.register_buffer("muon_frac", torch.full((2,), 0.5, dtype=torch.float64))
        self.register_buffer("probit_masses", torch.tensor(1.0, dtype=torch.float64))
        self.register_buffer("tail_slopes", identity_slopes())

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if prefix + "peak" in state_dict and prefix + "probit_masses" not in state_dict:
            raise HepgenError("this tt̄ run was trained with logit mass columns, which this hepgen version no longer "
                              "decodes (the mass columns are probits now, docs/ttbar.md): train it again")
        state_dict.setdefault(prefix + "tail_slopes", identity_slopes())  # runs from before line_shape: Breit-Wigner
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def dim(self) -> int:
        return DIM

    @property
    def cond_dim(self) -> int:
        return 0

    def active_columns(self) -> torch.Tensor:
        return torch.ones(0, DIM, dtype=torch.bool)

    @staticmethod
    def physics(sample) -> tuple[torch.Tensor, np.ndarray]:
        """EventSample -> (p ``[N, 6, 4]`` float64, pdg ``[N, 6]``) in the :mod:`hepgen.dilepton` order."""
        p, pdg = dilepton.assign(sample)
        return torch.from_numpy(p), pdg

    def _fitted(self) -> dict[str, torch.Tensor]:
        return {"mean": self.standardize.mean, "std": self.standardize.std, "peak": self.peak,
                "half_width": self.half_width, "tail_slopes": self.tail_slopes}

    def _raw(self, p: torch.Tensor) -> torch.Tensor:
        return self._encoder_class(self._fitted(), torch.float64).raw(p)[0]

    def _fit_resonances(self, p: torch.Tensor) -> None:
        """Median and half interquartile range of m_t, m_W+, m_tbar, m_W- (floored, NARROW_FLOOR);
        with ``line_shape: fitted`` also their tails (:func:`hepgen.coords.lineshape.fit_slopes`)."""
        four = fourvector(p[..., 0], p[..., 1], p[..., 2], p[..., 3])
        for s, (b, l, n) in enumerate(SIDES):
            w = four[:, l] + four[:, n]
            for k, m in ((2 * s, mass(four[:, b] + w)), (2 * s + 1, mass(w))):
                q1, med, q3 = np.quantile(m.numpy(), [0.25, 0.5, 0.75])
                self.peak[k] = float(med)
                self.half_width[k] = max(float(q3 - q1) / 2, NARROW_FLOOR * float(med))
                if self.line_shape == "fitted":
                    self.tail_slopes[k] = fit_slopes((m.numpy() - float(med)) / float(self.half_width[k]))

    @torch.no_grad()
    def fit(self, sample) -> "TTbarCoords":
        p, pdg = self.physics(sample)
        self._fit_resonances(p)
        self.standardize.fit(self._raw(p))
        self.standardize.std.clamp_(min=STD_FLOOR)
        flav = lepton_flavours(pdg)
        # weighted like the loss (Σw of muon decays over Σw; the plain fraction for unit weights)
        w = np.asarray(sample.weight, dtype=np.float64)
        self.muon_frac.copy_(torch.from_numpy(np.clip((flav * w[:, None]).sum(0) / w.sum(), 0.0, 1.0)))
        m = p[..., 3].numpy()
        for i in range(N):
            of = flav[:, 0 if i < 3 else 1] if i in LEPTON_ROLES else np.zeros(len(p), np.int64)
            med = [float(np.median(m[of == f, i])) if (of == f).any() else math.nan for f in (0, 1)]
            med = [v if not math.isnan(v) else next(u for u in med if not math.isnan(u)) for v in med]
            self.masses[i] = torch.tensor(med, dtype=torch.float64)
        return self

    @torch.no_grad()
    def encode(self, sample, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """EventSample -> (x ``[N, 17]`` float64, c ``[N, 0]``)."""
        p, _ = self.physics(sample)
        x, _ = self.standardize(self._raw(p))
        return x, x[:, :0]

    def encoder(self, dtype: torch.dtype = torch.float32) -> nn.Module:
        return self._encoder_class(self._fitted(), dtype)

    # -- physics inside a loss -----------------------------------------------------------------
    @property
    def differentiable_observables(self) -> tuple[str, ...]:
        """Observables a loss can ask for by name (:meth:`observable`, e.g. the GAN's MMD term):
        the resonance masses, which the decay scheme holds as columns of their own (none for
        the particles scheme)."""
        return tuple(MASS_COLUMNS) if self.scheme == "decay" else ()

    def observable(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """The resonance mass ``name`` (m_t, m_tbar, m_Wp, m_Wm; GeV) ``[N]`` of x ``[N, 17]`` in
        x's dtype, differentiable: the inverse of its probit column (above 0.1 % of the peak;
        the full inverse also caps it at the kinematic limits of the event's daughters)."""
        if name not in self.differentiable_observables:
            raise HepgenError(f"{name!r} is not a differentiable tt̄ observable of the {self.scheme} scheme; choose "
                              f"from {', '.join(self.differentiable_observables) or 'none'}")
        col, k = MASS_COLUMNS[name]
        fitted = _Standardized(self._fitted(), x.dtype).to(x.device)
        y = x[:, col] * fitted.std[col] + fitted.mean[col]
        return fitted._mass(y, k, torch.zeros_like(y))

    def inverse(self, dtype: torch.dtype = torch.float32) -> nn.Module:
        return self._inverse_class(self._fitted(), dtype)
