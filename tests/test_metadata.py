"""Metadata that survives: cross section (simulate -> train -> generate -> LHE XSECUP), weight
variations with their groups and descriptions, beams (LHE <-> ROOT <-> LHE), and the values that
were written silently wrong (non-finite --sqrt-s, a format that disagrees with the suffix)."""

import math
import re
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from hepgen.cards import card_from_dict
from hepgen.errors import HepgenError, InputError
from hepgen.generate import generate
from hepgen.io import convert
from hepgen.io.lhe import load_lhe
from hepgen.io.root import read_events, write_events
from hepgen.runs import load_run
from hepgen.train import train
from tests.zjets_like import zjets_like

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared/fixtures"
LHEF3 = FIXTURES / "pylhe-testlhef3.lhe"


def _need(path):
    if not path.exists():
        pytest.skip(f"fixture {path} absent (needs ../shared/fixtures beside the checkout)")


def _wgt_count(path) -> int:
    return len(re.findall(r"<wgt\b", Path(path).read_text()))


def _descriptions(path) -> dict[str, str]:
    """id -> description of every <weight> declared in a file's header, read with a regex."""
    head = Path(path).read_text().split("<init>")[0]
    return {i: t.strip() for i, t in re.findall(r'<weight id="([^"]+)"[^>]*>([^<]*)</weight>', head)}


def _with_beams(tmp_path, line: str) -> Path:
    """The LHEF3 fixture with its init line's beams replaced by ``line`` (4 fields)."""
    text = LHEF3.read_text()
    start = text.index("<init>")
    old = text[start:].splitlines()[1]
    fields = old.split()
    new = "   " + line + " " + " ".join(fields[4:])
    path = tmp_path / "beams.lhe"
    path.write_text(text[:start] + text[start:].replace(old, new, 1))
    return path


# weight variations and beams -----------------------------------------------------------------
def test_lhef3_weights_groups_and_beams_survive_lhe_root_lhe(tmp_path):
    _need(LHEF3)
    src = load_lhe(LHEF3)
    assert _wgt_count(LHEF3) == 531
    root, _ = convert(LHEF3, tmp_path / "w.root", progress=False)
    back, _ = convert(root, tmp_path / "w.lhe", progress=False)
    assert _wgt_count(back) == 531
    got = load_lhe(back)
    assert list(got.weights) == list(src.weights)
    for k, v in src.weights.items():  # float32 in ROOT, nothing more lost
        np.testing.assert_array_equal(got.weights[k], v.astype(np.float32).astype(np.float64))
    # NanoAOD-style branches in the ROOT file, values float32
    with uproot.open(root) as f:
        scale = f["Events"]["LHEScaleWeight"].array(library="np")
        assert scale[0].dtype == np.float32 and len(scale[0]) == 9
        np.testing.assert_array_equal(np.stack(scale)[:, 3], src.weights["1004"].astype(np.float32))
    # names, descriptions and group attributes
    assert _descriptions(back) == _descriptions(LHEF3) and "muR=0.20000E+01 muF=0.50000E+00" in _descriptions(back).values()
    assert re.search(r'<weightgroup[^>]*type="scale_variation"', back.read_text())
    # beams
    assert got.init.beam_id == src.init.beam_id == (2212, 2212)
    assert got.init.beam_energy == src.init.beam_energy == (4000.0, 4000.0)
    assert got.init.pdf_id == src.init.pdf_id == (21100, 21100)  # the PDF set (PDFSUP) too


def test_lhe_to_lhe_keeps_weight_values_to_the_last_bit(tmp_path):
    _need(LHEF3)
    src = load_lhe(LHEF3)
    out, _ = convert(LHEF3, tmp_path / "w.lhe", progress=False)
    got = load_lhe(out)
    for k, v in src.weights.items():
        rel = np.abs(got.weights[k] - v) / np.abs(v)
        assert np.nanmax(rel) <= 1e-15
    assert _descriptions(out) == _descriptions(LHEF3)
    assert got.init.pdf_id == src.init.pdf_id == (21100, 21100)


@pytest.mark.parametrize("beams, ids, energies", [
    ("-11 11 0.10000000E+04 0.10000000E+04", (-11, 11), (1000.0, 1000.0)),
    ("2212 11 0.39000000E+04 0.27500000E+03", (2212, 11), (3900.0, 275.0)),
])
def test_beams_are_kept_not_rewritten_to_sqrt_s(tmp_path, beams, ids, energies):
    _need(LHEF3)
    src = _with_beams(tmp_path, beams)
    sample = load_lhe(src).sample
    # keep the events that these beams can make
    e = sum(ak.to_numpy(ak.sum(sample[c].t, axis=1)) for c in sample.collections)
    pz = sum(ak.to_numpy(ak.sum(sample[c].z, axis=1)) for c in sample.collections)
    keep = ((e + pz) / 2 <= energies[0]) & ((e - pz) / 2 <= energies[1])
    small = tmp_path / "small.root"
    write_events(small, sample.select(keep))
    for target in ("direct.lhe", "via.lhe"):
        source = small if target == "via.lhe" else tmp_path / "small_src.lhe"
        if target == "direct.lhe":
            convert(small, source, progress=False)
        out, n = convert(source, tmp_path / target, progress=False)
        init = load_lhe(out).init
        assert n == keep.sum() > 0 and init.beam_id == ids and init.beam_energy == energies


def test_sqrt_s_that_disagrees_with_the_input_beams_is_one_line(tmp_path, capsys):
    _need(LHEF3)
    rc, _, err = _cli(["convert", LHEF3, tmp_path / "x.lhe", "--sqrt-s", "13000"], capsys)
    assert rc == 2 and err.count("\n") == 1 and "disagrees with the input's beams" in err
    assert not (tmp_path / "x.lhe").exists()


# non-finite energies ---------------------------------------------------------------------------
def _cli(args, capsys):
    from hepgen.cli import main

    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


@pytest.mark.parametrize("value", ["inf", "nan", "-5", "0"])
def test_sqrt_s_not_finite_and_positive_is_one_line(tmp_path, capsys, value):
    write_events(tmp_path / "z.root", zjets_like(20, seed=3))
    rc, _, err = _cli(["convert", tmp_path / "z.root", tmp_path / "z.lhe", f"--sqrt-s={value}"], capsys)
    assert rc == 2 and err.startswith("hepgen: error:") and err.count("\n") == 1 and "--sqrt-s" in err
    assert not (tmp_path / "z.lhe").exists() and list(tmp_path.iterdir()) == [tmp_path / "z.root"]


def test_lhe_with_infinite_beam_energy_is_refused(tmp_path):
    _need(LHEF3)
    with pytest.raises(InputError, match="beam energies"):
        load_lhe(_with_beams(tmp_path, "2212 2212 inf inf"))


# cross section: simulate -> train -> generate ----------------------------------------------------
SIGMA, SIGMA_ERR = 1234.5678901234567, 12.345


def _card(tmp):
    return card_from_dict({
        "name": "xs", "seed": 4,
        "data": {"path": str(tmp / "ref.root"), "split": [0.8, 0.1, 0.1]},
        "process": {"n_jets": [1, 2]},
        "model": {"family": "cfm", "network": {"hidden": 16, "layers": 1}, "cfm": {"solver": "euler", "steps": 2}},
        "train": {"epochs": 1, "batch_size": 256, "threads": 1, "validate": False, "runs_dir": str(tmp / "runs")},
        "generate": {"events": 100, "chunk": 1000},
    })


@pytest.fixture(scope="module")
def xs_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("xs")
    data = zjets_like(1200, seed=5).with_info(cross_section_pb=repr(SIGMA), cross_section_error_pb=repr(SIGMA_ERR))
    write_events(tmp / "ref.root", data)
    path = train(_card(tmp), progress=False, run_dir=tmp / "run", after=False)
    return load_run(path), tmp, data


def _expected(sigma, err, passed, total):
    eff = passed / total
    return sigma * eff, sigma * eff * math.sqrt((err / sigma) ** 2 + (1 - eff) / (eff * total))


def test_run_keeps_the_cross_section_of_the_events_it_trained_on(xs_run):
    run, _, data = xs_run
    in_card = np.isin(data.n_jets, [1, 2])  # load_data drops the 3-jet events
    assert 0 < in_card.sum() < len(data)
    sigma, err = _expected(SIGMA, SIGMA_ERR, in_card.sum(), len(data))
    assert float(run.data_info["cross_section_pb"]) == pytest.approx(sigma, rel=1e-12)
    assert float(run.data_info["cross_section_error_pb"]) == pytest.approx(err, rel=1e-12)


@pytest.mark.parametrize("fmt", ["lhe", "root"])
def test_generated_file_carries_the_learned_cross_section_scaled_by_its_selection(xs_run, tmp_path, fmt):
    run, _, _ = xs_run
    n = 3000
    (path,) = generate(run, n, output=tmp_path / f"g.{fmt}", progress=False)
    info = load_lhe(path).sample.info if fmt == "lhe" else read_events(path).info
    dropped = sum(int(v) for k, v in info.items() if k.startswith("dropped_") and not k.endswith("_fraction"))
    kept = n - dropped
    assert int(info["events"]) == kept
    sigma_run, err_run = float(run.data_info["cross_section_pb"]), float(run.data_info["cross_section_error_pb"])
    sigma, err = _expected(sigma_run, err_run, kept, n)
    assert float(info["cross_section_pb"]) == pytest.approx(sigma, rel=1e-12)
    assert float(info["cross_section_error_pb"]) == pytest.approx(err, rel=1e-12)
    if fmt == "lhe":
        init = load_lhe(path).init
        assert init.processes[0][0] == pytest.approx(sigma, rel=1e-15)
        assert init.processes[0][1] == pytest.approx(err, rel=1e-15)
        assert init.processes[0][0] != 1.0


def test_generate_format_and_suffix_must_agree(xs_run, tmp_path):
    run, _, _ = xs_run
    with pytest.raises(HepgenError, match="suffix and --format must agree"):
        generate(run, 10, fmt="lhe", output=tmp_path / "x.root", progress=False)
    with pytest.raises(HepgenError, match="suffix and --format must agree"):
        generate(run, 10, fmt="root", output=tmp_path / "x.lhe", progress=False)
    assert list(tmp_path.iterdir()) == []
    (path,) = generate(run, 10, output=tmp_path / "y.lhe", progress=False)  # format from the suffix
    assert path.read_text().startswith("<LesHouchesEvents")
