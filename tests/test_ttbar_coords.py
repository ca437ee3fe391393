"""tt̄ network coordinates (hepgen.coords.ttbar): both schemes invert, the decay scheme's columns
are the resonance masses, and the exported float32 modules keep the line shapes.

Samples come from the numpy decay generator of tests/ttbar_decays.py, whose true top and W
masses are known per event.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

from hepgen import dilepton
from hepgen import kinematics as kin
from hepgen.cards import card_from_dict
from hepgen.coords.ttbar import DIM, TTbarCoords
from hepgen.errors import HepgenError
from hepgen.processes.ttbar import acceptance

from ttbar_decays import ttbar_events

SCHEMES = ("particles", "decay")


@pytest.fixture(scope="module")
def decays():
    return ttbar_events(4000, seed=3, breit_wigner=True)


def _masses(p: np.ndarray, idx) -> np.ndarray:
    return kin.invariant_mass(*(tuple(p[:, i, k] for k in range(4)) for i in idx))


def _fitted(scheme, decays):
    coords = TTbarCoords(scheme).fit(decays.sample)
    p, _ = coords.physics(decays.sample)
    return coords, p


@pytest.mark.parametrize("scheme", SCHEMES)
def test_coordinates_invert_in_float64(scheme, decays):
    coords, p = _fitted(scheme, decays)
    x, c = coords.encode(decays.sample)
    assert x.shape == (len(p), DIM) and c.shape == (len(p), 0)
    x2, phi0 = coords.encoder(torch.float64)(p)
    assert torch.equal(x, x2)  # the exportable encoder is the training encoding
    kin_back = coords.inverse(torch.float64)(x, phi0, p[..., 3]).numpy()
    q = p.numpy()
    assert np.max(np.abs(kin_back[..., 0] / q[..., 0] - 1)) < 1e-9
    assert np.max(np.abs(kin_back[..., 1] - q[..., 1])) < 1e-9
    assert np.max(np.abs(kin.wrap_phi(kin_back[..., 2] - q[..., 2]))) < 1e-9


def test_decay_columns_are_the_resonance_masses(decays):
    """Columns 2, 3 (top side) and 11, 12 (antitop side) are the normal quantiles (probits) of
    the Breit-Wigner CDFs of m_t, m_W+, m_tbar, m_W-: inverted here with scipy's normal CDF,
    they give the generator's true masses."""
    coords, p = _fitted("decay", decays)
    raw = coords._raw(p).numpy()
    peak, half = coords.peak.numpy(), coords.half_width.numpy()
    for col, k, key in ((2, 0, "t"), (3, 1, "Wp"), (11, 2, "tbar"), (12, 3, "Wm")):
        u = scipy.stats.norm.cdf(raw[:, col])
        mass = peak[k] + half[k] * np.tan(math.pi * (u - 0.5))
        assert np.max(np.abs(mass - decays.masses[key])) < 1e-6 * kin.TOP_MASS, key
    # a Breit-Wigner line shape becomes a standard normal column (the toy's top masses are
    # Breit-Wigner; mean and std of n events within 5 / sqrt(n) of 0 and 1)
    n = len(raw)
    for col in (2, 11):
        assert abs(raw[:, col].mean()) < 5 / math.sqrt(n) and abs(raw[:, col].std() - 1) < 5 / math.sqrt(n)
    # a Breit-Wigner line shape fits its own width: half the interquartile range ~ Gamma / 2
    assert abs(half[0] - kin.TOP_WIDTH / 2) < 0.1 * kin.TOP_WIDTH
    assert abs(half[1] - kin.W_WIDTH / 2) < 0.1 * kin.W_WIDTH


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_float32_inverse_keeps_the_line_shapes(scheme, decays):
    """The exported (float32) inverse rebuilds m_t and m_W to better than 1 % of their widths
    for 99.9 % of the events (the float32 rounding of the decay products' momenta)."""
    coords, p = _fitted(scheme, decays)
    x, _ = coords.encode(decays.sample)
    _, phi0 = coords.encoder(torch.float64)(p)
    out = coords.inverse(torch.float32)(x.float(), phi0.float(), p[..., 3].float()).double()
    q = torch.cat([out, p[..., 3:]], dim=-1).numpy()
    for idx, width in ((dilepton.TOP, kin.TOP_WIDTH), (dilepton.W_PLUS, kin.W_WIDTH)):
        err = np.abs(_masses(q, idx) - _masses(p.numpy(), idx))
        assert np.quantile(err, 0.999) < 0.01 * width


def test_wide_network_outputs_decode_into_physical_decay_chains(decays):
    """Network outputs wider than any training event (sd 1.5) decode, for every event hepgen keeps
    (finite, within the beams: hepgen.processes.ttbar.acceptance), into masses inside their
    kinematic limits: m_t > m_b + m_l + m_nu, m_l + m_nu < m_W < m_t - m_b."""
    coords, p = _fitted("decay", decays)
    n = 5000
    x = 1.5 * torch.randn(n, DIM, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    masses = p[:1, :, 3].expand(n, -1)
    out = coords.inverse(torch.float64)(x, torch.zeros(n, dtype=torch.float64), masses)
    q = torch.cat([out, masses.unsqueeze(-1)], dim=-1).numpy()
    keep = acceptance(q, card_from_dict({"process": {"name": "ttbar"}}))
    assert keep.mean() > 0.5
    q = q[keep]
    m = q[0, :, 3]
    mt, mw = _masses(q, dilepton.TOP), _masses(q, dilepton.W_PLUS)
    tol = 1e-6 * kin.TOP_MASS
    assert (mt > m[0] + m[1] + m[2] - tol).all() and (mw > m[1] + m[2] - tol).all() and (mw < mt - m[0] + tol).all()


def test_fitted_species_masses_and_flavour_fractions(decays):
    coords, p = _fitted("particles", decays)
    pdg = dilepton.assign(decays.sample)[1]
    assert coords.masses[0].tolist() == pytest.approx([4.8, 4.8])
    mu_plus = (pdg[:, 1] == -13).mean()
    assert coords.muon_frac[0].item() == pytest.approx(mu_plus, abs=1e-12)
    # electron / muon masses per W: the leptons' own, the neutrinos' zero
    assert coords.masses[1].tolist() == pytest.approx([float(p[pdg[:, 1] == -11][0, 1, 3]),
                                                       float(p[pdg[:, 1] == -13][0, 1, 3])])
    assert coords.masses[2].tolist() == [0.0, 0.0]


def test_weighted_events_give_weighted_flavour_fractions(decays):
    """The generator draws the W decay flavours from the fitted fractions: for weighted training
    events Σw of muon decays over Σw (the plain fraction would be wrong for a biased sample)."""
    from dataclasses import replace

    pdg = dilepton.assign(decays.sample)[1]
    w = np.where(pdg[:, 1] == -13, 3.0, 1.0)
    coords = TTbarCoords("particles").fit(replace(decays.sample, weight=w))
    want = w[pdg[:, 1] == -13].sum() / w.sum()
    assert coords.muon_frac[0].item() == pytest.approx(want, abs=1e-12)
    assert abs(want - (pdg[:, 1] == -13).mean()) > 0.1  # the premise: the weights move the fraction


def test_resonance_masses_are_differentiable_observables_of_the_decay_scheme(decays):
    """TTbarCoords.observable (the GAN's MMD term): m_t, m_tbar, m_W+ and m_W- of encoded events
    equal the invariant masses of their decay products (1e-6 relative in float64, 1e-4 in
    float32), gradients are finite; the particles scheme offers none."""
    coords, p = _fitted("decay", decays)
    x, _ = coords.encode(decays.sample)
    pn = p.numpy()
    truth = {"m_t": _masses(pn, (0, 1, 2)), "m_Wp": _masses(pn, (1, 2)),
             "m_tbar": _masses(pn, (3, 4, 5)), "m_Wm": _masses(pn, (4, 5))}
    assert set(coords.differentiable_observables) == set(truth)
    for name, want in truth.items():
        got = coords.observable(name, x).numpy()
        assert np.max(np.abs(got / want - 1)) < 1e-6, name
        x32 = x.float().requires_grad_(True)
        m32 = coords.observable(name, x32)
        assert np.max(np.abs(m32.detach().numpy() / want - 1)) < 1e-4, name
        m32.sum().backward()
        assert torch.isfinite(x32.grad).all() and x32.grad.abs().sum() > 0
    assert TTbarCoords("particles").differentiable_observables == ()
    with pytest.raises(HepgenError, match="choose from m_t"):
        coords.observable("m_bb", x)


def test_float32_decay_coordinates_do_not_amplify_rounding_in_boosted_tops(decays):
    """The float32 encoder and inverse (what ONNX Runtime and SOFIE run) follow the float64 ones
    to float32 precision even for boosted tops: masses from pairwise products (no E^2 - p^2),
    boosts as rapidity shifts (no cancellation for backward daughters), the Breit-Wigner tail
    from erfc (no 1 - erf). Mass columns within 1e-3 standard deviations in every event (E^2 - p^2
    in float32: 9e-2), the rebuilt momenta within 1.2e-5 relative (absolute below 1) in 99.9 % of
    the events (Lorentz-matrix boosts: 2.4e-5)."""
    coords, p = _fitted("decay", decays)
    x64, phi64 = coords.encoder(torch.float64)(p)
    x32, _ = coords.encoder(torch.float32)(p.float())
    assert (x32.double() - x64)[:, [2, 3, 11, 12]].abs().max() < 1e-3
    back64 = coords.inverse(torch.float64)(x64, phi64, p[..., 3])
    back32 = coords.inverse(torch.float32)(x64.float(), phi64.float(), p[..., 3].float()).double()
    back32[..., 2] = back64[..., 2] + torch.from_numpy(kin.wrap_phi((back32 - back64)[..., 2].numpy()))
    rel = ((back32 - back64).abs() / back64.abs().clamp(min=1)).flatten(1).max(1).values.numpy()
    assert np.quantile(rel, 0.999) < 1.2e-5


def _skewed(n: int, seed: int):
    """Toy decays whose W+ line shape is a Breit-Wigner times (m / M)^4: a thin lower and a thick
    upper tail, like Pythia's W (docs/ttbar.md)."""
    d = ttbar_events(n, seed=seed, breit_wigner=True)
    rng = np.random.default_rng(seed)
    w = (d.masses["Wp"] / kin.W_MASS) ** 4
    keep = np.flatnonzero(rng.random(n) < w / np.quantile(w, 0.99))
    return d.sample.select(keep)


def test_a_fitted_line_shape_makes_a_skewed_resonance_a_normal_column():
    """line_shape fitted bends the Breit-Wigner tails onto the sample's: the W+ column of a skewed
    toy has 5 % of its events beyond -1.645 and beyond +1.645 each (within 4 binomial standard
    errors), where the Breit-Wigner column misses both by far more; the coordinates still invert
    to 1e-9 in float64, the column is the sample's own quantile on a second toy of the same shape,
    and the Breit-Wigner setting keeps no map at all (the graph of such runs is unchanged; runs saved
    before the setting load as such)."""
    sample = _skewed(40000, 7)
    fractions = {}
    for shape in ("breit_wigner", "fitted"):
        coords = TTbarCoords("decay", shape).fit(sample)
        p, _ = coords.physics(sample)
        col = coords._raw(p)[:, 3].numpy()
        fractions[shape] = (np.mean(col < -1.645), np.mean(col > 1.645))
        if shape == "fitted":
            x, phi0 = coords.encoder(torch.float64)(p)
            back = coords.inverse(torch.float64)(x, phi0, p[..., 3]).numpy()
            assert np.max(np.abs(back[..., 0] / p.numpy()[..., 0] - 1)) < 1e-9
            other = TTbarCoords.physics(_skewed(40000, 8))[0]
            col2 = coords._raw(other)[:, 3].numpy()
            fractions["other"] = (np.mean(col2 < -1.645), np.mean(col2 > 1.645))
        else:
            assert coords.encoder(torch.float32).tails is None
            # a run saved before line_shape existed (no tail_slopes) loads as a Breit-Wigner run
            state = {k: v for k, v in coords.state_dict().items() if k != "tail_slopes"}
            old = TTbarCoords("decay")
            old.load_state_dict(state)
            assert torch.equal(old._raw(p), coords._raw(p))
    tol = 4 * math.sqrt(0.05 * 0.95 / (0.35 * 40000))  # about 0.0047 for the ~14 000 events kept
    for lo, hi in (fractions["fitted"], fractions["other"]):
        assert abs(lo - 0.05) < tol and abs(hi - 0.05) < tol
    lo, hi = fractions["breit_wigner"]
    assert lo < 0.05 - 2 * tol and hi > 0.05 + 2 * tol
