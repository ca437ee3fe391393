"""A training's run folder and its human-readable records.

:func:`new_run_dir` claims ``<train.runs_dir>/<card name>-<YYYYmmdd-HHMMSS>[-i]``;
:class:`RunLog` appends time-stamped lines to ``train.log`` (and echoes them to stderr);
:func:`write_history` writes ``history.json`` (one entry per epoch: epoch, train_loss, val_loss,
kl, lr, seconds) and :func:`plot_history` the loss curves ``loss.png``; :func:`write_data_info` /
:func:`read_data_info` keep what the run knows of its training data (``data.json``: file, events,
cross section). Whole files are written
through :func:`hepgen.outputs.atomic_output`.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from .cards import Card
from .errors import HepgenError, InputError
from .outputs import atomic_output


def new_run_dir(card: Card) -> Path:
    """Create and return a fresh run folder for ``card`` (``-1``, ``-2``, ... when the name is taken)."""
    base = Path(card.train.runs_dir)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    # claim the name with mkdir itself (not exists() then mkdir): two trainings started in the
    # same second each get their own folder
    for i in range(10_000):
        path = base / (f"{card.name}-{stamp}" + (f"-{i}" if i else ""))
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
        except OSError as err:
            raise HepgenError(f"cannot create run folder {path}: {err.strerror}") from None
    raise HepgenError(f"cannot create run folder {base / card.name}-{stamp}: 10000 names taken")


class RunLog:
    """Lines to ``train.log`` (append) and stderr; silent without a path (ranks other than 0)."""

    def __init__(self, path: Path | None, echo: bool = True):
        self.path, self.echo = path, echo

    def __call__(self, msg: str) -> None:
        if self.path is not None:
            stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            with open(self.path, "a") as fh:
                fh.write(f"{stamp} {msg}\n")
            if self.echo:
                print(msg, file=sys.stderr, flush=True)


class HeldLog:
    """Lines logged before the run folder exists: echoed to stderr now (``echo``: rank 0), kept
    for :meth:`write_to` the run's ``train.log`` once it does (silent without echo)."""

    def __init__(self, echo: bool = True):
        self.echo, self.lines = echo, []

    def __call__(self, msg: str) -> None:
        if self.echo:
            print(msg, file=sys.stderr, flush=True)
            self.lines.append(msg)

    def write_to(self, path: Path) -> None:
        for msg in self.lines:
            RunLog(path, echo=False)(msg)


def write_text(path: Path, text: str) -> None:
    """``text`` into ``path``, replacing an existing file."""
    with atomic_output(path, force=True) as tmp:
        tmp.write_text(text)


def write_history(history: list[dict], path: Path) -> None:
    write_text(path, json.dumps(history, indent=1))


def plot_history(history: list[dict], path: Path) -> None:
    """Training (and validation) loss per epoch as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ep = [h["epoch"] for h in history]
    ax.plot(ep, [h["train_loss"] for h in history], label="train")
    if any(h.get("val_loss") is not None for h in history):
        ax.plot(ep, [h["val_loss"] for h in history], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    try:
        with atomic_output(path, force=True) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)


def write_data_info(info: dict[str, str], path: Path) -> None:
    """What a run knows of its training data (file, events, cross section;
    :func:`hepgen.trainingdata.data_info`) as ``data.json``, replacing an existing file."""
    with atomic_output(path, force=True) as tmp:
        tmp.write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")


def read_data_info(folder: str | Path) -> dict[str, str]:
    """``folder/data.json`` (a run or its export), {} when absent (a run trained without one)."""
    file = Path(folder) / "data.json"
    if not file.is_file():
        return {}
    try:
        info = json.loads(file.read_text())
        if not isinstance(info, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as err:
        raise InputError(f"{file}: unreadable ({type(err).__name__}: {err})") from None
    return {str(k): str(v) for k, v in info.items()}
