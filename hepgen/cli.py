"""The ``hepgen`` command line: parse, call the library, report.

Each command is a thin wrapper over one library function. User errors
(:class:`~hepgen.errors.HepgenError`) print one line ``hepgen: error: ...`` and exit 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import __version__
from .errors import HepgenError

_SET = click.option(
    "--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
    help="Override a card key (repeatable), e.g. --set train.epochs=5.",
)
_FORCE = click.option("--force", is_flag=True, help="Overwrite an existing output.")


def _load(card_path, overrides):
    from .cards import load_card

    return load_card(card_path, overrides)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hepgen")
def cli():
    """hepgen: machine-learned LHC event generation.

    \b
    Typical flow:
      hepgen simulate cards/zjets.yaml        # reference sample (Pythia 8 + FastJet)
      hepgen train cards/zjets.yaml           # train a generator (simulates first if needed)
      hepgen generate runs/<run> -n 1000000   # new events as ROOT or LHE
      hepgen validate runs/<run>              # plots, classifier test, precision table
      hepgen export runs/<run>                # ONNX generator for C++ frameworks
    """


@cli.command()
@click.argument("card", type=click.Path(path_type=Path))
@click.option("-n", "--events", type=click.IntRange(min=1), help="Selected events (default: the card's simulate.events).")
@click.option("--seed", type=click.IntRange(min=0), help="Random seed (default: the card's seed).")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Output ROOT file (default: the card's simulate.output).")
@click.option("-j", "--jobs", type=click.IntRange(min=0), help="Worker processes; 0 = all cores (default: the card's simulate.jobs).")
@_FORCE
@_SET
def simulate(card, events, seed, output, jobs, force, overrides):
    """Produce a reference sample: Pythia 8 events, FastJet jets, the card's selection."""
    cfg = _load(card, overrides)
    from .simulate import produce

    path = produce(cfg, events=events, seed=seed, output=output, jobs=jobs, force=force)
    click.echo(f"wrote {path}")


@cli.command("export")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Export folder (default: exports/<run name>).")
@click.option("--bayes-samples", type=click.IntRange(min=1), help="Posterior draws K, one weight file each (Bayesian runs; default: the card's model.bayes.draws).")
@click.option("--steps", type=click.IntRange(min=1), help="Fixed sampler steps unrolled into the graph (CFM, DDPM; default: the card's).")
@click.option("--solver", type=click.Choice(["rk4", "midpoint", "euler"]), help="ODE solver unrolled into the graph (CFM; default: the card's).")
@click.option("--no-sofie", is_flag=True, help="Skip the SOFIE C++ header (ONNX Runtime only).")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True)
@_FORCE
def export_cmd(run, output, bayes_samples, steps, solver, no_sofie, checkpoint, force):
    """ONNX generator for C++ frameworks: one graph, one weight file per Bayesian draw, SOFIE C++."""
    from .export import export

    path = export(run, output=output, bayes_samples=bayes_samples, steps=steps, solver=solver, force=force,
                  sofie=not no_sofie, checkpoint=checkpoint, progress=lambda m: click.echo(m, err=True))
    click.echo(f"wrote {path}")


def main(argv=None) -> None:
    """Console entry point."""
    try:
        rc = cli.main(args=argv, prog_name="hepgen", standalone_mode=False)
    except HepgenError as err:
        click.echo(f"hepgen: error: {err}", err=True)
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        click.echo("hepgen: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        click.echo("hepgen: interrupted", err=True)
        sys.exit(130)
    sys.exit(rc if isinstance(rc, int) else 0)
