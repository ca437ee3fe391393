"""Run cards: YAML -> typed, frozen configuration.

A card is a YAML file with the sections below; every section and key is optional and has a
sensible default. Loading is strict: an unknown key, a wrong type or an out-of-range value is a
one-line :class:`~hepgen.errors.CardError` that names the file, the key and what is allowed.
``--set section.key=value`` overrides keys from the command line (the value is parsed as YAML).
The resolved card (:func:`dump_card`) is saved next to every output.

Relative paths in a card are relative to the working directory.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import hashlib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml

from .cardfields import ranged
from .errors import CardError
from .modelcards import (BayesConfig, CFMConfig, DDPMConfig, DIDIConfig, INNConfig, JetGPTConfig, ModelConfig,
                         NetworkConfig, VAEConfig, GANConfig, LGATrConfig, StudentConfig,
                         EnsembleConfig, NuisanceConfig)

__all__ = ["ProcessConfig", "SimulateConfig", "DataConfig", "TrainConfig", "GenerateConfig", "ValidateConfig",
           "DistillConfig", "RefineConfig", "DiscriminatorConfig", "Card",
           "build_section", "card_from_dict", "load_card", "card_to_dict", "dump_card", "card_hash",
           # the model section's dataclasses live in hepgen.modelcards
           "ModelConfig", "NetworkConfig", "BayesConfig", "CFMConfig", "DDPMConfig", "JetGPTConfig", "INNConfig",
           "DIDIConfig", "VAEConfig", "GANConfig", "LGATrConfig", "StudentConfig",
           "EnsembleConfig", "NuisanceConfig"]


# -- sections ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessConfig:
    """The physics process and the object selection shared by simulation and generation."""

    name: str = "zjets"  # a registered process (hepgen.processes): zjets, toy_ramp, toy_ring
    sqrt_s: float = ranged(13000.0, gt=0)  # GeV
    n_jets: tuple[int, ...] = (1, 2, 3)  # exclusive jet multiplicities kept
    jet_r: float = ranged(0.4, gt=0, le=2)  # anti-kT radius
    jet_pt_min: float = ranged(20.0, ge=0)  # GeV
    jet_eta_max: float = ranged(5.0, gt=0)
    jet_dr_min: float = ranged(0.4, ge=0)  # minimal Delta R between selected jets
    jet_input_eta_max: float = ranged(6.0, gt=0)  # jet inputs: visible particles with |eta| below
    # the process's own keys, checked by the process's settings section (hepgen.processes.settings);
    # {} for zjets and the toys, which have none
    settings: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class SimulateConfig:
    """Reference-sample production with Pythia 8 + FastJet."""

    events: int = ranged(20000, ge=1)  # selected events to produce
    output: str = "data/zjets_reference.root"
    jobs: int = ranged(0, ge=0)  # worker processes; 0 = all cores
    batch: int = ranged(1000, ge=1)  # Pythia nextBatch size
    hard_process: Literal["drell_yan", "z_jet"] = "drell_yan"  # ffbar2gmZ + shower | Z + 1 parton
    mhat_min: float = ranged(50.0, ge=0)  # GeV, lower bound of the Z/gamma* mass
    pthat_min: float = ranged(10.0, gt=0)  # GeV, PhaseSpace:pTHatMin (hard_process z_jet only)
    # biased pT-hat sampling (hard_process z_jet only): 0 = off (unit weights); p > 0 = Pythia samples
    # (pTHat / bias_pt_ref)^p more often and writes the compensating weights as genWeight
    bias_pt: float = ranged(0.0, ge=0, le=10)  # PhaseSpace:bias2SelectionPow
    bias_pt_ref: float = ranged(10.0, ge=1)  # GeV, PhaseSpace:bias2SelectionRef (weight 1 at this pTHat)
    hadronization: bool = True
    mpi: bool = False  # multiparton interactions
    pythia: tuple[str, ...] = ()  # extra "Key = value" Pythia settings, applied last
    input: str = ""  # a HepMC file whose events are selected instead of Pythia's ("" = Pythia)
    # Pythia's shower variation weights (ISR/FSR mu_R x 0.5, x 2) as NanoAOD's PSWeight (docs/io.md); false: not dumped
    psweight: bool = field(default=False, metadata={"omit_empty": True})
    # paired samples: also the reco jets from this pT up to process.jet_pt_min as SoftJet (docs/unfolding.md)
    soft_jet_pt_min: float = field(default=0.0, metadata={"omit_empty": True, "range": {"ge": 0}})  # 0: none


@dataclass(frozen=True)
class DataConfig:
    """The training sample: a file and, for external ntuples, how to read it."""

    path: str = "data/zjets_reference.root"
    format: Literal["root", "lhe"] = "root"
    tree: str = "Events"
    branches: Mapping[str, str] = field(default_factory=dict)  # hepgen name -> file branch/expr (or [flat, ...])
    split: tuple[float, ...] = (0.8, 0.1, 0.1)  # train / validation / held-out test
    max_events: int = ranged(0, ge=0)  # 0 = all
    # generators that map samples (model.family didi): the source events file ("" = none), read by the
    # same process as path, and a card whose simulation makes it when absent ("" = none)
    source: str = ""
    source_card: str = ""
    # per-event weights of the training loss: "none" = every event counts once (unweighted samples),
    # "file" = the file's event weight (LHE event weight, ROOT weight / genWeight branch); see docs/training.md
    weights: Literal["none", "file"] = "none"


@dataclass(frozen=True)
class DiscriminatorConfig:
    """DiscFlow (arXiv:2110.13632, :mod:`hepgen.discflow`): every ``every`` epochs a classifier learns to tell
    ``events`` generated events from training events (network coordinates and condition); until the next
    update each training event's loss counts (D / (1 - D))^a times, a = ``alpha`` after ``warmup`` epochs,
    raised linearly over ``ramp`` epochs, the factor clipped to [1 / ``clip``, ``clip``]."""

    enabled: bool = False
    alpha: float = ranged(0.5, ge=0)
    warmup: int = ranged(1, ge=0)  # epochs without the weights (the generator must be near the data first)
    ramp: int = ranged(1, ge=1)  # epochs over which the exponent rises to alpha
    every: int = ranged(1, ge=1)  # classifier update cadence, epochs
    events: int = ranged(20000, ge=100)  # generated events per update (and training events it trains on)
    epochs: int = ranged(10, ge=1)  # classifier epochs per update
    clip: float = ranged(10.0, gt=1)
    # the sampler of the generated events: a cheap one keeps the updates affordable for ODE families
    # ("" / 0: the card's; e.g. euler x 4 for a CFM)
    solver: Literal["", "euler", "midpoint", "rk4"] = ""
    steps: int = ranged(0, ge=0)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = ranged(20, ge=1)
    batch_size: int = ranged(1024, ge=1)
    lr: float = ranged(1e-3, gt=0)
    weight_decay: float = ranged(0.0, ge=0)
    optimizer: Literal["adam", "adamw"] = "adamw"
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    patience: int = ranged(0, ge=0)  # early stopping on validation loss; 0 = off
    grad_clip: float = ranged(0.0, ge=0)  # 0 = off
    # draw training events with weight f_c ** -balance (f_c: their condition's fraction, e.g. the jet multiplicity's;
    # with data.weights: file its share of the summed |weight|): 0 = plain shuffling, 0.5 = sqrt-boosted, 1 = equal
    balance: float = ranged(0.0, ge=0, le=1)
    # > 0: balance the distinct one-hot patterns (the unfolding's (reco, particle) multiplicity pairs), none drawn
    # > balance_cap x as often per event as the most common (trainingdata.balance_weights); 0: per column, no cap
    balance_cap: float = field(default=0.0, metadata={"omit_empty": True, "range": {"ge": 0}})
    # with per-event weights (data.weights: file): events are drawn with |w| ** weight_power and their
    # loss weighted by |w| ** (1 - weight_power), the same density with less gradient noise from a
    # wide weight spread (0 = every event drawn equally, 1 = drawn in proportion to its weight)
    weight_power: float = ranged(0.0, ge=0, le=1)
    # model.nuisance: draw each batch's events in proportion to w(x; nu), not weighting their loss by it (same
    # density, no weight-90 event dominating a step; nuisance.TrainingConditions); NUISANCE_GROUPS nu per batch
    nuisance_resample: bool = field(default=False, metadata={"omit_empty": True})
    # model.nuisance: each batch event regressed at nu = 0 and at its drawn nu (CFM.paired_loss)
    nuisance_paired: bool = field(default=False, metadata={"omit_empty": True})
    # exponential moving average of the weights (decay per step; 0 = off): validation, best.pt and
    # generation use the average, training continues on the raw weights
    ema: float = ranged(0.0, ge=0, lt=1)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = ranged(0, ge=0)  # torch CPU threads; 0 = all cores
    runs_dir: str = "runs"
    validate: bool = True  # after training: generate, then run hepgen.validate on the held-out split
    discriminator: DiscriminatorConfig = DiscriminatorConfig()  # DiscFlow; off by default


@dataclass(frozen=True)
class GenerateConfig:
    events: int = ranged(100000, ge=1)
    format: Literal["root", "lhe"] = "root"
    chunk: int = ranged(100000, ge=1)  # events in memory at once
    calibration_events: int = ranged(1000, ge=0)  # per multiplicity, for the cut-corrected fractions (0: off)


@dataclass(frozen=True)
class ValidateConfig:
    observables: str = ""  # observable-set YAML; "" = the process's own (validation/<process>.yaml)
    classifier_epochs: int = ranged(30, ge=1)
    classifier_runs: int = ranged(3, ge=1)
    style: Literal["CMS", "ATLAS", "ROOT"] = "CMS"
    min_bin_events: int = ranged(100, ge=1)  # a histogram bin is trusted with at least this many events
    classifier_folds: int = ranged(3, ge=2)  # cross-fitting folds: every event scored by a model that never saw it
    quantiles: int = ranged(20, ge=2)  # quantiles of the amplification estimate (arXiv:2008.06545)
    # independent reference (hepgen.simulate.reference): a Z+jets sample simulated with the card's
    # simulate and process settings but its own seed, never trained on; the run's validation compares
    # with it first and with the held-out split second. Absent -> simulated after training.
    reference: str = "data/zjets_validation.root"
    reference_events: int = ranged(0, ge=0)  # selected events; 0 = none (the held-out split only)
    reference_seed: int = ranged(0, ge=0)  # simulation seed; 0 = the card's seed + 1 000 000; never the card's seed


@dataclass(frozen=True)
class DistillConfig:
    """Where a distilled run came from (written by ``hepgen distill``, :mod:`hepgen.distill`): its
    training rows are ``pairs`` (x_T, z) of the teacher run's ODE, integrated with ``solver`` x
    ``steps`` (empty / 0: the teacher card's). ``teacher`` "" = an ordinary run."""

    teacher: str = ""  # the teacher run folder
    checkpoint: str = ""  # sha256 (16 hex) of the teacher's best.pt; checked before the pairs are made
    method: Literal["reflow", "student"] = "reflow"
    pairs: int = ranged(200000, ge=2)
    solver: Literal["", "euler", "midpoint", "rk4"] = ""
    steps: int = ranged(0, ge=0)
    init: Literal["teacher", "scratch"] = "teacher"  # start from the teacher's weights, or from the card's init
    # the pairs' conditions: drawn from the teacher's training events ("data": its multiplicity
    # fractions) or each one-hot class equally often ("uniform": as many 3-jet pairs as 1-jet
    # ones, each with its own events' continuous conditions); the run generates with the data's fractions either way
    conditions: Literal["data", "uniform"] = "data"


@dataclass(frozen=True)
class RefineConfig:
    """Where a refined run came from (written by ``hepgen refine``, :mod:`hepgen.refine`, LASER): the base
    run's generator, frozen, behind a small CFM in its latent space (``hidden`` x ``layers``, sampled
    with ``solver`` x ``steps``) trained on ``events`` latent vectors of the base run with their DCTR
    weights. ``base`` "" = an ordinary run."""

    base: str = ""  # the base run folder
    checkpoint: str = ""  # sha256 (16 hex) of the base run's best.pt; checked before the latents are made
    events: int = ranged(50000, ge=100)  # base events (latent vectors) generated, weighted and learned
    hidden: int = ranged(64, ge=1)  # the latent refiner's network width
    layers: int = ranged(2, ge=1)  # its residual blocks
    solver: Literal["euler", "midpoint", "rk4"] = "rk4"
    steps: int = ranged(10, ge=1)
    # the refiner learns a correction to the identity map (hepgen.models.laser.ResidualField); hepgen refine
    # writes true; absent (false) in refined runs made before it and in ordinary cards (the hash stays)
    residual: bool = field(default=False, metadata={"omit_empty": True})
    # > 0: train on this many fresh base latents, their events weighted by the DCTR classifiers trained on the
    # `events` base events (hepgen.latent), not on those base latents themselves
    latents: int = field(default=0, metadata={"omit_empty": True, "range": {"ge": 0}})
    # the latent refiner: "cfm" (hidden x layers, solver x steps) or "inn" (`blocks` spline couplings, subnetworks
    # hidden x layers, the identity at the start, weighted maximum likelihood; hepgen.models.laser)
    refiner: Literal["cfm", "inn"] = field(default="cfm", metadata={"omit_default": True})
    blocks: int = field(default=6, metadata={"omit_default": True, "range": {"ge": 1}})


@dataclass(frozen=True)
class Card:
    """A whole run card. ``name`` labels run folders and outputs; ``seed`` drives everything."""

    name: str = "run"
    seed: int = ranged(1, ge=0)
    process: ProcessConfig = ProcessConfig()
    simulate: SimulateConfig = SimulateConfig()
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    generate: GenerateConfig = GenerateConfig()
    validate: ValidateConfig = ValidateConfig()
    distill: DistillConfig = DistillConfig()
    refine: RefineConfig = RefineConfig()
    # the detector stage (hepgen.detector): checked by its owner (hepgen.detector.detector_config);
    # {} = every default, and then left out of the dump, so cards without one keep their hash
    detector: Mapping[str, object] = field(default_factory=dict, metadata={"omit_empty": True})
    # hepgen integrate (hepgen.integrate.config): checked by its owner; {} = every default, left out of
    # the dump like the detector's
    integrate: Mapping[str, object] = field(default_factory=dict, metadata={"omit_empty": True})


# --------------------------------------------------------------------------------------
# loading


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin in (dict, collections.abc.Mapping):
        return "a mapping of strings"
    if dataclasses.is_dataclass(tp):
        return "a mapping (section)"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, str(tp)
    )


_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _convert(value: Any, tp, key: str, src: str):
    def bad(extra: str = ""):
        return CardError(
            f"{src}: {key} = {value!r} is not {_type_name(tp)}{extra}"
        )

    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise bad()
        return _build(tp, value, key, src)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise bad()
        return value
    if origin is tuple:
        (item,) = typing.get_args(tp)[:1]
        if isinstance(value, (str, Mapping)) or not isinstance(value, Sequence):
            value = [value] if isinstance(value, (int, float, str)) and not isinstance(value, bool) else value
        if not isinstance(value, Sequence) or isinstance(value, (str, Mapping)):
            raise bad()
        return tuple(_convert(v, item, f"{key}[{i}]", src) for i, v in enumerate(value))
    if origin in (dict, collections.abc.Mapping):
        if value is None:
            return types.MappingProxyType({})
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise bad()
        if typing.get_args(tp)[1:] == (object,):  # a section checked later by its owner (build_section)
            return types.MappingProxyType(_plain(value))
        # a list value stays a tuple of strings (data.branches: one object per flat branch)
        return types.MappingProxyType({k: tuple(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
                                       for k, v in value.items()})
    if tp is bool:
        if not isinstance(value, bool):
            raise bad()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if tp is float:
        if isinstance(value, str) and _PLAIN_NUMBER.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad()
        return value
    raise TypeError(f"card type {tp} not supported")  # a bug in the card classes


def _check_range(value, limits: dict, key: str, src: str):
    ops = {"ge": (lambda a, b: a >= b, ">="), "gt": (lambda a, b: a > b, ">"),
           "le": (lambda a, b: a <= b, "<="), "lt": (lambda a, b: a < b, "<")}
    for name, bound in limits.items():
        fn, sym = ops[name]
        if not fn(value, bound):
            allowed = " and ".join(f"{ops[n][1]} {b}" for n, b in limits.items())
            raise CardError(f"{src}: {key} = {value!r} is out of range (must be {allowed})")


def _build(cls, data: Mapping, prefix: str, src: str):
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            where = f"{prefix}.{key}" if prefix else str(key)
            raise CardError(
                f"{src}: unknown key {where!r}; allowed here: {', '.join(names)}"
            )
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        key = f"{prefix}.{f.name}" if prefix else f.name
        value = _convert(data[f.name], hints[f.name], key, src)
        if "range" in f.metadata:
            _check_range(value, f.metadata["range"], key, src)
        kwargs[f.name] = value
    return cls(**kwargs)


def build_section(cls, data: Mapping, prefix: str, src: str):
    """``data`` as the frozen section dataclass ``cls``, with the card's rules (unknown keys,
    types, ranges: one-line :class:`CardError` naming ``prefix.key``)."""
    return _build(cls, data, prefix, src)


def _apply_override(data: dict, assignment: str, src: str) -> None:
    if "=" not in assignment:
        raise CardError(f"--set {assignment!r}: expected section.key=value")
    path, raw = assignment.split("=", 1)
    keys = path.strip().split(".")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    node = data
    for k in keys[:-1]:
        nxt = node.setdefault(k, {})
        if not isinstance(nxt, dict):
            raise CardError(f"--set {assignment!r}: {k!r} is not a section")
        node = nxt
    node[keys[-1]] = value


def card_from_dict(data: Mapping, src: str = "<card>", overrides: Sequence[str] = ()) -> Card:
    data = _plain(data)
    for ov in overrides:
        _apply_override(data, ov, src)
    return _build(Card, data, "", src)


def _plain(obj):
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def load_card(path: str | Path, overrides: Sequence[str] = ()) -> Card:
    """Read and validate a card; ``overrides`` are ``section.key=value`` strings."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise CardError(f"card {path} not found") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as err:
        raise CardError(f"card {path} cannot be read: {err}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise CardError(f"{path}: {problem}{where}") from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise CardError(f"{path}: a card must be a YAML mapping of sections")
    data.setdefault("name", path.stem)
    return card_from_dict(data, str(path), overrides)


def card_to_dict(card) -> dict:
    out = {}
    for f in dataclasses.fields(card):
        v = getattr(card, f.name)
        if f.metadata.get("omit_empty") and not v:  # an empty list or section left out (the hash stays)
            continue
        if f.metadata.get("omit_default") and v == f.default:  # a key newer than old cards (the hash stays)
            continue
        if dataclasses.is_dataclass(v):
            v = card_to_dict(v)
        elif isinstance(v, tuple):
            v = [card_to_dict(e) if dataclasses.is_dataclass(e) else e for e in v]
        elif isinstance(v, Mapping):
            v = dict(v)
        out[f.name] = v
    return out


def dump_card(card: Card) -> str:
    """The fully resolved card as YAML (every key, defaults included)."""
    return yaml.safe_dump(card_to_dict(card), sort_keys=False)


def card_hash(card: Card) -> str:
    """Short stable hash of the resolved card (provenance)."""
    return hashlib.sha256(dump_card(card).encode()).hexdigest()[:16]
