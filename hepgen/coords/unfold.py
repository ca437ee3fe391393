"""Unfolding coordinates: a paired (particle, reco) Z -> mu mu + jets event -> x (particle
level, learned) and c (reco level, the condition).

A paired sample (``hepgen simulate cards/zjets_detector.yaml``, docs/unfolding.md) holds each
event twice: particle level in ``GenMuon`` / ``GenJet``, reco level in ``Muon`` / ``Jet``
(NanoAOD names). :func:`level` views one level as an ordinary Z+jets sample (``Muon`` /
``Jet``), so both levels use :class:`~hepgen.coords.zjets.ZJetsCoords`, each fitted on its own
level:

    x [N, D]      the particle-level event in ZJetsCoords (D = 5 + 4 J; N(0, 1) in the columns
                  of absent jets, which the CFM keeps frozen), its five muon columns (log pT1, eta1,
                  log m0, eta2, Delta phi) as residuals from the reco muons in the same coordinates,
                  scaled by the residuals' standard deviations (the detector's resolution: a
                  posterior a few standard deviations wide instead of a peak 0.1 standard
                  deviations narrow at a place that moves with every event).
    c [N, C]      the reco event in its ZJetsCoords (0 in the columns of absent jets, which
                  carry no information), the one-hot reco jet multiplicity, with ``soft_jets`` the
                  soft reco jets' features, with ``reco_balance`` the reco pT imbalance
                  (:meth:`UnfoldCoords.balance`), then the one-hot PARTICLE-level multiplicity.

The particle-level multiplicity is a condition, not a learned column: p(particle | reco) =
p(n_gen | reco) p(x | n_gen, reco). The first factor is :class:`MultiplicityPosterior`, a small
classifier of the reco event fitted with the coordinates (:meth:`UnfoldCoords.fit`); the
pipeline draws n_gen from it with one uniform number per event, then the generator samples the
kinematics of that many jets, as the forward Z+jets generator does for a drawn multiplicity
(``active_columns``: the columns of absent particle-level jets are frozen). One dequantised
column learned jointly with the kinematics (the first version) moved 1-jet events into 2 and 3
jets and gave their jets the kinematics of neither (docs/unfolding.md).

Not learned: the particle-level azimuth of the leading muon is the reco one (muon azimuths
are measured to about 1 mrad; where the two levels order their muons differently, the event is
turned about the beam by about pi, which no rotation-invariant observable sees), and the charge
of the leading muon is the reco one.

``frame="imbalance"`` (``process.settings.frame``): the particle level in
:class:`~hepgen.coords.imbalance.ImbalanceFrame`'s columns instead, whose first five are the pT
imbalance along the leading jet, the dimuon's rapidity, log mass and decay angles: those are the
residual columns (from the reco event in the same frame), the imbalance across the leading jet is
learned like a jet column, the dimuon's pT is the imbalance minus the jets', and the global azimuth
is the reco leading jet's. The reco condition stays in the muon frame.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..events import EventSample
from ..errors import InputError
from ..fourvectors import asinh_exportable
from ..kinematics import wrap_angle
from .imbalance import IMBALANCE_SCALE, present_jet_pt, pt_imbalance
from .massposterior import MassPosterior
from .zjets import MASS_COLUMN, ZJetsCoords, categorical_onehot

GEN_NAMES = {"Muon": "GenMuon", "Jet": "GenJet"}  # particle level in a paired sample
SOFT_NAME = "SoftJet"  # reco jets below the threshold (simulate.soft_jet_pt_min)
# per soft jet in c: present, (pT - 15 GeV) / 5 GeV, eta / 2, wrapped (phi - phi_mu1) / pi, its sheared
# Delta eta and azimuth from the reco jet 1 in the particle level's standardised jet-2 columns (SOFT_ALIGNED),
# then |eta| in hat functions on knots 0, 0.5, ..., 5 (linear interpolation weights: a rate that changes
# with the detector's |eta| regions is linear in them; with |eta| alone the fit of p(n_gen | reco) left the
# lost-jet rate flat in |eta|, docs/unfolding.md)
SOFT_ETA_KNOTS, SOFT_ETA_SPACING = 11, 0.5
SOFT_ALIGNED = slice(4, 6)
SOFT_FEATURES = 6 + SOFT_ETA_KNOTS
JET2_ALIGNED = slice(10, 12)  # ZJetsCoords's jet-2 columns u (sheared Delta eta from jet 1) and Delta phi
RECO_NAMES = {"Muon": "Muon", "Jet": "Jet"}
# p(n_gen | reco): 2 x 32 tanh, 200 L-BFGS iterations, a light L2 on the weights
POSTERIOR_HIDDEN, POSTERIOR_ITERATIONS, POSTERIOR_L2 = 32, 200, 1e-5
MUON_COLUMNS = 5  # the dimuon columns: log pT1, eta1, log m0, eta2, Delta phi (imbalance: I_par, y, log m, angles)
RESIDUAL_FLOOR = 1e-6  # the smallest residual scale (a perfect detector has none)
MASS_POSTERIORS = ("residual", "analytic")  # process.settings.mass_posterior
BALANCE_FEATURES = 2  # process.settings.reco_balance: the reco pT imbalance along and across the reco jet 1


def level(sample: EventSample, names: dict[str, str], source: str = "sample") -> EventSample:
    """One level of a paired sample as a Z+jets sample (collections ``Muon``, ``Jet``), with the
    paired sample's weights, provenance and scalars; a one-line InputError naming what is missing."""
    missing = [v for v in names.values() if v not in sample.collections]
    if missing:
        raise InputError(f"{source}: no {', '.join(missing)} collection (the sample has "
                         f"{', '.join(sample.collections) or 'none'}): not a paired particle/reco sample")
    return EventSample(collections={k: sample[v] for k, v in names.items()}, weight=sample.weight,
                       info=sample.info, variations=sample.variations, scalars=sample.scalars)


def require_soft_jets(sample: EventSample, k: int, source: str = "sample") -> None:
    """A one-line InputError naming ``source`` when a run with ``k`` > 0 soft jets gets a sample without them."""
    if k and SOFT_NAME not in sample.collections:
        raise InputError(f"{source}: no {SOFT_NAME} collection, and the run conditions on {k} soft reco jets "
                         "(process.settings.soft_jets): make the reco sample with simulate.soft_jet_pt_min")


def soft_jets(sample: EventSample, k: int, source: str = "sample") -> torch.Tensor:
    """The ``k`` leading soft reco jets of a paired or reco sample ``[N, k, 4]`` float64 (absent ones 0);
    a one-line InputError for a sample without them."""
    require_soft_jets(sample, k, source)
    return torch.from_numpy(np.nan_to_num(sample.padded(SOFT_NAME, k), nan=0.0))


def eta_hats(eta: torch.Tensor) -> torch.Tensor:
    """``[..., SOFT_ETA_KNOTS]``: the hat functions of |eta| on knots k * SOFT_ETA_SPACING (1 at its knot,
    0 from the neighbouring ones on; they sum to 1 within the knots), in eta's dtype, from Abs and Relu
    (exportable, also to SOFIE)."""
    t = eta.abs() / SOFT_ETA_SPACING
    return torch.stack([torch.relu(1.0 - (t - k).abs()) for k in range(SOFT_ETA_KNOTS)], dim=-1)


def _with_mass(muons: torch.Tensor, column: torch.Tensor) -> torch.Tensor:
    """The muon columns ``[N, 5]`` with the mass column replaced by ``column`` ``[N]``."""
    return torch.cat([muons[:, :MASS_COLUMN], column.unsqueeze(-1), muons[:, MASS_COLUMN + 1:]], -1)


class MultiplicityPosterior(nn.Module):
    """p(n_gen | reco): a softmax over the K particle-level multiplicities from an MLP on the reco
    condition (:meth:`UnfoldCoords.condition`), fitted by :meth:`fit` (full-batch L-BFGS on the
    weighted cross-entropy: a deterministic fit of a convex-ish problem, no epochs), and
    :meth:`forward`, the exportable draw of a one-hot from it with one uniform number per event
    (compares and sums, no ArgMax / Multinomial)."""

    def __init__(self, cond_dim: int, k: int, hidden: int = POSTERIOR_HIDDEN):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(cond_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                 nn.Linear(hidden, k)).requires_grad_(False)  # fitted here, never by the generator's loop

    def fit(self, c: torch.Tensor, k: torch.Tensor, weight: torch.Tensor | None = None, seed: int = 0) -> float:
        """Fit to conditions ``c`` ``[N, C]`` and class indices ``k`` ``[N]`` (``weight`` ``[N]``: per-event
        weights); returns the final mean cross-entropy (nats)."""
        net = self.net.double().requires_grad_(True)
        g = torch.Generator().manual_seed(seed)
        for layer in net:
            if isinstance(layer, nn.Linear):
                bound = 1.0 / math.sqrt(layer.in_features)
                with torch.no_grad():
                    layer.weight.copy_((torch.rand(layer.weight.shape, generator=g, dtype=torch.float64) * 2 - 1) * bound)
                    layer.bias.zero_()
        c, k = c.double(), k.long()
        w = torch.ones(len(c), dtype=torch.float64) if weight is None else weight.double()
        w = w / w.sum()
        opt = torch.optim.LBFGS(net.parameters(), max_iter=POSTERIOR_ITERATIONS, history_size=20,
                                line_search_fn="strong_wolfe", tolerance_grad=1e-9, tolerance_change=1e-12)

        def closure():
            opt.zero_grad()
            ce = (nn.functional.cross_entropy(net(c), k, reduction="none") * w).sum()
            loss = ce + POSTERIOR_L2 * sum((p ** 2).sum() for n, p in net.named_parameters() if n.endswith("weight"))
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        with torch.no_grad():
            ce = float((nn.functional.cross_entropy(net(c), k, reduction="none") * w).sum())
        self.net.float().requires_grad_(False)
        return ce

    def probabilities(self, c: torch.Tensor) -> torch.Tensor:
        """``[N, K]`` p(n_gen = n_values[k] | reco), in c's dtype."""
        return torch.softmax(self.net(c.to(self.net[0].weight.dtype)), dim=-1).to(c.dtype)

    def forward(self, c: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Reco condition ``[N, C]`` and u ``[N]`` ~ U[0, 1) -> one-hot n_gen ``[N, K]`` in c's dtype:
        class k where u falls in [P_(k-1), P_k) of the cumulative probabilities (the last one open,
        so no event is lost to rounding)."""
        prob = self.probabilities(c)
        edges, cum = [torch.zeros_like(u)], torch.zeros_like(u)
        for j in range(prob.shape[-1] - 1):
            cum = cum + prob[:, j]
            edges.append(cum)
        edges.append(torch.full_like(u, 2.0))
        return categorical_onehot(u.to(c.dtype), torch.stack(edges, dim=-1))


class UnfoldCoords(nn.Module):
    """Fitted coordinates of paired Z+jets events (see the module docstring)."""

    def __init__(self, n_jets: tuple[int, ...] = (1, 2, 3), jet_pt_min: float = 20.0, jet_dr_min: float = 0.4,
                 mass_posterior: str = "residual", soft_jets: int = 0, frame: str = "muon", reco_balance: bool = False):
        super().__init__()
        self.soft_jets = int(soft_jets)  # leading soft reco jets in the condition (a Python attribute set from the card)
        self.reco_balance = bool(reco_balance)  # the reco pT imbalance in the condition (as soft_jets, from the card)
        if self.soft_jets and max(n_jets) < 2:
            raise InputError("process.settings.soft_jets: the soft jets are placed in the second jet's columns; "
                             f"process.n_jets {list(n_jets)} has none")
        if mass_posterior not in MASS_POSTERIORS:
            raise InputError(f"process.settings.mass_posterior: {mass_posterior!r} is not one of {', '.join(MASS_POSTERIORS)}")
        # analytic: the mass column is the quantile of an analytic posterior (hepgen.coords.massposterior)
        self.mass = MassPosterior() if mass_posterior == "analytic" else None
        self.gen = ZJetsCoords(n_jets, jet_pt_min, jet_dr_min=jet_dr_min, frame=frame)  # the reco one: muon
        self.reco = ZJetsCoords(n_jets, jet_pt_min, jet_dr_min=jet_dr_min)
        self.n_values = self.gen.n_values
        self.posterior = MultiplicityPosterior(self.cond_dim - len(self.n_values), len(self.n_values))
        self.max_jets = self.gen.max_jets
        self.register_buffer("residual_std", torch.ones(MUON_COLUMNS, dtype=torch.float64))

    @property
    def dim(self) -> int:
        return self.gen.dim

    @property
    def cond_dim(self) -> int:
        return (self.reco.dim + 2 * len(self.n_values) + SOFT_FEATURES * self.soft_jets
                + BALANCE_FEATURES * self.reco_balance)

    def active_columns(self) -> torch.Tensor:
        """``[C, D]``: ``c @ active`` is the particle-level multiplicity's present columns (the rows of
        the reco columns are 0, those of the particle-level one-hot ZJetsCoords's)."""
        reco = torch.zeros(self.cond_dim - len(self.n_values), self.dim, dtype=torch.bool)
        return torch.cat([reco, self.gen.active_columns()])

    @torch.no_grad()
    def fit(self, sample: EventSample) -> "UnfoldCoords":
        gen, reco = level(sample, GEN_NAMES), level(sample, RECO_NAMES)
        self.gen.fit(gen)
        self.reco.fit(reco)
        x, _ = self.gen(*self.gen.physics(gen))
        p, n = self.reco.physics(reco)
        reco_muons = self.reco_muons(p, n)
        residual = x[:, :MUON_COLUMNS] - reco_muons
        self.residual_std.copy_(residual.std(0).clamp_min(RESIDUAL_FLOOR))
        if self.mass is not None:
            self.mass.fit(self._log_mass(x), self._log_mass(reco_muons), p)
            self.residual_std[MASS_COLUMN] = 1.0  # the column is the posterior quantile, not a residual
        n_gen = torch.from_numpy(np.searchsorted(np.asarray(self.n_values), gen.n_jets))
        weight = None if sample.weight is None else torch.from_numpy(np.asarray(sample.weight, dtype=np.float64))
        self.posterior.fit(self.condition(p, n, soft=self.soft(sample)), n_gen, weight)
        return self

    def reco_muons(self, p: torch.Tensor, n: torch.Tensor, relative: bool | None = None) -> torch.Tensor:
        """The reco muons in the particle level's coordinates ``[N, 5]`` (in p's dtype, exportable):
        what the muon columns of x are residuals from."""
        raw, _ = self.gen._raw(p, n.to(p.dtype), self.relative() if relative is None else relative)
        x, _ = self.gen.chain(raw)
        return x[:, :MUON_COLUMNS]

    def absolute(self, x: torch.Tensor, p: torch.Tensor, n: torch.Tensor, relative: bool | None = None) -> torch.Tensor:
        """x ``[N, D]`` with its muon residuals turned back into the particle level's
        coordinates, given the reco event (p ``[N, 2 + J, 4]``, n ``[N]``)."""
        reco_muons = self.reco_muons(p, n, relative)
        muons = x[:, :MUON_COLUMNS] * self.residual_std.to(x.dtype) + reco_muons
        if self.mass is not None:
            y = self.mass.decode(x[:, MASS_COLUMN], self._log_mass(reco_muons), p)
            muons = _with_mass(muons, self._log_mass(y, inverse=True))
        return torch.cat([muons, x[:, MUON_COLUMNS:]], dim=-1)

    def _log_mass(self, x: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        """log m0 ``[N]`` of the particle level's standardised columns ``x`` (the mass column; its log
        step has no shift), or with ``inverse`` the standardised column of log m0 ``x`` ``[N]``."""
        step = self.gen.chain.step("standardize")
        mean, std = (v[MASS_COLUMN].to(x.dtype) for v in (step.mean, step.std))
        return (x - mean) / std if inverse else mean + std * x[:, MASS_COLUMN]

    def condition(self, p: torch.Tensor, n: torch.Tensor, relative: bool | None = None,
                  soft: torch.Tensor | None = None) -> torch.Tensor:
        """Reco momenta ``[N, 2 + J, 4]`` and multiplicity ``[N]`` (and with ``soft_jets`` S > 0 the
        soft reco jets ``[N, S, 4]``, absent ones 0) -> c ``[N, C]``, computed in p's dtype with
        exportable ops (it runs inside the exported graph, float32); ``relative``: the reco
        coordinates' jet convention as a bool (:meth:`relative`), read once outside a graph being
        exported."""
        n = n.to(p.dtype)
        raw, valid = self.reco._raw(p, n, self.relative() if relative is None else relative)
        x, _ = self.reco.chain(raw)
        x = torch.where(valid, x, torch.zeros_like(x))
        onehot = torch.stack([((n - v).abs() < 0.5).to(p.dtype) for v in self.n_values], dim=-1)
        balance = [self.balance(p, n)] if self.reco_balance else []
        if not self.soft_jets:
            return torch.cat([x, onehot] + balance, dim=-1)
        soft = soft.to(p.dtype)
        present = (soft[..., 0] > 0).to(p.dtype)
        dphi = wrap_angle(soft[..., 2] - p[:, :1, 2]) / math.pi
        features = torch.cat([torch.stack([present, (soft[..., 0] - 15.0) / 5.0, soft[..., 1] / 2.0, dphi,
                                           *self._aligned(p, soft, relative).unbind(-1)], dim=-1),
                              eta_hats(soft[..., 1])], dim=-1)
        features = features * present.unsqueeze(-1)
        return torch.cat([x, onehot, features.flatten(1)] + balance, dim=-1)

    def balance(self, p: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        """``[N, 2]``: the reco event's pT imbalance (the vector sum of the muons and the present jets)
        along the reco jet 1 and across it, each as asinh(I / IMBALANCE_SCALE), in p's dtype (exportable).
        Computed from the condition's columns only as a cancellation of a dozen GeV between objects of
        tens: given explicitly, the network can correct the jets by what the detector put out of balance."""
        i_par, i_perp = pt_imbalance(p, present_jet_pt(p, n), p[:, 2, 2])
        return asinh_exportable(torch.stack([i_par, i_perp], dim=-1) / IMBALANCE_SCALE)

    def _aligned(self, p: torch.Tensor, soft: torch.Tensor, relative: bool | None) -> torch.Tensor:
        """``[N, S, 2]``: each soft jet placed in the second jet's slot beside the reco jet 1, through the
        particle level's coordinates: the columns a lost particle-level jet is written in, so the network
        maps the condition onto its target near the identity."""
        rel = self.relative() if relative is None else relative
        two = torch.full_like(p[:, 0, 0], 2.0)  # not len(p): an int that fixes the exported batch size
        out = []
        for k in range(self.soft_jets):
            fake = torch.cat([p[:, :3], soft[:, k:k + 1], p[:, 4:]], dim=1)
            raw, _ = self.gen._raw(fake, two, rel)
            x, _ = self.gen.chain(raw)
            out.append(x[:, JET2_ALIGNED])
        return torch.stack(out, dim=1)

    def soft(self, sample: EventSample, source: str = "sample") -> torch.Tensor | None:
        """:func:`soft_jets` of the sample for this run's count; None without soft jets."""
        return soft_jets(sample, self.soft_jets, source) if self.soft_jets else None

    def relative(self) -> bool:
        """The reco coordinates' ``jets_relative`` convention (fitted runs: True)."""
        return bool(self.reco.azimuth.jets_relative)

    def encode(self, sample: EventSample, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Paired sample -> (x ``[N, D]``, c ``[N, C]``) float64; every event must have both
        levels' multiplicities in ``n_values`` (the events that pass both selections)."""
        xg, onehot = self.gen.encode(level(sample, GEN_NAMES), generator)
        reco = level(sample, RECO_NAMES)
        p, n = self.reco.physics(reco)
        if not torch.isin(n, torch.tensor(self.n_values)).all():
            raise InputError(f"reco events with a jet multiplicity outside process.n_jets {list(self.n_values)}")
        reco_muons = self.reco_muons(p, n)
        muons = (xg[:, :MUON_COLUMNS] - reco_muons) / self.residual_std
        if self.mass is not None:
            muons = _with_mass(muons, self.mass.encode(self._log_mass(xg), self._log_mass(reco_muons), p))
        c = self.condition(p, n, soft=self.soft(sample))
        return torch.cat([muons, xg[:, MUON_COLUMNS:]], dim=-1), torch.cat([c, onehot], dim=-1)
