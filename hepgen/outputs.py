"""Safe output files: refuse to overwrite, never leave a half-written file.

Every writer in hepgen goes through :func:`atomic_output`: it checks the destination first
(exists without ``force`` -> error; directory not writable -> error), hands out a temporary
name in the same directory, and renames it into place only when the writer finished. A crash
or Ctrl-C leaves the old file (if any) untouched and no file that looks complete.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from .errors import OutputError


def check_output(path: str | os.PathLike, force: bool = False) -> Path:
    """Validate that ``path`` may be written; create its parent directory. Returns it as Path."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"output {path} is a directory; give a file name")
    return _prepare(path, force)


def _prepare(path: Path, force: bool) -> Path:
    """Refuse an existing ``path`` without ``force``; make sure its parent is writable."""
    if path.exists() and not force:
        raise OutputError(f"output {path} exists; use --force to overwrite it")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create directory {parent}: {err.strerror}") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to directory {parent}: permission denied")
    return path


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it into place if the block succeeds.

    The temporary name keeps the suffix (``.x.root.partial-PID.root``) so libraries that
    look at extensions still work.
    """
    path = check_output(path, force)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Like :func:`atomic_output` for a directory (an export folder, a report)."""
    import shutil

    path = _prepare(Path(path), force)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
