"""Issue 12, item 6: a particle with pT = 0 along the beam, or with a negative energy, keeps its
E and pz as given through LHE -> LHE and LHE -> ROOT -> LHE; ordinary samples are unchanged."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from hepgen.errors import OutputError
from hepgen.events import GIVEN_FIELDS
from hepgen.io import convert
from hepgen.io.lhe import load_lhe, read_lhe, write_lhe
from hepgen.io.root import read_events

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared/fixtures"
POWHEG = FIXTURES / "pylhe-testfile-powheg-box-v2-Zj.lhe"

# pT = 0 along +z (a photon), and a muon with a negative energy
ALONG_Z = "      22     1     1     2     0     0  0.000000000E+00  0.000000000E+00  2.512345678E+01  2.512345678E+01  0.000000000E+00  0.00000E+00  9.000E+00\n"
NEGATIVE = "      13     1     1     2     0     0  1.100000000E+00 -2.300000000E+00  4.700000000E+00 -5.300000000E+00  1.056583755E-01  0.00000E+00  9.000E+00\n"


def _edited(tmp_path: Path, photon_e: float = 25.12345678) -> Path:
    """The POWHEG fixture with two extra final-state lines in its first event."""
    if not POWHEG.exists():
        pytest.skip(f"fixture {POWHEG} absent (needs ../shared/fixtures beside the checkout)")
    text = POWHEG.read_text()
    start = text.index("<event>")
    head_end = text.index("\n", start + len("<event>\n")) + 1
    head = text[start + len("<event>\n"):head_end].split()
    head[0] = str(int(head[0]) + 2)
    rwgt = text.index("#", head_end)
    photon = ALONG_Z.replace("2.512345678E+01", f"{photon_e:.9E}")
    edited = (text[:start] + "<event>\n " + " ".join(head) + "\n" + text[head_end:rwgt]
              + photon + NEGATIVE + text[rwgt:])
    out = tmp_path / "edited.lhe"
    out.write_text(edited)
    return out


def _first_event(content, pdg: int):
    p = content.particles[0]
    return p[(p.pdgId == pdg) & (p.status == 1)][0]


def test_pt0_and_negative_energy_survive_lhe_to_lhe(tmp_path):
    src = _edited(tmp_path)
    out, n = convert(src, tmp_path / "out.lhe", progress=False)
    back = load_lhe(out)
    photon, muon = _first_event(back, 22), _first_event(back, 13)
    assert photon.e == pytest.approx(25.12345678, rel=1e-15) and photon.pz == pytest.approx(25.12345678, rel=1e-15)
    assert photon.px == 0 and photon.py == 0
    assert muon.e == pytest.approx(-5.3, rel=1e-15) and muon.pz == pytest.approx(4.7, rel=1e-15)


def test_pt0_and_negative_energy_survive_lhe_to_root_to_lhe(tmp_path):
    src = _edited(tmp_path)
    root, _ = convert(src, tmp_path / "out.root", progress=False)
    sample = read_events(root)
    ph, mu = sample["Photon"][0], sample["Muon"][0]
    assert np.float32(ph.given_E[0]) == np.float32(25.12345678) and np.float32(ph.given_pz[0]) == np.float32(25.12345678)
    assert np.float32(mu.given_E[0]) == np.float32(-5.3) and np.float32(mu.given_pz[0]) == np.float32(4.7)
    out, _ = convert(root, tmp_path / "back.lhe", progress=False)
    back = load_lhe(out)
    photon, muon = _first_event(back, 22), _first_event(back, 13)
    assert photon.e == float(np.float32(25.12345678)) and photon.pz == float(np.float32(25.12345678))
    assert muon.e == float(np.float32(-5.3)) and muon.pz == float(np.float32(4.7))


def test_only_the_particles_that_need_it_keep_e_and_pz(tmp_path):
    sample = read_lhe(_edited(tmp_path))
    assert set(GIVEN_FIELDS) <= set(sample["Photon"].fields) and set(GIVEN_FIELDS) <= set(sample["Muon"].fields)
    assert not set(GIVEN_FIELDS) & set(sample["Electron"].fields)  # ordinary particles: nothing extra
    assert int(ak.sum(~np.isnan(sample["Photon"].given_E))) == 1  # only the edited event's photon
    plain = read_lhe(POWHEG)
    assert all(not set(GIVEN_FIELDS) & set(c.fields) for c in plain.collections.values())


def test_ordinary_samples_write_no_extra_branches_and_same_lhe(tmp_path):
    if not POWHEG.exists():
        pytest.skip(f"fixture {POWHEG} absent (needs ../shared/fixtures beside the checkout)")
    import uproot

    root, _ = convert(POWHEG, tmp_path / "plain.root", progress=False)
    with uproot.open(root) as f:
        keys = f["Events"].keys()
    assert not [k for k in keys if k.endswith(("_E", "_pz"))]
    # the LHE record of an ordinary sample is the one made from (pt, eta, phi, m) alone
    sample = read_lhe(POWHEG)
    a = write_lhe(tmp_path / "a.lhe", sample)
    e = sample["Electron"][0]
    p = load_lhe(a).particles[0]
    written = np.sort(ak.to_numpy(p[abs(p.pdgId) == 11].e))
    rebuilt = np.sort(ak.to_numpy(np.sqrt(e.mass**2 + (e.pt * np.cosh(e.eta)) ** 2)))
    assert np.array_equal(written, rebuilt)


def test_beam_check_uses_the_given_energy(tmp_path):
    src = _edited(tmp_path, photon_e=7000.0)  # more than a 980 GeV beam along +z
    with pytest.raises(OutputError, match="more energy than the beams"):
        convert(src, tmp_path / "out.lhe", progress=False)
