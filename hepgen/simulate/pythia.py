"""Pythia 8 for the Z -> mu mu + jets reference sample: settings, seeds, one configured instance.

The hard process (card ``simulate.hard_process``):

* ``drell_yan`` (default): ``WeakSingleBoson:ffbar2gmZ``, q qbar -> Z/gamma*, with the full
  gamma*/Z interference; every jet comes from the parton shower. For this process Pythia's
  initial-state shower starts at the kinematic limit ("power shower") and corrects its first
  emission to the Z + 1 parton matrix element, so the leading jet follows LO Z + jet while
  the soft region is Sudakov-resummed. No generator cut sculpts the jet pT spectrum at the
  20 GeV threshold; the price is that about 3 in 4 events have no jet and are rejected.
* ``z_jet``: ``WeakBosonAndParton:qqbar2gmZg`` and ``qg2gmZq``, Z/gamma* + 1 parton with
  ``PhaseSpace:pTHatMin = pthat_min``; more jets per generated event, but the pTHat cut
  must sit well below the jet threshold, and the rate below it has no Sudakov suppression.

Both force Z/gamma* -> mu+ mu- (``23:onMode = off``, ``23:onIfAny = 13``) with the Z/gamma*
mass above ``mhat_min`` (``23:mMin`` and ``PhaseSpace:mHatMin``). Hadron level; multiparton
interactions per the card (default off). The card's ``simulate.pythia`` strings are applied
last, so they can change anything. ``simulate.psweight``: the parton-shower variation weights
(:func:`psweight_settings`) ride along and become the PSWeight branch.
"""

from __future__ import annotations

import importlib.metadata

import numpy as np

from ..cards import Card
from ..errors import CardError, HepgenError
from ..io.variations import PSWEIGHT

BIAS_ON = "PhaseSpace:bias2Selection = on"
MAX_SEED = 900_000_000  # Pythia's Random:seed range is 1 .. 900000000


def worker_seed(seed: int, index: int) -> int:
    """Pythia seed of worker ``index`` for the run seed ``seed``: distinct, in 1..MAX_SEED.

    Derived with numpy's SeedSequence (a hash of both numbers), so neighbouring run seeds do
    not give overlapping worker seeds.
    """
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint64)[0]
    return int(state % MAX_SEED) + 1


def settings(card: Card) -> list[str]:
    """The Pythia settings (``Key = value`` strings) of a card, without the seed."""
    proc, sim = card.process, card.simulate
    lines = [
        f"Beams:eCM = {proc.sqrt_s:g}",
    ]
    if sim.hard_process == "drell_yan":
        lines += ["WeakSingleBoson:ffbar2gmZ = on"]
    else:
        lines += [
            "WeakBosonAndParton:qqbar2gmZg = on",
            "WeakBosonAndParton:qg2gmZq = on",
            f"PhaseSpace:pTHatMin = {sim.pthat_min:g}",
        ]
    lines += bias_settings(sim)
    lines += [
        f"PhaseSpace:mHatMin = {sim.mhat_min:g}",
        f"23:mMin = {sim.mhat_min:g}",
        "23:onMode = off",
        "23:onIfAny = 13",
        f"PartonLevel:MPI = {'on' if sim.mpi else 'off'}",
        f"HadronLevel:all = {'on' if sim.hadronization else 'off'}",
        "Print:quiet = on",
        "Next:numberCount = 0",
    ]
    if sim.psweight:
        lines += psweight_settings()
    return lines + list(sim.pythia)


def psweight_settings() -> list[str]:
    """Pythia's UncertaintyBands lines of the :data:`~hepgen.io.variations.PSWEIGHT` variations
    (their weights ride along with every event; the nominal weight stays 1)."""
    return ["UncertaintyBands:doVariations = on",
            "UncertaintyBands:List = {" + ", ".join(f"{wid} {text}" for wid, text in PSWEIGHT) + "}"]


def psweight_columns(pythia) -> list[int] | None:
    """The positions of the :data:`~hepgen.io.variations.PSWEIGHT` variations in the weights vector of
    ``pythia``'s events (``nextBatch``'s ``info.weights``; position 0 is the nominal), or None when
    it does not compute them."""
    names = [str(n) for n in pythia.infoPython().weightNameVector()]
    if not all(wid in names for wid, _ in PSWEIGHT):
        return None
    return [names.index(wid) for wid, _ in PSWEIGHT]


def bias_settings(sim) -> list[str]:
    """The biased pT-hat sampling of ``simulate.bias_pt`` (none when 0): Pythia samples the 2 -> 2
    process (pTHat / bias_pt_ref)^bias_pt times more often and gives each event the weight
    (bias_pt_ref / pTHat)^bias_pt (``info.weight()``). Pythia biases its own 2 -> 2 processes
    only, so it needs ``hard_process: z_jet`` (a one-line :class:`CardError` otherwise)."""
    if sim.bias_pt == 0:
        return []
    if sim.hard_process != "z_jet":
        raise CardError(f"simulate.bias_pt = {sim.bias_pt:g} needs simulate.hard_process: z_jet (Pythia biases its "
                        f"2 -> 2 processes only, not {sim.hard_process})")
    return [BIAS_ON, f"PhaseSpace:bias2SelectionPow = {sim.bias_pt:g}", f"PhaseSpace:bias2SelectionRef = {sim.bias_pt_ref:g}"]


def weights_line(sim) -> str:
    """The provenance's ``weights`` line for a simulation with the card's ``simulate`` section."""
    if sim.bias_pt == 0:
        return "unweighted (1 per event)"
    return (f"genWeight = Pythia's info.weight() = ({sim.bias_pt_ref:g} GeV / pTHat)^{sim.bias_pt:g} "
            "(PhaseSpace:bias2Selection); histogram with them")


def make_pythia(lines: list[str], seed: int, source: str = "card"):
    """An initialised, silent ``pythia8mc.Pythia`` with ``lines`` and ``Random:seed = seed``.

    A setting Pythia does not know is a :class:`CardError`; a failed ``init`` a
    :class:`HepgenError`.
    """
    import pythia8mc

    if not 1 <= seed <= MAX_SEED:
        raise ValueError(f"Pythia seed {seed} outside 1..{MAX_SEED}")
    pythia = pythia8mc.Pythia("", False)  # no banner
    for line in [*lines, "Random:setSeed = on", f"Random:seed = {seed}"]:
        if not pythia.readString(line, False):
            raise CardError(f"{source}: Pythia does not accept the setting {line!r}")
    if not pythia.init():
        raise HepgenError(f"{source}: Pythia initialisation failed with these settings")
    return pythia


def versions(with_fastjet: bool = True) -> dict[str, str]:
    """Versions of the generator packages (pythia8mc, and fastjet ``with_fastjet``), for provenance."""
    out = {"pythia8mc_version": importlib.metadata.version("pythia8mc")}
    if with_fastjet:
        import fastjet

        out["fastjet_version"] = fastjet.__version__
    return out
