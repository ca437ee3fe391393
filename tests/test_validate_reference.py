"""The independent validation reference (hepgen.simulate.reference) and the run validation that
uses it: simulated once when absent, reused when present, refused (one line) when its provenance
is not what the card asks for or when it is the training sample; validate_run compares with it
first and with the held-out split second, and says which reference each table used."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from hepgen import processes
from hepgen.cards import dump_card, load_card
from hepgen.cli import main
from hepgen.errors import CardError, HepgenError, InputError
from hepgen.io.root import read_events, write_events
from hepgen.simulate import reference as R
from hepgen.validate import validate_run

from zjets_toy import toy_zjets

ROOT = Path(__file__).resolve().parents[1]
N_REF = 150  # selected events of the tiny reference (one Pythia job)
OBS = """
sets:
  jets:
    pt_j2: {bins: 10, range: [20, 120]}
    eta_j2: {bins: 10, range: [-5, 5]}
"""


def tiny_card(tmp: Path, **validate):
    card = load_card(ROOT / "cards" / "zjets.yaml")
    vc = {"reference": str(tmp / "zjets_validation.root"), "reference_events": N_REF,
          "observables": str(tmp / "obs.yaml"), "classifier_epochs": 1, "classifier_runs": 1, "min_bin_events": 5} | validate
    return dataclasses.replace(
        card,
        simulate=dataclasses.replace(card.simulate, events=N_REF, batch=N_REF, jobs=1, output=str(tmp / "zjets_train.root")),
        data=dataclasses.replace(card.data, path=str(tmp / "zjets_train.root")),
        validate=dataclasses.replace(card.validate, **vc),
    )


def with_simulate(card, **kw):
    return dataclasses.replace(card, simulate=dataclasses.replace(card.simulate, **kw))


def with_process(card, **kw):
    return dataclasses.replace(card, process=dataclasses.replace(card.process, **kw))


def with_validate(card, **kw):
    return dataclasses.replace(card, validate=dataclasses.replace(card.validate, **kw))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The reference, simulated by independent_reference (the training file does not exist yet)."""
    tmp = tmp_path_factory.mktemp("valref")
    (tmp / "obs.yaml").write_text(OBS)
    card = tiny_card(tmp)
    logs = []
    path = R.independent_reference(card, logs.append)
    return tmp, card, path, logs


@pytest.fixture
def no_simulation(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the reference was simulated again")

    monkeypatch.setattr(R, "produce", fail)


def training_like(tmp: Path, ref: Path, seed: int = 1) -> Path:
    """A training sample that the card's simulation describes (provenance of the reference,
    another seed): toy kinematics, 2000 events."""
    info = dict(read_events(ref).info)
    info |= {"seed": str(seed), "events": "2000"}
    path = tmp / "zjets_train.root"
    write_events(path, toy_zjets(2000, 41, fractions=(0.6, 0.3, 0.1)), info=info, force=True)
    return path


def test_absent_reference_is_simulated_with_its_own_seed(made):
    tmp, card, path, logs = made
    assert path == tmp / "zjets_validation.root" and path.is_file()
    info = read_events(path).info
    assert info["seed"] == str(card.seed + R.REFERENCE_SEED_OFFSET) == str(R.reference_seed(card))
    assert info["events"] == str(N_REF) and len(read_events(path)) == N_REF
    assert any("simulating 150 events" in line for line in logs)


def test_present_reference_is_reused(made, no_simulation):
    tmp, card, path, _ = made
    before = path.stat().st_mtime_ns, path.read_bytes()
    logs = []
    assert R.independent_reference(card, logs.append) == path
    assert (path.stat().st_mtime_ns, path.read_bytes()) == before
    assert logs == [f"validation reference: {path} ({N_REF} events, seed {card.seed + R.REFERENCE_SEED_OFFSET})"]


@pytest.mark.parametrize("change, match", [
    (lambda c: with_validate(c, reference_seed=5), r"simulated with seed 1000001, the card asks for seed 5"),
    (lambda c: with_validate(c, reference_events=200), r"150 events, the card asks for validate.reference_events = 200"),
    (lambda c: with_process(c, jet_pt_min=25.0), r"another selection \(process.jet_pt_min: file 20.0, card 25.0\)"),
    (lambda c: with_simulate(c, mpi=True), r"other Pythia settings \(card vs file: \+PartonLevel:MPI = on, -PartonLevel:MPI = off\)"),
])
def test_reference_with_other_provenance_is_refused(made, no_simulation, change, match):
    tmp, card, path, _ = made
    with pytest.raises(InputError, match=match) as err:
        R.independent_reference(change(card), lambda msg: None)
    msg = str(err.value)
    assert msg.startswith(f"validate.reference {path}: ") and "delete it" in msg and "\n" not in msg


def test_reference_is_never_the_training_sample(made, no_simulation, tmp_path):
    tmp, card, path, _ = made
    for key in ("path", "output"):  # the training file itself, by name
        section = "data" if key == "path" else "simulate"
        bad = dataclasses.replace(card, **{section: dataclasses.replace(getattr(card, section), **{key: str(path)})})
        with pytest.raises(InputError, match=f"is the card's {section}.{key}"):
            R.independent_reference(bad, lambda msg: None)
    with pytest.raises(CardError, match="reference_seed = 1 is the card's seed"):
        R.independent_reference(with_validate(card, reference_seed=card.seed), lambda msg: None)
    # a training file simulated with the reference's seed (a copy of the reference)
    copy = tmp_path / "train.root"
    copy.write_bytes(path.read_bytes())
    bad = dataclasses.replace(card, data=dataclasses.replace(card.data, path=str(copy)))
    with pytest.raises(InputError, match="was simulated with seed 1000001, the reference's seed"):
        R.independent_reference(bad, lambda msg: None)
    # external training data: the card's simulation does not describe it
    write_events(tmp_path / "external.root", toy_zjets(100, 1))
    bad = dataclasses.replace(card, data=dataclasses.replace(card.data, path=str(tmp_path / "external.root")))
    with pytest.raises(HepgenError, match="no hepgen simulation provenance.*reference_events: 0"):
        R.independent_reference(bad, lambda msg: None)


def test_no_reference_asked_or_not_simulated(made, no_simulation, tmp_path):
    tmp, card, path, _ = made
    assert R.independent_reference(with_validate(card, reference_events=0), lambda msg: None) is None
    assert processes.get("toy_ring").validation_reference(card, lambda msg: None) is None
    logs = []
    absent = with_validate(card, reference=str(tmp_path / "absent.root"))
    assert R.independent_reference(absent, logs.append, simulate=False) is None
    assert not (tmp_path / "absent.root").exists()
    assert f"hepgen simulate CARD -n {N_REF} --seed 1000001 -o {tmp_path / 'absent.root'}" in logs[0]


def make_run(tmp: Path, card, name: str) -> Path:
    """A run folder as hepgen train leaves it, trained on 2000 events (held-out split: 200)."""
    run = tmp / "runs" / name
    run.mkdir(parents=True)
    (run / "card.yaml").write_text(dump_card(card))
    perm = np.random.default_rng(0).permutation(2000)
    np.savez(run / "split.npz", train=np.sort(perm[:1600]), val=np.sort(perm[1600:1800]), test=np.sort(perm[1800:]))
    write_events(run / "generated.root", toy_zjets(600, 42, fractions=(0.6, 0.3, 0.1)))
    return run


def test_validate_run_uses_the_reference_and_the_held_out_split(made, no_simulation):
    tmp, card, path, _ = made
    training_like(tmp, path)
    run = make_run(tmp, card, "zjets-1")
    out = validate_run(run, log=lambda msg: None)
    m = json.loads((out / "metrics.json").read_text())
    assert m["inputs"]["n_reference"] == N_REF and m["inputs"]["reference"].startswith(f"independent reference {path}")
    assert m["heldout"]["n_reference"] == 200 and set(m["heldout"]["observables"]) == {"pt_j2", "eta_j2"}
    assert m["inputs"]["n_training"] == 1600
    md = (out / "metrics.md").read_text()
    assert md.count(f"Against the reference: independent reference {path} (seed 1000001), {N_REF} events.") == 4
    assert "## Second check: the held-out split" in md and "Against the held-out split: 200 events" in md
    assert "| eta_j2 |" in md.split("## Second check")[1]


def test_cli_validate_uses_an_existing_reference_and_never_simulates(made, no_simulation, capsys):
    tmp, card, path, _ = made
    training_like(tmp, path)
    run = make_run(tmp, card, "zjets-2")
    with pytest.raises(SystemExit) as exit_:
        main(["validate", str(run), "--no-classifier", "--no-progress"])
    assert exit_.value.code == 0, capsys.readouterr().err
    m = json.loads((run / "validation" / "metrics.json").read_text())
    assert m["inputs"]["n_reference"] == N_REF and m["heldout"]["n_reference"] == 200
    # its card names an absent reference: the held-out split only, and the command that makes it
    absent = make_run(tmp, with_validate(card, reference=str(tmp / "absent.root")), "zjets-3")
    with pytest.raises(SystemExit) as exit_:
        main(["validate", str(absent), "--no-classifier", "--no-progress"])
    err = capsys.readouterr().err
    assert exit_.value.code == 0, err
    assert "hepgen simulate CARD -n 150 --seed 1000001" in err and not (tmp / "absent.root").exists()
    m = json.loads((absent / "validation" / "metrics.json").read_text())
    assert m["inputs"]["reference"] == "held-out split" and m["inputs"]["n_reference"] == 200 and "heldout" not in m


def test_training_refuses_a_mismatched_reference_before_it_trains(made, no_simulation, tmp_path):
    """hepgen train with another seed (--set seed=2) asks for a reference simulated with seed 1000002;
    the file there has 1000001. The report would refuse it after the last epoch: the training
    refuses it first, before the run folder exists. Without the report (train.validate off, or no
    after step) nothing is checked and the run trains."""
    from hepgen.train import train
    from hepgen.workflow import finish_run

    tmp, card, path, _ = made
    training_like(tmp, path)
    runs = tmp_path / "runs"
    card = dataclasses.replace(card, seed=2, model=dataclasses.replace(card.model, network=dataclasses.replace(
        card.model.network, hidden=16, layers=1)), train=dataclasses.replace(
        card.train, epochs=1, batch_size=512, runs_dir=str(runs), threads=1))
    with pytest.raises(InputError, match=r"simulated with seed 1000001, the card asks for seed 1000002.*"
                                         r"or validate.reference_seed: 1000001 to use it as it is$"):
        train(card, progress=False, after=finish_run)
    assert not runs.exists()
    # refused for more than its seed (here also its selection): no reference_seed hint
    with pytest.raises(InputError, match="asks for seed 1000002.*another selection") as err:
        fresh = dataclasses.replace(card, data=dataclasses.replace(card.data, path=str(tmp_path / "absent.root")))
        R.independent_reference(with_process(fresh, jet_pt_min=25.0), lambda msg: None)
    assert "reference_seed: 1000001" not in str(err.value)
    quiet = dataclasses.replace(card, train=dataclasses.replace(card.train, validate=False))
    assert (train(quiet, progress=False, after=finish_run) / "generated.root").is_file()
