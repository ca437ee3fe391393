"""validation/zjets.yaml covers what a physicist checks, and is loaded strictly (like a card)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hepgen.errors import CardError
from hepgen.validate.obsset import load_observable_set

ZJETS = Path(__file__).resolve().parents[1] / "validation" / "zjets.yaml"


def test_zjets_set_has_every_required_observable():
    obs = load_observable_set(ZJETS)
    names = {h.name for h in obs.hists}
    objects = ["mu1", "mu2", "j1", "j2", "j3"]
    required = {f"{v}_{o}" for v in ("pt", "eta", "phi") for o in objects}
    required |= {"m_j1", "m_j2", "m_j3", "m_mumu", "pt_mumu", "HT", "n_jets"}
    jets = ["j1", "j2", "j3"]
    required |= {f"{v}_{a}{b}" for v in ("dR", "deta", "dphi") for i, a in enumerate(jets) for b in jets[i + 1:]}
    required |= {f"dR_{m}{j}" for m in ("mu1", "mu2") for j in jets}
    assert required <= names, sorted(required - names)
    by_name = {h.name: h for h in obs.hists}
    assert by_name["m_mumu"].range == (70.0, 110.0)
    maps = {(m.x, m.y) for m in obs.maps}
    assert ("deta_j1j2", "dphi_j1j2") in maps
    assert all(h.edges.size == h.bins + 1 for h in obs.hists)


@pytest.mark.parametrize("text, match", [
    ("sets: {a: {pt_j1: {bins: 10, range: [0, 1], colour: red}}}", "unknown key 'sets.a.pt_j1.colour'"),
    ("sets: {a: {pt_j9x: {bins: 10, range: [0, 1]}}}", "unknown observable"),
    ("sets: {a: {pt_j1: {bins: 10, range: [5, 1]}}}", "is empty"),
    ("sets: {a: {pt_j1: {bins: 0, range: [0, 1]}}}", "positive integer"),
    ("sets: {a: {pt_j1: {range: [0, 1]}}}", "needs 'bins'"),
    ("histos: {}", "unknown key 'top level.histos'"),
    ("sets: {a: {pt_j1: {bins: 3, range: [0, 1]}}}\nmaps: {m: {x: deta_j1j2, y: dphi_j1j2, bins: [3, 3], xrange: [0, 1]}}",
     "needs yrange"),
    ("sets: {a: {pt_j1: {bins: 3, range: [0, 1], logy: yes please}}}", "true or false"),
])
def test_bad_observable_sets_are_one_line_errors(tmp_path, text, match):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(CardError, match=match) as err:
        load_observable_set(p)
    assert "\n" not in str(err.value) and str(p) in str(err.value)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(CardError, match="no such observable-set file"):
        load_observable_set(tmp_path / "nope.yaml")
