"""hepgen: machine-learned LHC event generation.

Layers (see README, "Architecture"): cards -> simulate / io -> events + observables
-> coords -> models (one Generator protocol) -> train -> generate / export -> validate.
"""

__version__ = "0.1.0"
