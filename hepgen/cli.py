"""The ``hepgen`` command line: parse, call the library, report.

Each command is a thin wrapper over one library function. User errors
(:class:`~hepgen.errors.HepgenError`) print one line ``hepgen: error: ...`` and exit 2.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import click

from . import __version__
from .errors import HepgenError

_SET = click.option(
    "--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
    help="Override a card key (repeatable), e.g. --set train.epochs=5.",
)
_FORCE = click.option("--force", is_flag=True, help="Overwrite an existing output.")
_BRANCH_HELP = ("a YAML mapping file, an inline '{Muon_pt: mu_pt, weight: w}' or KEY=VALUE; repeatable, "
                "later keys win; the card's data.branches format, docs/io.md")
_TREE = click.option("--tree", default="Events", show_default=True, help="TTree (or RNTuple) to read from ROOT inputs.")
_BRANCHES = click.option("--branches", "--branch", "branches", multiple=True, metavar="MAPPING",
                         help="Branch mapping for ROOT inputs (default: detected): " + _BRANCH_HELP + ".")
_REF_TREE = click.option("--reference-tree", metavar="TREE",
                         help="TTree (or RNTuple) of the reference and --training files (default: --tree).")
_REF_BRANCHES = click.option("--reference-branches", "--reference-branch", "reference_branches", multiple=True,
                             metavar="MAPPING", help="Branch mapping of the reference and --training files "
                             "(default: --branches, else detected).")


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
      hepgen integrate cards/dy_lo.yaml       # LO Drell-Yan cross section + events, MadNIS vs VEGAS
    """


@cli.command()
@click.argument("card", type=click.Path(path_type=Path))
@click.option("-n", "--events", type=click.IntRange(min=1), help="Selected events (default: the card's simulate.events).")
@click.option("--seed", type=click.IntRange(min=0), help="Random seed (default: the card's seed).")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Output ROOT file (default: the card's simulate.output).")
@click.option("-j", "--jobs", type=click.IntRange(min=0), help="Worker processes; 0 = all cores (default: the card's simulate.jobs).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary line.")
@click.option("--input", "input_file", type=click.Path(path_type=Path),
              help="Select the events of this HepMC file (any generator) instead of Pythia's "
                   "(default: the card's simulate.input).")
@click.option("--save-hepmc", type=click.Path(path_type=Path),
              help="Also write Pythia's generated events as this HepMC3 file (.gz etc. compress).")
@_FORCE
@_SET
def simulate(card, events, seed, output, jobs, quiet, input_file, save_hepmc, force, overrides):
    """Produce a reference sample: Pythia 8 events (or a HepMC file's), FastJet jets, the card's selection."""
    cfg = _load(card, overrides)
    from .simulate import produce

    path = produce(cfg, events=events, seed=seed, output=output, jobs=jobs, force=force, quiet=quiet,
                   input=input_file, save_hepmc=save_hepmc)
    click.echo(f"wrote {path}")


_STYLE = click.Choice(["CMS", "ATLAS", "ROOT"])


@cli.command()
@click.argument("samples", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-r", "--reference", type=click.Path(path_type=Path),
              help="Reference ROOT/LHE sample not used for training (default for a run folder: the card's "
                   "validate.reference when that file exists, with the held-out split as a second check; "
                   "else the held-out split).")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Output folder (default: RUN/validation, or validation_out/<sample name>).")
@click.option("--style", type=_STYLE, help="Plot style (default: the card's validate.style, CMS).")
@click.option("--card", "card_path", type=click.Path(path_type=Path), help="Card for the validate settings (default: the run's card).")
@click.option("--training", type=click.Path(path_type=Path), help="Training sample to overlay in the plots.")
@click.option("--source", type=click.Path(path_type=Path),
              help="The source sample that SAMPLES map event by event (Direct Diffusion: the on-shell events "
                   "given to 'hepgen generate --source'): its classifier AUC beside theirs, and the migration.")
@click.option("--observables", "observables_file", type=click.Path(path_type=Path),
              help="Observable-set YAML (default: the card's validate.observables).")
@click.option("--no-classifier", is_flag=True, help="Skip the classifier two-sample test.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@_TREE
@_BRANCHES
@_REF_TREE
@_REF_BRANCHES
@_FORCE
@_SET
def validate(samples, reference, output, style, card_path, training, source, observables_file, no_classifier, no_progress,
             tree, branches, reference_tree, reference_branches, force, overrides):
    """Compare generated SAMPLES (one file, K files = K Bayesian draws, or a run folder) to a reference.

    Writes histograms with ratio panels and Bayesian bands (PNG + PDF), 2-D maps, the classifier
    test, metrics.json / metrics.md and an index.html that shows everything. An absent independent
    reference is not simulated here (the training hook does that): the held-out split is used and
    the 'hepgen simulate' command that makes the reference is printed.
    """
    card = _load(card_path, overrides) if card_path else (_card_from_overrides(overrides) if overrides else None)
    read, reference_read = _read_as(tree, branches, reference_tree, reference_branches)
    from .validate import validate as run_validate

    out = run_validate(list(samples) if len(samples) > 1 else samples[0], reference=reference, output=output,
                       style=style, force=force, card=card, training=training, source=source,
                       observables_file=observables_file,
                       classifier=not no_classifier, progress=False if no_progress else None,
                       read=read, reference_read=reference_read, log=lambda msg: click.echo(msg, err=True))
    click.echo(f"wrote {out}/index.html")


@cli.command()
@click.argument("sample", type=click.Path(path_type=Path))
@click.option("-r", "--reference", required=True, type=click.Path(path_type=Path), help="Reference ROOT/LHE sample.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Output .root or .lhe file.")
@click.option("--card", "card_path", type=click.Path(path_type=Path), help="Card for the classifier settings.")
@_TREE
@_BRANCHES
@_REF_TREE
@_REF_BRANCHES
@_FORCE
@_SET
def reweight(sample, reference, output, card_path, tree, branches, reference_tree, reference_branches, force, overrides):
    """Attach classifier (DCTR) weights w = p_ref/p_gen to generated events; write ROOT or LHE."""
    card = _load(card_path, overrides) if card_path else (_card_from_overrides(overrides) if overrides else None)
    read, reference_read = _read_as(tree, branches, reference_tree, reference_branches)
    from .validate.reweight import reweight as run_reweight

    path, s = run_reweight(sample, reference, output, card=card, force=force, read=read, reference_read=reference_read)
    click.echo(f"wrote {path}: classifier AUC {s['auc']:.4f} ± {s['auc_std']:.4f}, weights in "
               f"[{s['weight_min']:.3g}, {s['weight_max']:.3g}], effective sample fraction {s['effective_fraction']:.3f}")


@cli.command()
@click.argument("sample", type=click.Path(path_type=Path))
@click.option("--source", required=True, type=click.Path(path_type=Path),
              help="Simulated sample with the weight variations (simulate.psweight: true).")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Output file: .root, or .lhe / .lhe.gz (the variations as <rwgt> weights).")
@click.option("--card", "card_path", type=click.Path(path_type=Path), help="Card for the process and its features.")
@click.option("--id", "ids", multiple=True, help="Variation id to learn (repeatable; default: all of the source's).")
@click.option("--epochs", default=40, show_default=True, type=click.IntRange(min=1), help="Regression epochs.")
@click.option("--folds", default=1, show_default=True, type=click.IntRange(min=1),
              help="K > 1: SAMPLE is the source; each of K parts gets ratios learned from the others.")
@_TREE
@_BRANCHES
@_FORCE
@_SET
def variations(sample, source, output, card_path, ids, epochs, folds, tree, branches, force, overrides):
    """Attach learned weight variations E[w_var / w | x] (PSWeight) to generated events; write ROOT or LHE."""
    card = _load(card_path, overrides) if card_path else (_card_from_overrides(overrides) if overrides else None)
    read, source_read = _read_as(tree, branches)
    from .validate.learned_weights import LearnedSettings, attach

    seed = card.seed if card is not None else LearnedSettings.seed  # --set seed=N: another regression
    path, s = attach(sample, source, output, card=card, ids=list(ids) or None,
                     settings=LearnedSettings(epochs=epochs, seed=seed), force=force, read=read, source_read=source_read,
                     folds=folds)
    click.echo(f"wrote {path}: " + ", ".join(f"{i} mean {v['mean']:.4f} [{v['q01']:.3g}, {v['q99']:.3g}]"
                                              for i, v in s.items()))


def _read_as(tree, branches, reference_tree=None, reference_branches=()):
    """(samples, reference) ReadAs from the command line's --tree/--branches options."""
    from .io.root.branch_map import parse_mapping
    from .validate.inputs import ReadAs

    mapping = parse_mapping(branches, "--branches") if branches else None
    ref_mapping = parse_mapping(reference_branches, "--reference-branches") if reference_branches else mapping
    return ReadAs(tree, mapping), ReadAs(reference_tree or tree, ref_mapping)


def _card_from_overrides(overrides):
    from .cards import card_from_dict

    return card_from_dict({}, "<defaults>", overrides)


@cli.command()
@click.argument("card", required=False, type=click.Path(path_type=Path))
@click.option("--resume", "resume", type=click.Path(path_type=Path), metavar="RUN",
              help="Continue the run folder RUN from its last checkpoint (no CARD then).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@_SET
def train(card, resume, no_progress, overrides):
    """Train the card's generator; writes runs/<card>-<time>/ (simulates the data first if absent).

    When the run has finished, the best model generates into the run folder and, with
    train.validate, the sample is validated against the held-out split.
    """
    from .train import train as run_training
    from .workflow import finish_run

    if (card is None) == (resume is None):
        raise HepgenError("give a CARD to start a run, or --resume RUN to continue one")
    if resume is not None and overrides:
        raise HepgenError("--set cannot change a run being resumed (its card.yaml is fixed)")
    cfg = _load(card, overrides) if card is not None else None
    path = run_training(cfg, resume=resume, progress=False if no_progress else None, after=finish_run)
    click.echo(f"run {path}")


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--method", type=click.Choice(["reflow", "student"]), default="reflow", show_default=True,
              help="reflow: a CFM on the teacher's (noise, event) pairs, straight paths, Euler x 1-2; "
                   "student: a one-step network regressed on the teacher's events.")
@click.option("--pairs", type=click.IntRange(min=2), help="Teacher (noise, event) pairs to train on (default: 200000).")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="The new run folder (default: <runs_dir>/<teacher name>_<method>-<time>).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@_SET
def distill(run, method, pairs, output, no_progress, overrides):
    """Distil the CFM run RUN (the teacher) into a new run that samples in very few steps.

    The new run is trained on the teacher's ODE (noise, event) pairs, keeps its coordinates, records
    the teacher in its card (distill section) and, when trained, generates and validates like
    'hepgen train'. Resume it with 'hepgen train --resume NEW_RUN'.
    """
    from .distill import distill as run_distill
    from .workflow import finish_run

    path = run_distill(run, method=method, pairs=pairs, overrides=overrides, run_dir=output,
                       progress=False if no_progress else None, after=finish_run)
    click.echo(f"run {path}")


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="The new run folder (default: <runs_dir>/<run name>_refined-<time>).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@_SET
def refine(run, output, no_progress, overrides):
    """Refine the run RUN with LASER: DCTR weights on its latent noise, learned by a small latent CFM.

    The new run draws unweighted events: its latent CFM's sample goes through RUN's frozen generator.
    It records RUN in its card (refine section), reports the DCTR weights' effective sample size in
    train.log and data.json and, when trained, generates and validates like 'hepgen train'.
    """
    from .refine import refine as run_refine
    from .workflow import finish_run

    path = run_refine(run, overrides=overrides, run_dir=output, progress=False if no_progress else None,
                      after=finish_run)
    click.echo(f"run {path}")


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("-n", "--events", type=click.IntRange(min=1),
              help="Events to generate (default: the card's generate.events; with --source: every source event).")
@click.option("--bayes-samples", type=click.IntRange(min=0), default=0, show_default=True,
              help="Posterior draws K of a Bayesian model (or members of an ensemble): one file per draw (<stem>.draw<k>.<ext>), all from the same noise; 0 = weight means (ensemble: member 0).")
@click.option("--format", "fmt", type=click.Choice(["root", "lhe"]), help="Output format (default: from the -o suffix, else the card's generate.format).")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Output file (default: RUN/generated.<format>).")
@click.option("--seed", type=click.IntRange(min=0), help="Random seed (default: the run card's seed).")
@click.option("--shard", metavar="K/N", help="Write only shard K of N (K = 0..N-1): events [K*n/N, (K+1)*n/N) of the full run.")
@click.option("--solver", type=click.Choice(["euler", "midpoint", "rk4"]), help="ODE solver override (CFM).")
@click.option("--steps", type=click.IntRange(min=1), help="Solver steps override.")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True)
@click.option("--backend", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True,
              help="onnx: RUN is an export folder (hepgen export), run with ONNX Runtime, 1 thread.")
@click.option("--source", type=click.Path(path_type=Path), metavar="FILE",
              help="Source events (ROOT/LHE) for a generator that maps samples (didi): every event is mapped, "
                   "in file order (-n limits).")
@click.option("--nuisance", "nuisance", multiple=True, metavar="NAME=VALUE",
              help="A nuisance of the run (model.nuisance) at a fixed value in its range, or NAME=prior: drawn per "
                   "event from its prior (marginalised). Repeatable; the others are nominal (0).")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]",
              help="Where the network runs: auto = a CUDA GPU when there is one (torch; with --backend onnx when "
                   "onnxruntime-gpu is installed), else the CPU. The noise is drawn on the CPU either way.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@_FORCE
def generate(run, events, bayes_samples, fmt, output, seed, shard, solver, steps, checkpoint, backend, source,
             nuisance, device, no_progress, force):
    """Generate events from a trained run (or its ONNX export) into ROOT or LHE, streamed in chunks."""
    from .generate import generate as run_generation

    if backend == "onnx":
        from .export.runtime import OnnxRun

        r = OnnxRun(run, device=device)
    else:
        from .runs import load_run

        r = load_run(run, checkpoint)
    paths = run_generation(r, events, bayes_samples=bayes_samples, fmt=fmt, output=output, seed=seed, shard=shard,
                           force=force, solver=solver, steps=steps, source=source, nuisance=nuisance, device=device,
                           progress=False if no_progress else None, log=lambda m: click.echo(m, err=True))
    for p in paths:
        click.echo(f"wrote {p}")


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.argument("reco", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Output ROOT file.")
@click.option("-k", "--samples", type=click.IntRange(min=1), default=1, show_default=True,
              help="Posterior samples per reco event (a Bayesian run: sample k uses posterior draw k).")
@click.option("-n", "--events", type=click.IntRange(min=0), default=0, help="Read at most this many reco events (0: all).")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@_FORCE
def unfold(run, reco, output, samples, events, checkpoint, no_progress, force):
    """Unfold the reco events of RECO with an unfolding run: particle-level posterior samples."""
    from .runs import load_run
    from .unfold.posterior import unfold as run_unfold

    run_unfold(load_run(run, checkpoint), reco, output, samples=samples, force=force, max_events=events,
               log=lambda m: click.echo(m, err=True), progress=not no_progress)


@cli.command("export")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Export folder (default: exports/<run name>).")
@click.option("--bayes-samples", type=click.IntRange(min=1), help="Posterior draws K, one weight file each (Bayesian runs; default: the card's model.bayes.draws; an ensemble: its members).")
@click.option("--steps", type=click.IntRange(min=1), help="Fixed sampler steps unrolled into the graph (CFM, DDPM; default: the card's).")
@click.option("--solver", type=click.Choice(["rk4", "midpoint", "euler"]), help="ODE solver unrolled into the graph (CFM; default: the card's).")
@click.option("--no-sofie", is_flag=True, help="Skip the SOFIE C++ header (ONNX Runtime only).")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True)
@click.option("--source", type=click.Path(path_type=Path), metavar="FILE",
              help="Source events for the parity checks of a generator that maps samples (didi; default: the card's data.source).")
@_FORCE
def export_cmd(run, output, bayes_samples, steps, solver, no_sofie, checkpoint, source, force):
    """ONNX generator for C++ frameworks: one graph, one weight file per Bayesian draw, SOFIE C++."""
    from .export.from_run import export

    path = export(run, output=output, bayes_samples=bayes_samples, steps=steps, solver=solver, force=force,
                  sofie=not no_sofie, checkpoint=checkpoint, progress=lambda m: click.echo(m, err=True), source=source)
    click.echo(f"wrote {path}")


@cli.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("target", type=click.Path(path_type=Path))
@_TREE
@_BRANCHES
@click.option("--sqrt-s", type=float, default=None,
              help="Collider energy (GeV) of an LHE target's proton beams when the source names no beams "
                   "(default 13000; a source's own beams are kept).")
@_FORCE
def convert(source, target, tree, branches, sqrt_s, force):
    """Convert events between ROOT (NanoAOD-style TTree) and LHE, by file suffix."""
    from .io import convert as run
    from .io.root.branch_map import parse_mapping

    mapping = parse_mapping(branches, "--branches") if branches else None
    path, n = run(source, target, force=force, tree=tree, branches=mapping, sqrt_s=sqrt_s)
    click.echo(f"wrote {path} ({n} events)")


@cli.command("integrate")
@click.argument("card", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Output folder (default: the card's integrate.output).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@_FORCE
@_SET
def integrate_cmd(card, output, no_progress, force, overrides):
    """Cross section and weighted/unweighted events of pp -> gamma*/Z -> mu mu at LO: MadNIS vs VEGAS (docs/integrate.md)."""
    cfg = _load(card, overrides)
    from .integrate.run import integrate

    path = integrate(cfg, output=output, force=force, progress=False if no_progress else None,
                     log=lambda m: click.echo(m, err=True))
    click.echo(f"wrote {path}")


class Terminated(BaseException):
    """SIGTERM reached hepgen (a batch system, ``timeout``): it unwinds like Ctrl-C (no
    ``except Exception`` stops it), so the pool stops and no temporary file is left."""


def _on_sigterm(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up short
    raise Terminated


def _stopped(cause: BaseException | None) -> None:
    if isinstance(cause, Terminated):
        click.echo("hepgen: terminated (SIGTERM)", err=True)
        sys.exit(128 + signal.SIGTERM)
    click.echo("hepgen: interrupted", err=True)
    sys.exit(130)


def _usage_line(err: click.ClickException) -> str:
    """A click error (bad option value, missing argument, unknown command) as one line."""
    text = " ".join(err.format_message().split())
    ctx = getattr(err, "ctx", None)
    if ctx is not None:
        text = f"{text.rstrip('.')}; see '{ctx.command_path} --help'"
    return text


def main(argv=None) -> None:
    """Console entry point. User errors and click's usage errors: one line, exit 2; Ctrl-C:
    exit 130; SIGTERM: the same clean-up as Ctrl-C, exit 143."""
    previous = None
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:  # not over a caller's own
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        rc = cli.main(args=argv, prog_name="hepgen", standalone_mode=False)
    except HepgenError as err:
        click.echo(f"hepgen: error: {err}", err=True)
        sys.exit(err.exit_code)
    except click.exceptions.Abort as err:  # click wraps KeyboardInterrupt
        _stopped(err.__cause__)
    except click.exceptions.NoArgsIsHelpError as err:  # plain `hepgen`: the help, not an error
        err.show()
        sys.exit(err.exit_code)
    except click.ClickException as err:
        click.echo(f"hepgen: error: {_usage_line(err)}", err=True)
        sys.exit(2)
    except (KeyboardInterrupt, Terminated) as err:
        _stopped(err)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    sys.exit(rc if isinstance(rc, int) else 0)
