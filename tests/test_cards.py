"""Cards: strict loading, overrides, round trip, and one-line errors from the CLI."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hepgen.cards import Card, card_from_dict, card_hash, dump_card, load_card
from hepgen.errors import CardError

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_and_nested_values():
    card = card_from_dict({"name": "x", "model": {"family": "ddpm", "bayes": {"enabled": True, "draws": 5}}})
    assert card.name == "x"
    assert card.model.family == "ddpm"
    assert card.model.bayes.enabled and card.model.bayes.draws == 5
    assert card.train == Card().train  # untouched sections keep their defaults


def test_int_is_accepted_for_float_but_not_bool_for_int():
    card = card_from_dict({"train": {"lr": 1}})
    assert isinstance(card.train.lr, float) and card.train.lr == 1.0
    with pytest.raises(CardError, match=r"train\.epochs = True is not an integer"):
        card_from_dict({"train": {"epochs": True}})


def test_exponent_without_a_dot_is_a_number():
    """YAML 1.1 reads 2e-3 as the string '2e-3'; a float key takes it as the number it is, in a
    card file and with --set alike, while other strings stay errors."""
    card = card_from_dict({"train": {"lr": "2e-3"}}, overrides=["model.bayes.kl_scale=5E-1"])
    assert card.train.lr == 2e-3 and card.model.bayes.kl_scale == 0.5
    for text in ("fast", "1e", "nan", "1,5"):
        with pytest.raises(CardError, match=r"train\.lr = .* is not a number"):
            card_from_dict({"train": {"lr": text}})


@pytest.mark.parametrize(
    "data, message",
    [
        ({"trian": {}}, r"unknown key 'trian'; allowed here: name, seed, process"),
        ({"train": {"epoch": 3}}, r"unknown key 'train\.epoch'; allowed here: epochs, batch_size"),
        ({"train": {"epochs": "ten"}}, r"train\.epochs = 'ten' is not an integer"),
        ({"train": {"epochs": 0}}, r"train\.epochs = 0 is out of range \(must be >= 1\)"),
        ({"model": {"family": "flow"}}, r"model\.family = 'flow' is not one of 'cfm'"),
        ({"model": {"bayes": {"enabled": "yes"}}}, r"model\.bayes\.enabled = 'yes' is not true or false"),
        ({"model": {"network": {"dropout": 1.0}}}, r"dropout = 1\.0 is out of range \(must be >= 0 and < 1\)"),
        ({"process": {"n_jets": ["one"]}}, r"process\.n_jets\[0\] = 'one' is not an integer"),
        ({"train": 5}, r"train = 5 is not a mapping"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(data, message):
    with pytest.raises(CardError, match=message) as info:
        card_from_dict(data, "card.yaml")
    assert str(info.value).startswith("card.yaml: ")
    assert "\n" not in str(info.value)


def test_overrides_parse_yaml_values_and_reject_unknown_keys():
    card = card_from_dict({}, overrides=["train.epochs=7", "model.bayes.enabled=true", "process.n_jets=[1, 2]"])
    assert card.train.epochs == 7 and card.model.bayes.enabled and card.process.n_jets == (1, 2)
    with pytest.raises(CardError, match="unknown key 'train.epoks'"):
        card_from_dict({}, overrides=["train.epoks=7"])
    with pytest.raises(CardError, match="expected section.key=value"):
        card_from_dict({}, overrides=["train.epochs"])


def test_dump_round_trips_and_hash_tracks_content():
    card = card_from_dict({"seed": 3, "data": {"branches": {"Jet_pt": "jpt"}}, "simulate": {"pythia": ["A = 1"]}})
    again = card_from_dict(yaml.safe_load(dump_card(card)))
    assert again == card
    assert card_hash(again) == card_hash(card)
    assert card_hash(card_from_dict({"seed": 4})) != card_hash(card_from_dict({"seed": 3}))


def test_keys_newer_than_old_cards_are_left_out_at_their_defaults():
    """refine.refiner / refine.blocks (omit_default) and train.balance_cap (omit_empty) are absent from
    the dump of a card that keeps their defaults, so a card written before they existed dumps, and
    hashes, the same; set, they are dumped and read back."""
    plain = yaml.safe_load(dump_card(Card()))
    assert not {"refiner", "blocks"} & set(plain["refine"]) and "balance_cap" not in plain["train"]
    card = card_from_dict({}, "x", ["refine.refiner=inn", "refine.blocks=3", "train.balance_cap=4"])
    dumped = yaml.safe_load(dump_card(card))
    assert dumped["refine"]["refiner"] == "inn" and dumped["refine"]["blocks"] == 3
    assert dumped["train"]["balance_cap"] == 4
    assert card_from_dict(dumped, "y") == card and card_hash(card) != card_hash(Card())


def test_load_card_file_errors(tmp_path):
    with pytest.raises(CardError, match="not found"):
        load_card(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: [1,\n")
    with pytest.raises(CardError, match=r"bad\.yaml: .*line \d+"):
        load_card(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(CardError, match="must be a YAML mapping"):
        load_card(lst)
    named = tmp_path / "mycard.yaml"
    named.write_text("seed: 5\n")
    assert load_card(named).name == "mycard"


@pytest.mark.parametrize("card", sorted(p.name for p in (ROOT / "cards").glob("*.yaml")))
def test_shipped_cards_load(card):
    load_card(ROOT / "cards" / card)


def test_cli_card_typo_is_one_line_and_exit_2(tmp_path):
    card = tmp_path / "typo.yaml"
    card.write_text("simulate:\n  evnets: 10\n")
    proc = subprocess.run([sys.executable, "-m", "hepgen", "simulate", str(card)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"hepgen: error: {card}: unknown key 'simulate.evnets'; allowed here: events, ")
    assert "Traceback" not in proc.stderr
