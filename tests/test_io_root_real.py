"""Reading ROOT files other tools wrote: a CMS NanoAOD (only Muon, Jet and genWeight are read),
flat ntuples through a command-line branch mapping, an RNTuple, and every branch of the wrong
type or jaggedness as one line naming the file, the tree and the branch (exit 2 on the CLI)."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from hepgen.cli import main
from hepgen.errors import InputError
from hepgen.io.root import read_events, reader
from hepgen.io.root.branch_map import parse_mapping

from zjets_toy import toy_zjets

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared/fixtures"
NANO = FIXTURES / "nanoAOD_2015_CMS_Open_Data_ttbar.root"
HZZ = FIXTURES / "uproot-HZZ.root"
ZMUMU = FIXTURES / "uproot-Zmumu.root"
RNTUPLE = FIXTURES / "Run2012BC_DoubleMuParked_Muons_1000evts_rntuple_v1-0-0-0.root"
HZZ_INLINE = ("{nJet: NJet, Jet_px: Jet_Px, Jet_py: Jet_Py, Jet_pz: Jet_Pz, Jet_E: Jet_E, Muon_px: Muon_Px, "
              "Muon_py: Muon_Py, Muon_pz: Muon_Pz, Muon_E: Muon_E, Muon_charge: Muon_Charge, weight: EventWeight}")
ZMUMU_ARGS = ["--branch", "Muon_px=[px1, px2]", "--branch", "Muon_py=[py1, py2]", "--branch", "Muon_pz=[pz1, pz2]",
              "--branch", "Muon_E=[E1, E2]", "--branch", "Muon_charge=[Q1, Q2]"]
OBS = """
sets:
  muons:
    pt_mu1: {bins: 10, range: [0, 200]}
"""


def need(path: Path):
    if not path.exists():
        pytest.skip(f"fixture {path} absent")


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


def one_line_error(args, capsys) -> str:
    rc, out, err = run_cli(args, capsys)
    assert rc == 2, err
    assert err.startswith("hepgen: error: ") and err.count("\n") == 1, err
    return err


def raw(path, tree, names):
    with uproot.open(path) as f:
        return f[tree].arrays(names)


# ---------------------------------------------------------------------------- CMS NanoAOD


def test_nanoaod_reads_muons_jets_and_genweight_only():
    need(NANO)
    s = read_events(NANO)
    assert sorted(s.collections) == ["Jet", "Muon"]  # FsrPhoton (no mass), GenPart, Electron ... ignored
    a = raw(NANO, "Events", ["nMuon", "Muon_pt", "Muon_charge", "nJet", "Jet_pt", "Jet_eta", "genWeight"])
    np.testing.assert_array_equal(s.multiplicity("Muon"), ak.to_numpy(a.nMuon))
    np.testing.assert_array_equal(s.multiplicity("Jet"), ak.to_numpy(a.nJet))
    order = ak.argsort(a.Jet_pt, axis=1, ascending=False, stable=True)
    np.testing.assert_array_equal(ak.flatten(s["Jet"].eta), ak.flatten(a.Jet_eta[order]).to_numpy().astype(np.float64))
    np.testing.assert_array_equal(ak.sort(ak.flatten(s["Muon"].pt)), ak.sort(ak.flatten(a.Muon_pt)).to_numpy())
    assert set(ak.flatten(s["Muon"].charge).to_list()) <= {-1, 1}
    np.testing.assert_array_equal(s.weight, ak.to_numpy(a.genWeight).astype(np.float64))


def test_cli_convert_nanoaod_without_options(tmp_path, capsys):
    need(NANO)
    rc, out, err = run_cli(["convert", NANO, tmp_path / "nano.root"], capsys)
    assert rc == 0, err
    assert out.strip() == f"wrote {tmp_path / 'nano.root'} (200 events)"
    back, direct = read_events(tmp_path / "nano.root"), read_events(NANO)
    assert sorted(back.collections) == ["Jet", "Muon"]
    np.testing.assert_array_equal(ak.flatten(back["Jet"].pt), ak.flatten(direct["Jet"].pt))
    rc, out, err = run_cli(["convert", NANO, tmp_path / "nano.lhe"], capsys)
    assert rc == 0 and "(200 events)" in out, err


def test_cli_validate_against_nanoaod_reference(tmp_path, capsys):
    need(NANO)
    from hepgen.io.root import write_events

    write_events(tmp_path / "gen.root", toy_zjets(600, 3))
    (tmp_path / "obs.yaml").write_text(OBS)
    rc, out, err = run_cli(["validate", tmp_path / "gen.root", "-r", NANO, "-o", tmp_path / "v", "--no-classifier",
                            "--no-progress", "--observables", tmp_path / "obs.yaml"], capsys)
    assert rc == 0, err
    assert (tmp_path / "v" / "index.html").is_file()


# ---------------------------------------------------------------------------- flat ntuples, mapping on the command line


def test_cli_convert_hzz_with_an_inline_mapping(tmp_path, capsys):
    need(HZZ)
    rc, out, err = run_cli(["convert", HZZ, tmp_path / "hzz.root", "--tree", "events", "--branches", HZZ_INLINE], capsys)
    assert rc == 0, err
    s = read_events(tmp_path / "hzz.root")
    a = raw(HZZ, "events", ["NJet", "NMuon", "EventWeight"])
    np.testing.assert_array_equal(s.multiplicity("Jet"), a.NJet.to_numpy())
    np.testing.assert_array_equal(s.multiplicity("Muon"), a.NMuon.to_numpy())
    np.testing.assert_array_equal(s.weight, a.EventWeight.to_numpy().astype(np.float64))
    # the same mapping from a YAML file, and the HZZ file without --tree names the trees present
    (tmp_path / "map.yaml").write_text(HZZ_INLINE.strip("{}").replace(", ", "\n") + "\n")
    assert parse_mapping([str(tmp_path / "map.yaml")]) == parse_mapping([HZZ_INLINE])
    err = one_line_error(["convert", HZZ, tmp_path / "x.root", "--branches", HZZ_INLINE], capsys)
    assert "uproot-HZZ.root: no TTree 'Events' (trees in the file: events;" in err
    assert not (tmp_path / "x.root").exists()


def test_cli_convert_zmumu_from_flat_branches(tmp_path, capsys):
    need(ZMUMU)
    rc, out, err = run_cli(["convert", ZMUMU, tmp_path / "z.root", "--tree", "events", *ZMUMU_ARGS], capsys)
    assert rc == 0 and "(2304 events)" in out, err
    s = read_events(tmp_path / "z.root")
    a = raw(ZMUMU, "events", ["px1", "py1", "px2", "py2", "Q1", "Q2"])
    assert (s.multiplicity("Muon") == 2).all()
    # the file's own pt1/pt2 come from another track fit than its px/py; the mapping reads px/py
    pt = np.stack([np.hypot(a.px1.to_numpy(), a.py1.to_numpy()), np.hypot(a.px2.to_numpy(), a.py2.to_numpy())], axis=1)
    q = np.stack([a.Q1.to_numpy(), a.Q2.to_numpy()], axis=1)
    lead = np.argmax(pt, axis=1)
    got = s["Muon"].pt.to_numpy()
    np.testing.assert_allclose(got[:, 0], pt.max(axis=1), rtol=1e-6)  # stored as float32
    np.testing.assert_allclose(got[:, 1], pt.min(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(s["Muon"].charge.to_numpy()[:, 0], q[np.arange(len(q)), lead])


def test_cli_validate_and_convert_mapping_errors(tmp_path, capsys):
    need(ZMUMU)
    out = tmp_path / "z.root"
    err = one_line_error(["convert", ZMUMU, out, "--tree", "events", "--branch", "Muon_px=[px1, px2]"], capsys)
    assert "branch mapping for Muon needs" in err and "lacks Muon_py, Muon_pz, Muon_E" in err
    err = one_line_error(["convert", ZMUMU, out, "--tree", "events", *ZMUMU_ARGS, "--branch", "Muon_E=E1"], capsys)
    assert "mixes lists of flat branches" in err
    err = one_line_error(["convert", ZMUMU, out, "--tree", "events", "--branches", "{Muon_pt: [pt1"], capsys)
    assert "not valid YAML" in err
    err = one_line_error(["convert", ZMUMU, out, "--tree", "events", "--branches", tmp_path / "nope.yaml"], capsys)
    assert "no such mapping file" in err
    args = ["--branch", "Muon_pt=[pt1, pt2]", "--branch", "Muon_eta=[eta1, eta2]", "--branch", "Muon_phi=[phi1, phi2]",
            "--branch", "Muon_mass=[M, Mass2]", "--branch", "weight=Weight"]
    err = one_line_error(["convert", ZMUMU, out, "--tree", "events", *args], capsys)
    assert "uproot-Zmumu.root: tree 'events' lacks branches Muon_mass -> Mass2, weight -> Weight" in err
    assert not out.exists()


def test_card_data_branches_take_lists(tmp_path):
    need(ZMUMU)
    from hepgen.cards import card_from_dict
    from hepgen.io import read_data

    mapping = {"Muon_px": ["px1", "px2"], "Muon_py": ["py1", "py2"], "Muon_pz": ["pz1", "pz2"], "Muon_E": ["E1", "E2"]}
    card = card_from_dict({"data": {"path": str(ZMUMU), "tree": "events", "branches": mapping, "max_events": 50}})
    s = read_data(card.data)
    assert len(s) == 50 and (s.multiplicity("Muon") == 2).all()


# ---------------------------------------------------------------------------- RNTuple


def test_rntuple_is_read():
    need(RNTUPLE)
    s = read_events(RNTUPLE)
    assert len(s) == 1000 and list(s.collections) == ["Muon"]
    with uproot.open(RNTUPLE) as f:
        a = f["Events"].arrays(["nMuon", "Muon_pt"])
    np.testing.assert_array_equal(s.multiplicity("Muon"), ak.to_numpy(a.nMuon))
    np.testing.assert_array_equal(ak.sort(ak.flatten(s["Muon"].pt)), ak.sort(ak.flatten(a.Muon_pt)).to_numpy())
    with pytest.raises(InputError, match="RNTuple 'Events': branch expressions are not read from an RNTuple"):
        read_events(RNTUPLE, branches={"Muon_pt": "Muon_pt / 1000", "Muon_eta": "Muon_eta", "Muon_phi": "Muon_phi",
                                       "Muon_mass": "Muon_mass"})


def test_cli_convert_rntuple(tmp_path, capsys):
    need(RNTUPLE)
    rc, out, err = run_cli(["convert", RNTUPLE, tmp_path / "r.lhe"], capsys)
    assert rc == 0 and "(1000 events)" in out, err


def test_rntuple_without_reader_support_names_the_format(monkeypatch, tmp_path):
    need(RNTUPLE)

    class Opaque:  # what an uproot without RNTuple reading gives for the key
        pass

    real_open = reader._open_file

    def open_without_rntuple(path):
        f = real_open(path)
        getitem = type(f).__getitem__
        monkeypatch.setattr(type(f), "__getitem__", lambda self, k: Opaque() if k == "Events" else getitem(self, k))
        return f

    monkeypatch.setattr(reader, "_open_file", open_without_rntuple)
    with pytest.raises(InputError, match=r"'Events' is an RNTuple, which uproot .* cannot read"):
        read_events(RNTUPLE)


def test_missing_tree_lists_rntuples(tmp_path):
    need(RNTUPLE)
    with pytest.raises(InputError, match=r"no TTree 'events' \(trees in the file: Events \(RNTuple\)"):
        read_events(RNTUPLE, tree="events")


# ---------------------------------------------------------------------------- types checked on read


def write_tree(path, types, data, tree="Events"):
    with uproot.recreate(path) as f:
        f.mktree(tree, types).extend(data)
    return path


MU = {"pt": [[40.0, 30.0], [50.0]], "eta": [[0.1, 0.2], [0.3]], "phi": [[0.5, -0.5], [1.0]], "mass": [[0.1, 0.1], [0.1]]}
JET = {"pt": [[60.0], [70.0]], "eta": [[1.0], [-1.0]], "phi": [[2.0], [-2.0]], "mass": [[5.0], [6.0]]}


def muon_file(path, charge=None, charge_type="int32", weight=None, weight_type="float32"):
    mu = dict(MU)
    fields = ", ".join(f"{k}: float32" for k in MU)
    if charge is not None:
        mu["charge"] = charge
        fields += f", charge: {charge_type}"
    types = {"Muon": f"var * {{{fields}}}", "Jet": "var * {pt: float32, eta: float32, phi: float32, mass: float32}"}
    data = {"Muon": ak.zip({k: ak.Array(v) for k, v in mu.items()}), "Jet": ak.zip(JET)}
    if weight is not None:
        types["weight"] = weight_type
        data["weight"] = weight
    return write_tree(path, types, data)


def test_flat_branch_where_a_jagged_one_is_expected(tmp_path, capsys):
    path = write_tree(tmp_path / "flat.root", {f"Muon_{k}": "float32" for k in MU} | {"Jet": "var * {pt: float32, eta: float32, phi: float32, mass: float32}"},
                      {**{f"Muon_{k}": np.array([v[0][0], v[1][0]], np.float32) for k, v in MU.items()}, "Jet": ak.zip(JET)})
    with pytest.raises(InputError) as err:
        read_events(path)
    msg = str(err.value)
    assert "flat.root: tree 'Events': branch Muon_" in msg and "is float32, expected a jagged number branch" in msg
    err = one_line_error(["convert", path, tmp_path / "out.lhe"], capsys)
    assert "flat.root" in err and "branch Muon_" in err
    assert not (tmp_path / "out.lhe").exists()


def test_jagged_weight_is_an_error_naming_the_file(tmp_path, capsys):
    path = muon_file(tmp_path / "jw.root", weight=ak.Array([[1.0, 2.0], [3.0]]), weight_type="var * float32")
    with pytest.raises(InputError, match=r"jw.root: tree 'Events': branch weight is var \* float32, expected a flat"):
        read_events(path)
    (tmp_path / "obs.yaml").write_text(OBS)
    err = one_line_error(["validate", path, "-r", path, "-o", tmp_path / "v", "--no-classifier",
                          "--observables", tmp_path / "obs.yaml"], capsys)
    assert "jw.root" in err and "branch weight" in err
    assert not (tmp_path / "v").exists()


def test_bool_momentum_is_an_error(tmp_path):
    path = write_tree(tmp_path / "b.root", {"Muon": "var * {pt: bool, eta: float32, phi: float32, mass: float32}"},
                      {"Muon": ak.zip({"pt": [[True, False], [True]], **{k: MU[k] for k in ("eta", "phi", "mass")}})})
    with pytest.raises(InputError, match=r"b.root: tree 'Events': branch Muon_pt is var \* bool, expected numbers"):
        read_events(path)


@pytest.mark.parametrize("charge, ctype, match", [
    ([[0.5, -1.0], [1.0]], "float32", r"branch Muon_charge holds non-integer values \(0.5\)"),
    ([[True, False], [True]], "bool", r"branch Muon_charge is var \* bool, expected integers"),
])
def test_bad_charge_is_an_error(tmp_path, charge, ctype, match):
    path = muon_file(tmp_path / "c.root", charge=ak.Array(charge), charge_type=ctype)
    with pytest.raises(InputError, match="c.root: tree 'Events': " + match):
        read_events(path)


def test_float_charge_with_integer_values_is_read(tmp_path):
    path = muon_file(tmp_path / "c.root", charge=ak.Array([[1.0, -1.0], [-1.0]]), charge_type="float32")
    assert read_events(path)["Muon"].charge.to_list() == [[1, -1], [-1]]


def test_fields_of_one_collection_disagree_in_length(tmp_path):
    types = {f"Muon_{k}": "var * float32" for k in MU}
    data = {f"Muon_{k}": ak.Array(v) for k, v in MU.items()}
    data["Muon_eta"] = ak.Array([[0.1], [0.3, 0.4]])
    path = write_tree(tmp_path / "len.root", types, data)
    with pytest.raises(InputError, match="len.root: tree 'Events': branches Muon_pt and Muon_eta disagree"):
        read_events(path)


def test_needed_collection_missing_a_branch_is_named(tmp_path):
    types = {f"Jet_{k}": "var * float32" for k in ("pt", "eta")} | {"FsrPhoton_pt": "var * float32"}
    path = write_tree(tmp_path / "p.root", types, {"Jet_pt": ak.Array([[1.0]]), "Jet_eta": ak.Array([[0.0]]),
                                                   "FsrPhoton_pt": ak.Array([[2.0]])})
    with pytest.raises(InputError, match="p.root: tree 'Events': collection Jet needs .* lacks Jet_phi, Jet_mass"):
        read_events(path)


@pytest.mark.parametrize("make", ["empty", "no_tree"])
def test_empty_root_files(tmp_path, make):
    path = tmp_path / "e.root"
    if make == "empty":
        path.write_bytes(b"")
    else:
        uproot.recreate(path).close()
    with pytest.raises(InputError) as err:
        read_events(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and not msg.rstrip(")").endswith(",")
    assert ("empty file" if make == "empty" else "trees in the file: none") in msg


def test_one_line_joins_uproot_messages():
    err = OSError("expected Chunk of length 403,\nreceived 0 bytes from FSSpecSource\nfor file path /tmp/x.root")
    assert reader._one_line(err) == "OSError: expected Chunk of length 403, received 0 bytes from FSSpecSource"


def test_validate_reads_a_dimuon_ntuple_as_events_without_jets():
    need(ZMUMU)
    from hepgen.validate.inputs import ReadAs, read_sample

    said = []
    mapping = parse_mapping(ZMUMU_ARGS[1::2])
    s, draw = read_sample(ZMUMU, ReadAs("events", mapping), said.append)
    assert draw is None and len(s) == 2304 and (s.n_jets == 0).all() and (s.multiplicity("Muon") == 2).all()
    assert said == [f"{ZMUMU}: no Jet collection; its events count as events without jets"]
    with pytest.raises(InputError, match="uproot-Zmumu.root: no Muon collection to validate"):
        read_sample(ZMUMU, ReadAs("events", {k.replace("Muon", "Electron"): v for k, v in mapping.items()}))


def test_cli_reweight_reads_a_mapped_reference(tmp_path, capsys):
    need(HZZ)
    from hepgen.io.root import write_events

    write_events(tmp_path / "gen.root", toy_zjets(600, 4))
    base = ["reweight", tmp_path / "gen.root", "-r", HZZ, "-o", tmp_path / "rw.root",
            "--set", "validate.classifier_epochs=1", "--set", "validate.classifier_runs=1"]
    err = one_line_error(base, capsys)  # the reference's tree is 'events'
    assert "uproot-HZZ.root: no TTree 'Events'" in err and not (tmp_path / "rw.root").exists()
    rc, out, err = run_cli(base + ["--reference-tree", "events", "--reference-branches", HZZ_INLINE], capsys)
    assert rc == 0 and "classifier AUC" in out, err
    assert len(read_events(tmp_path / "rw.root")) == 600
