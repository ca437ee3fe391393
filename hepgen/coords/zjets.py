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
                                                  u the sheared Delta eta, see hepgen.coords.azimuth)

then standardised with the mean / std fitted on the training set (float64 buffers, saved with
the model). The condition ``c`` ``[N, K]`` is the one-hot jet multiplicity over ``n_values``.

:class:`~hepgen.coords.azimuth.RelativeAzimuth` maps p to raw columns (dropping the global azimuth phi1, which is
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

With ``process.settings.mass_sampling: marginal`` the mass column (:data:`MASS_COLUMN`) is a
condition, c = [one-hot n | mass], filled in x like a missing jet's; generation draws it from the
training line shape of the multiplicity (:mod:`hepgen.coords.marginal`), then the rest given it.

Periodic phi: the relative azimuths are learned plainly on (-pi, pi) and wrapped back onto the
circle on output (:func:`hepgen.kinematics.wrap_angle`). The network density on R, wrapped, is
a density on the circle, so mass a generator places beyond +-pi is not lost but lands on the
other side, where it belongs; a smooth bijection of (-pi, pi) onto R (e.g. atanh) would instead
push the back-to-back muon peak to infinity. The offset of pi puts the peaks in the middle.

The inverse used at generation (:class:`ZJetsInverse`) runs in the dtype of its input (float32
for export) with elementary ops only (Exp, Log, Add/Mul/Div, Slice, Concat, Where, compare):
it is exported inside the ONNX generator, so C++ gets physical four-momenta.

With ``process.settings.frame: imbalance`` the raw columns are those of
:class:`~hepgen.coords.imbalance.ImbalanceFrame`: the event's pT imbalance (along and across jet 1)
is learned in place of the leading muon's pT and jet 1's azimuth, the dimuon system (rapidity,
mass, decay angles) in place of the muons, and the dimuon's pT is the imbalance minus the present
jets' (so the inverse takes the multiplicity). The global azimuth is jet 1's; there is no
``"dimuon"`` step (the mass is a raw column, as with ``jet_recoil``).

Missing jets (events with fewer than max_jets jets) get independent N(0, 1) values in their
standardised columns at training time (:meth:`ZJetsCoords.encode`), so every family learns a
proper density in all D dimensions; the columns are ignored on output.

With ``process.settings.jet_recoil`` (leading-order mu mu + parton events, ``n_jets: [1]``) the
raw columns are those of :class:`~hepgen.coords.dimuon.DimuonFrame` instead: the dimuon system
(its pT log-shifted by pT_min like a jet's, its rapidity and mass) and the leading muon's decay
angles, the parton's eta and mass; the parton's pT and azimuth (raw columns 5 and 7,
:data:`RECOIL_COLUMNS`) are not learned but treated like the columns of a missing jet (N(0, 1)
fill, frozen in the CFM), and the inverse writes the parton as the dimuon's recoil: every
generated event balances in pT and passes the parton's pT cut by construction. There is no
``"dimuon"`` step (the mass is a raw column). :meth:`ZJetsCoords.fit` refuses training events
that do not balance (showered jets never do).
"""

from __future__ import annotations

import math

import awkward as ak
import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..fourvectors import fourvector, mass
from ..kinematics import system_pt, wrap_angle
from ..nuisance_mixture import CategoryMeans
from .azimuth import RelativeAzimuth
from .chain import Chain, LogShift, Standardize
from .dimuon import BreitWignerMass, DimuonFrame, DimuonMass
from .imbalance import BalanceFrame, ImbalanceFrame
from .marginal import MassMarginal

TWO_PI = 2 * math.pi
MASSLESS_MARGIN = 1e-3  # relative: a decoded jet mass below mass_floor * (1 + this) is written as 0
RECOIL_COLUMNS = (5, 7)  # jet 1's pT and azimuth: set by the dimuon's recoil with jet_recoil
MASS_COLUMN = 2  # the dimuon mass (log m0) in x: a condition with mass_sampling marginal
RECOIL_TOLERANCE = 1e-3  # relative: |pT(mu mu + jet)| above this times the jet's pT does not balance


def categorical_onehot(u: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """u ``[N]`` ~ U[0, 1) against ascending category edges, shared ``[K + 1]`` or per event ``[N, K + 1]``
    (first 0, last above 1) -> one-hot ``[N, K]`` in u's dtype: category k where edges[k] <= u <
    edges[k + 1]. Exportable (compares and subtractions, no ArgMax / Multinomial); the draw of a
    jet multiplicity from its fractions (Z+jets) or from per-event probabilities (unfolding)."""
    ge = [(u >= edges[..., k]).to(u.dtype) for k in range(edges.shape[-1])]
    return torch.stack([ge[k] - ge[k + 1] for k in range(len(ge) - 1)], dim=-1)


FRAMES = ("muon", "imbalance", "balance")  # process.settings.frame (jet_recoil sets its own, "recoil")


def make_frame(frame: str, max_jets: int, jets_relative: bool = True, pair_r: float = 0.0) -> nn.Module:
    """The physics <-> raw-column frame: ``muon`` (:class:`RelativeAzimuth`), ``imbalance``
    (:class:`~hepgen.coords.imbalance.ImbalanceFrame`), ``balance``
    (:class:`~hepgen.coords.imbalance.BalanceFrame`) or ``recoil`` (:class:`DimuonFrame`)."""
    if frame == "recoil":
        return DimuonFrame()
    if frame == "imbalance":
        return ImbalanceFrame(max_jets, pair_r)
    if frame == "balance":
        return BalanceFrame(max_jets, jets_relative, pair_r)
    if frame != "muon":
        raise InputError(f"process.settings.frame: {frame!r} is not one of {', '.join(FRAMES)}")
    return RelativeAzimuth(max_jets, jets_relative, pair_r)


class ZJetsCoords(nn.Module):
    """Fitted coordinates of Z -> mu mu + jets; all fitted numbers are (float64) buffers.

    Besides the transform chain, :meth:`fit` records the exclusive jet-multiplicity counts of
    the training set (``mult_counts`` ``[K]`` for ``n_values``; for weighted events Σw per
    multiplicity scaled to the effective sample size) and the (weighted) fraction of events whose
    leading muon is positive (``charge_frac``): the generator draws both from explicit uniform
    noise (:mod:`hepgen.generate`).

    ``jet_recoil``: the one jet is the dimuon's recoil (module docstring); a Python attribute set
    from the card, so a run's inverse (and its exported graph) has the recoil step or not.
    """

    def __init__(self, n_jets: tuple[int, ...] = (1, 2, 3), jet_pt_min: float = 20.0, mass_floor: float = 1e-2,
                 jet_dr_min: float = 0.4, jets_relative: bool = True, mass_coordinate: str = "log",
                 jet_recoil: bool = False, mass_sampling: str = "network", nuisances: int = 0, frame: str = "muon"):
        super().__init__()
        self.n_values = tuple(sorted(n_jets))
        if jet_recoil and frame != "muon":
            raise InputError("process.settings.jet_recoil sets the frame of leading-order events; leave "
                             "process.settings.frame: muon")
        if jet_recoil and mass_sampling != "network":
            raise InputError("process.settings.mass_sampling: marginal draws the dimuon mass of showered events; "
                             "with jet_recoil the network learns the dimuon system (leave mass_sampling: network)")
        if jet_recoil and self.n_values != (1,):
            raise InputError(f"process.settings.jet_recoil: the jet is the dimuon's recoil only in events with exactly "
                             f"one jet (process.n_jets: [1]); this card has n_jets {list(self.n_values)}")
        self.jet_recoil = bool(jet_recoil)
        self.frame = "recoil" if jet_recoil else frame  # a Python attribute set from the card, like jet_recoil
        self.max_jets = max(self.n_values)
        self.jet_pt_min, self.mass_floor = float(jet_pt_min), float(mass_floor)
        self.azimuth = make_frame(self.frame, self.max_jets, jets_relative, jet_dr_min)
        d = self.azimuth.dim
        if self.frame == "imbalance":  # column 0 is the signed imbalance: only the mass is logged
            cols, shifts = [2], [0.0]
        else:  # the muon's pT and the dimuon mass (m0 after the "dimuon" step); with jet_recoil the dimuon's
            cols, shifts = [0, 2], [self.jet_pt_min if jet_recoil else 0.0, 0.0]  # pT, the parton's
        for j in range(self.max_jets):
            if j or self.frame != "balance":  # balance: column 5 is the signed imbalance along jet 1
                cols.append(5 + 4 * j)
                shifts.append(self.jet_pt_min)
            cols.append(8 + 4 * j)
            shifts.append(0.0)
        lineshape = [("lineshape", BreitWignerMass(2))] if mass_coordinate == "breit_wigner" else []
        dimuon = [("dimuon", DimuonMass())] if self.frame in ("muon", "balance") else []  # the others learn the mass
        self.chain = Chain(*dimuon, ("log", LogShift(d, cols, shifts)), *lineshape, ("standardize", Standardize(d)))
        self.register_buffer("mult_counts", torch.zeros(len(self.n_values), dtype=torch.float64))
        self.register_buffer("charge_frac", torch.tensor(0.5, dtype=torch.float64))
        # mass_sampling marginal: the dimuon mass is drawn from the training line shape and conditions
        # the network (hepgen.coords.marginal); its x column is filled like a missing jet's
        self.marginal = MassMarginal(len(self.n_values)) if mass_sampling == "marginal" else None
        # model.nuisance (K of them): the mean of w(x; nu)'s expansion terms per multiplicity
        # (hepgen.nuisance_mixture.category_means, [3^K, C]), so the multiplicity fractions follow nu; a run
        # trained before it existed loads with the table of no nu-dependence (fixed fractions)
        self.mult_nuisance = CategoryMeans(nuisances, len(self.n_values)) if nuisances else None

    @property
    def dim(self) -> int:
        return self.azimuth.dim

    @property
    def cond_dim(self) -> int:
        """The one-hot multiplicity, then (mass_sampling marginal) the standardised dimuon mass."""
        return len(self.n_values) + (self.marginal is not None)

    @property
    def differentiable_observables(self) -> tuple[str, ...]:
        """Observables a loss can ask for by name (:meth:`observable`); none if x lacks the mass."""
        return () if self.marginal is not None else ("m_mumu",)

    def active_columns(self) -> torch.Tensor:
        """``[C, D]`` bool: the columns of present objects for each multiplicity in ``n_values``
        (then a row of False for the mass condition)."""
        active = torch.zeros(self.cond_dim, self.dim, dtype=torch.bool)
        for k, n in enumerate(self.n_values):
            active[k, :5 + 4 * n] = True
        return active & self._learned()

    def _learned(self) -> torch.Tensor:
        """``[D]`` bool: False where a column is set on output, never learned (the recoil columns
        with ``jet_recoil``, the mass column with mass_sampling marginal; filled like a missing
        jet's); one mask for ``active_columns`` and ``_raw``."""
        learned = torch.ones(self.dim, dtype=torch.bool)
        if self.jet_recoil:
            learned[list(RECOIL_COLUMNS)] = False
        if self.marginal is not None:
            learned[MASS_COLUMN] = False
        return learned

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
            pt = jet[:, :1] if j == 0 and self.frame == "balance" else jet[:, :1].clamp_min(self.jet_pt_min + 1e-6)
            jet = torch.cat([pt, jet[:, 1:3],
                             jet[:, 3:].clamp_min(self.mass_floor)], dim=-1)
            cols.append(jet)
            valid.append(has.expand(-1, 4))
        valid = torch.cat(valid, -1)
        if self.jet_recoil or self.marginal is not None:  # only then: an encoder inside an exported graph
            valid = valid & self._learned()  # (unfolding) must not carry an And
        return torch.cat(cols, -1), valid

    # -- fit / encode / decode --------------------------------------------------------------
    @torch.no_grad()
    def fit(self, sample) -> "ZJetsCoords":
        """Fit standardisation, multiplicity counts and charge fraction on a training sample."""
        p, n = self.physics(sample)
        if self.jet_recoil:
            self._check_balance(p)
        raw, valid = self._raw(p, n)
        y = self.chain.step("dimuon")(raw)[0] if "dimuon" in self.chain.names else raw
        logs, _ = self.chain.step("log")(y)
        if "lineshape" in self.chain.names:
            self.chain.step("lineshape").fit(y[:, 2])
            logs, _ = self.chain.step("lineshape")(logs)
        if self.marginal is not None:  # the mass column is standardised as usual: the condition's scale
            valid = valid.clone()
            valid[:, MASS_COLUMN] = True
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
        if self.marginal is not None:
            self.marginal.fit(self.chain.step("standardize")(logs)[0][:, MASS_COLUMN], n.numpy(), self.n_values, w, y[:, 2])
        if "charge" in sample["Muon"].fields:
            q1 = ak.to_numpy(ak.firsts(sample["Muon"].charge)).astype(np.float64)
            self.charge_frac.fill_(float(np.clip(w[q1 > 0].sum() / w.sum(), 0.0, 1.0)))
        return self

    @torch.no_grad()
    def fit_nuisance(self, sample, slopes: np.ndarray) -> None:
        """The multiplicities' mean nuisance weight terms (``mult_nuisance``) from the training events
        (their weights as in :meth:`fit`) and their nuisance slopes ``[N, K, 2]``."""
        n = np.asarray(sample.n_jets)
        category = np.searchsorted(np.asarray(self.n_values), n)
        self.mult_nuisance.fit(slopes, category, np.asarray(sample.weight, dtype=np.float64))

    def _check_balance(self, p: torch.Tensor) -> None:
        """InputError unless every event's muons and jet balance in pT (within RECOIL_TOLERANCE of the
        jet's pT) and the jet passes the pT cut."""
        p = p.numpy()
        imbalance = system_pt(*(p[:, k].T for k in range(3)))
        bad = imbalance > RECOIL_TOLERANCE * p[:, 2, 0]
        low = p[:, 2, 0] <= self.jet_pt_min
        if low.any():
            raise InputError(f"process.settings.jet_recoil: {int(low.sum())} training events have a parton with pT <= "
                             f"process.jet_pt_min {self.jet_pt_min:g} GeV")
        if bad.any():
            raise InputError(f"process.settings.jet_recoil: {int(bad.sum())} of {len(p)} training events do not balance "
                             f"in pT (|pT(mu mu + jet)| above {RECOIL_TOLERANCE:g} of the jet's pT; median "
                             f"{np.median(imbalance):.3g} GeV): the jet is the dimuon's recoil only in leading-order "
                             "mu mu + parton events; leave jet_recoil off for showered jets")

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
        """EventSample -> (x ``[N, D]`` float64 with N(0,1) in missing-jet columns, c ``[N, C]``: the
        one-hot multiplicity, then with mass_sampling marginal x's mass column (N(0, 1) in x)."""
        p, n = self.physics(sample)
        bad = ~np.isin(n.numpy(), self.n_values)
        if bad.any():
            raise InputError(f"{int(bad.sum())} events have a jet multiplicity outside process.n_jets {list(self.n_values)}")
        x, _ = self(p, n)
        _, valid = self._raw(p, n)
        c = torch.stack([(n == v).double() for v in self.n_values], dim=-1)
        if self.marginal is not None:
            c = torch.cat([c, x[:, MASS_COLUMN:MASS_COLUMN + 1]], dim=-1)
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        return torch.where(valid, x, noise), c

    def inverse(self, x: torch.Tensor, phi_noise: torch.Tensor, n_jets: torch.Tensor | None = None) -> torch.Tensor:
        """x ``[N, D]``, uniform ``phi_noise`` ``[N]`` in [0, 1) -> p ``[N, 2 + J, 4]`` (all jets);
        ``n_jets`` ``[N]``: needed by the imbalance frame only."""
        return ZJetsInverse(self, x.dtype)(x, phi_noise, n_jets)

    # -- physics inside a network or a loss ------------------------------------------------------
    def momenta(self, x: torch.Tensor) -> torch.Tensor:
        """x ``[N, D]`` -> four-momenta ``[N, 2 + J, 4]`` (E, px, py, pz; GeV) in x's dtype,
        differentiable and exportable, with the leading muon (with jet_recoil: the dimuon) at azimuth 0
        (the global azimuth is not learned). Absent jets decode from their fill columns: mask them
        with the condition."""
        if self.marginal is not None:
            raise InputError("process.settings.mass_sampling: marginal: the dimuon mass is a condition, not in x; "
                             "four-momenta from x alone (the lgatr backbone, an MMD on m_mumu) need mass_sampling: network")
        if self.frame in ("imbalance", "balance"):
            raise InputError(f"process.settings.frame: {self.frame} decodes from the present jets, which x alone "
                             "does not say; four-momenta from x (the lgatr backbone, an MMD on m_mumu) need frame: muon")
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
        self.dimuon_step = "dimuon" in coords.chain.names
        self.azimuth = make_frame(coords.frame, coords.max_jets)
        self.azimuth.load_state_dict(coords.azimuth.state_dict())  # the frame's conventions,
        self.azimuth.to(dtype)  # in the graph's dtype
        # jet masses at the floor stand for massless jets (the encoder lifted them there): a decoded
        # mass within MASSLESS_MARGIN of the floor or below it is written as 0
        # (one Greater against a per-column bound, -1e30 where the column is not a jet mass: no And)
        keep_above = torch.full((coords.dim,), -1e30, dtype=dtype)
        keep_above[8::4] = coords.mass_floor * (1.0 + MASSLESS_MARGIN)
        self.register_buffer("keep_above", keep_above)

    def forward(self, x: torch.Tensor, u: torch.Tensor, n_jets: torch.Tensor | None = None) -> torch.Tensor:
        """``n_jets`` ``[N]``: the multiplicity (the imbalance frame decodes the muons from the present jets)."""
        dt = x.dtype
        y = x * self.std.to(dt) + self.mean.to(dt)
        if self.lineshape is not None:
            y = self.lineshape.inverse(y)
        y = torch.where(self.mask, torch.exp(y) + self.shift.to(dt), y)
        y = torch.where(y > self.keep_above.to(dt), y, torch.zeros_like(y))
        if self.dimuon_step:
            y = DimuonMass().inverse(y)
        phi1 = u * TWO_PI - math.pi
        return self.azimuth.inverse(y, phi1, n_jets)
