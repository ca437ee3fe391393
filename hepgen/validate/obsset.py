"""Observable sets: which histograms to draw, with which binning (``validation/<process>.yaml``).

The file is data, loaded strictly like a run card: an unknown key, a wrong type, an unknown
observable or an empty range is a one-line :class:`~hepgen.errors.CardError` naming the file and
the key. See ``validation/zjets.yaml`` for the format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from .. import observables, processes
from ..errors import CardError, HepgenError


@dataclass(frozen=True)
class Hist1D:
    """One 1-D histogram: observable ``name`` in ``bins`` bins over ``range`` (observable units)."""

    name: str
    set: str
    bins: int
    range: tuple[float, float]
    logy: bool = False
    logx: bool = False
    ratio: tuple[float, float] = (0.8, 1.2)

    @property
    def edges(self) -> np.ndarray:
        lo, hi = self.range
        if self.logx:
            return np.geomspace(lo, hi, self.bins + 1)
        return np.linspace(lo, hi, self.bins + 1)

    @property
    def axis_label(self) -> str:
        return observables.get(self.name).axis_label


@dataclass(frozen=True)
class Map2D:
    """A 2-D map of observables ``x`` vs ``y``."""

    name: str
    x: str
    y: str
    bins: tuple[int, int]
    xrange: tuple[float, float]
    yrange: tuple[float, float]


@dataclass(frozen=True)
class Acceptance:
    """Which histograms the acceptance numbers use (:mod:`.acceptance`): ``core`` line shapes
    (chi2/ndf over their range), ``tails`` (observables in widths from the pole, e.g. ``dm_t``:
    bins beyond ``core_width`` are the tails), ``bulk`` (the others: their bulk deviation)."""

    core: tuple[str, ...]
    tails: tuple[str, ...]
    bulk: tuple[str, ...]
    core_width: float = 5.0


@dataclass(frozen=True)
class ObservableSet:
    process: str
    hists: tuple[Hist1D, ...]
    maps: tuple[Map2D, ...]
    classifier_extra: tuple[str, ...] = ("m_mumu",)
    classifier_pairs: bool = True
    classifier_objects: str = "muons_and_jets"
    extreme: tuple[str, ...] = ()  # columns of classifier/extreme_events.md
    amplification: tuple[str, ...] = ()  # observables of the amplification table
    acceptance: Acceptance | None = None
    migration: tuple[str, ...] = ()  # source vs mapped per event (a map from a source sample)

    def hist(self, name: str) -> Hist1D:
        """The (first) histogram of observable ``name``."""
        return next(h for h in self.hists if h.name == name)

    @property
    def sets(self) -> list[str]:
        return list(dict.fromkeys(h.set for h in self.hists))

    def names(self) -> list[str]:
        """All observables needed (histograms and maps), without duplicates."""
        out = [h.name for h in self.hists] + [n for m in self.maps for n in (m.x, m.y)]
        return list(dict.fromkeys(out))


_HIST_KEYS = {"bins", "range", "logy", "logx", "ratio"}
_MAP_KEYS = {"x", "y", "bins", "xrange", "yrange"}
_TOP_KEYS = {"process", "sets", "maps", "classifier", "amplification", "acceptance", "migration"}
_CLF_KEYS = {"extra", "pairs", "objects", "extreme"}
_ACC_KEYS = {"core", "tails", "bulk", "core_width"}
OBJECTS = ("muons_and_jets", "none")  # the keys of hepgen.validate.classifier.FEATURES


def _keys(d, allowed: set, where: str, src: str) -> dict:
    if not isinstance(d, dict):
        raise CardError(f"{src}: {where} must be a mapping")
    for k in d:
        if k not in allowed:
            raise CardError(f"{src}: unknown key {where + '.' + str(k)!r}; allowed here: {', '.join(sorted(allowed))}")
    return d


def _pair(v, key: str, src: str, integer: bool = False) -> tuple:
    ok = isinstance(v, (list, tuple)) and len(v) == 2 and all(
        isinstance(x, int) if integer else isinstance(x, (int, float)) and not isinstance(x, bool) for x in v
    )
    if not ok:
        raise CardError(f"{src}: {key} must be a list of two {'integers' if integer else 'numbers'}, got {v!r}")
    if not integer and not float(v[0]) < float(v[1]):
        raise CardError(f"{src}: {key} = {v!r} is empty (need lo < hi)")
    if integer and min(v) < 1:
        raise CardError(f"{src}: {key} = {v!r} must be positive")
    return tuple(int(x) if integer else float(x) for x in v)


def _observable(name, key: str, src: str) -> str:
    try:
        observables.get(str(name))
    except HepgenError as err:
        raise CardError(f"{src}: {key}: {err}") from None
    return str(name)


def _bool(v, key, src) -> bool:
    if not isinstance(v, bool):
        raise CardError(f"{src}: {key} must be true or false, got {v!r}")
    return v


def load_observable_set(path: str | Path) -> ObservableSet:
    """Read and check an observable-set YAML file."""
    path = Path(path)
    src = str(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise CardError(f"{src}: no such observable-set file") from None
    except yaml.YAMLError as err:
        raise CardError(f"{src}: not valid YAML ({str(err).splitlines()[0]})") from None
    data = _keys(data or {}, _TOP_KEYS, "top level", src)
    hists = []
    for set_name, entries in _keys(data.get("sets", {}), set(data.get("sets", {}) or {}), "sets", src).items():
        for name, spec in _keys(entries or {}, set(entries or {}), f"sets.{set_name}", src).items():
            where = f"sets.{set_name}.{name}"
            spec = _keys(spec or {}, _HIST_KEYS, where, src)
            for req in ("bins", "range"):
                if req not in spec:
                    raise CardError(f"{src}: {where} needs {req!r}")
            bins = spec["bins"]
            if not isinstance(bins, int) or isinstance(bins, bool) or bins < 1:
                raise CardError(f"{src}: {where}.bins must be a positive integer, got {bins!r}")
            rng = _pair(spec["range"], f"{where}.range", src)
            logx = _bool(spec.get("logx", False), f"{where}.logx", src)
            if logx and rng[0] <= 0:
                raise CardError(f"{src}: {where}: logx needs a positive range")
            hists.append(Hist1D(
                name=_observable(name, where, src), set=str(set_name), bins=bins, range=rng,
                logy=_bool(spec.get("logy", False), f"{where}.logy", src), logx=logx,
                ratio=_pair(spec["ratio"], f"{where}.ratio", src) if "ratio" in spec else (0.8, 1.2),
            ))
    maps = []
    for name, spec in _keys(data.get("maps", {}) or {}, set(data.get("maps", {}) or {}), "maps", src).items():
        where = f"maps.{name}"
        spec = _keys(spec or {}, _MAP_KEYS, where, src)
        missing = _MAP_KEYS - set(spec)
        if missing:
            raise CardError(f"{src}: {where} needs {', '.join(sorted(missing))}")
        maps.append(Map2D(
            name=str(name), x=_observable(spec["x"], f"{where}.x", src), y=_observable(spec["y"], f"{where}.y", src),
            bins=_pair(spec["bins"], f"{where}.bins", src, integer=True),
            xrange=_pair(spec["xrange"], f"{where}.xrange", src), yrange=_pair(spec["yrange"], f"{where}.yrange", src),
        ))
    clf = _keys(data.get("classifier", {}) or {}, _CLF_KEYS, "classifier", src)
    if not hists:
        raise CardError(f"{src}: no histograms (sets is empty)")
    hist_names = list(dict.fromkeys(h.name for h in hists))
    objects = clf.get("objects", OBJECTS[0])
    if objects not in OBJECTS:
        raise CardError(f"{src}: classifier.objects must be one of {', '.join(OBJECTS)}, got {objects!r}")
    return ObservableSet(
        process=str(data.get("process", "zjets")), hists=tuple(hists), maps=tuple(maps),
        classifier_extra=_names(clf.get("extra", ["m_mumu"]), "classifier.extra", src),
        classifier_pairs=_bool(clf.get("pairs", True), "classifier.pairs", src),
        classifier_objects=objects,
        extreme=_names(clf.get("extreme", hist_names[:10]), "classifier.extreme", src),
        amplification=_names(data.get("amplification", hist_names), "amplification", src),
        acceptance=_acceptance(data["acceptance"], hist_names, src) if "acceptance" in data else None,
        migration=_names(data.get("migration", []), "migration", src, hist_names),
    )


def _names(v, key: str, src: str, among: list[str] | None = None) -> tuple[str, ...]:
    """A list of observable names (each one a histogram of the set, when ``among`` is given)."""
    if not isinstance(v, list):
        raise CardError(f"{src}: {key} must be a list of observable names")
    for name in v:
        _observable(name, key, src)
        if among is not None and name not in among:
            raise CardError(f"{src}: {key}: {name!r} has no histogram in sets (its binning comes from there)")
    return tuple(str(n) for n in v)


def _acceptance(v, hist_names: list[str], src: str) -> Acceptance:
    spec = _keys(v or {}, _ACC_KEYS, "acceptance", src)
    core = _names(spec.get("core", []), "acceptance.core", src, hist_names)
    tails = _names(spec.get("tails", []), "acceptance.tails", src, hist_names)
    bulk = _names(spec.get("bulk", [n for n in hist_names if n not in core + tails]), "acceptance.bulk", src, hist_names)
    width = spec.get("core_width", 5.0)
    if not isinstance(width, (int, float)) or isinstance(width, bool) or not width > 0:
        raise CardError(f"{src}: acceptance.core_width must be a positive number, got {width!r}")
    return Acceptance(core, tails, bulk, float(width))


def default_path(process: str = "zjets") -> Path:
    """``validation/<process>.yaml`` in the working directory, else next to the package."""
    local = Path("validation") / f"{process}.yaml"
    if local.exists():
        return local
    return Path(__file__).resolve().parents[2] / "validation" / f"{process}.yaml"


def for_card(card, path: str | Path | None = None) -> ObservableSet:
    """The observable set of a validation: ``path``, else the card's ``validate.observables``,
    else ``validation/<stem>.yaml`` of the card's process (:func:`default_path`)."""
    chosen = path or card.validate.observables
    if not chosen:
        chosen = default_path(processes.get(card.process.name).observables or card.process.name)
    return load_observable_set(chosen)
