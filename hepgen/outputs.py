"""Safe output files: refuse to overwrite, never leave a half-written file, clean up after the dead.

Every writer in hepgen goes through :func:`atomic_output`: it checks the destination first
(exists without ``force`` -> error; directory not writable -> error; a name longer than the
file system allows -> error), hands out a temporary name in the same directory, and renames it
into place only when the writer finished. A crash, Ctrl-C or SIGTERM leaves the old file (if
any) untouched and no file that looks complete.

The temporary name is ``.NAME.partial-HOST-PID.SUFFIX`` (``.NAME.partial-HOST-PID`` for a
folder); when that is longer than the file system allows, NAME is replaced by a hash of it.
A process killed with SIGKILL cannot remove its temporary; the next write of the same output
on the same host removes every temporary of that output whose process is no longer alive.
Temporaries of live processes, and of processes on other hosts (a shared file system), are
never touched.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import socket
import stat
from pathlib import Path
from typing import Iterator

from .errors import OutputError

NAME_MAX = 255  # bytes in one file name, where the file system does not say


def check_output(path: str | os.PathLike, force: bool = False) -> Path:
    """Validate that ``path`` may be written; create its parent directory. Returns it as Path."""
    path = Path(path)
    found = _lookup(path)
    if found is not None and stat.S_ISDIR(found.st_mode):
        raise OutputError(f"output {path} is a directory; give a file name")
    return _prepare(path, force, found)


def _lookup(path: Path) -> os.stat_result | None:
    """``path``'s stat, None if absent; a name too long (or a path the system cannot look up) is
    an :class:`OutputError`."""
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        if err.errno == errno.ENAMETOOLONG:
            _check_name(path, NAME_MAX)
        raise OutputError(f"cannot use output {_short(path)}: {err.strerror}") from None


def _prepare(path: Path, force: bool, found: os.stat_result | None = None) -> Path:
    """Refuse an existing ``path`` without ``force``; make sure its parent is writable and the
    name fits the file system. ``found``: ``path``'s stat when the caller has it."""
    parent = path.parent if str(path.parent) else Path(".")
    if found is None:
        found = _lookup(path)
    if found is not None and not force:
        raise OutputError(f"output {path} exists; use --force to overwrite it")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create directory {_short(parent)}: {err.strerror}") from None
    _check_name(path, _name_max(parent))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to directory {parent}: permission denied")
    return path


def _check_name(path: Path, limit: int) -> None:
    size = len(os.fsencode(path.name))
    if size > limit:
        raise OutputError(f"output name {_short(Path(path.name))} is {size} bytes long; "
                          f"the file system allows {limit}: give a shorter name")


def _short(path: Path, keep: int = 60) -> str:
    """A path for a one-line message: very long names are cut in the middle."""
    text = str(path)
    return text if len(text) <= 2 * keep else f"{text[:keep]}...{text[-keep:]}"


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return NAME_MAX


def _host() -> str:
    """This host's name as it appears in temporary names (no path separators, no dots)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"


def temporary(path: str | os.PathLike, suffix: bool = True) -> Path:
    """This process's temporary name for ``path`` (what :func:`atomic_output` writes; without
    the suffix, e.g. no ``.gz``, for ``suffix=False``). A helper process that writes a part of
    an output there leaves nothing that lasts: once it is dead, the next write of ``path``
    removes the part (:func:`stale_temporaries`)."""
    return _temporary(Path(path), Path(path).suffix if suffix else "")


def _temporary(path: Path, suffix: str) -> Path:
    """The temporary name of this process for ``path`` (``suffix`` kept for the libraries that
    look at extensions); NAME is hashed when the full name would not fit the file system."""
    tag = f"partial-{_host()}-{os.getpid()}"
    name = f".{path.name}.{tag}{suffix}"
    limit = _name_max(path.parent if str(path.parent) else Path("."))
    if len(os.fsencode(name)) > limit:
        name = f".{_digest(path.name)}.{tag}{suffix}"
        if len(os.fsencode(name)) > limit:  # an "extension" that is most of the name
            name = f".{_digest(path.name)}.{tag}"
    return path.with_name(name)


def _digest(name: str) -> str:
    return "h" + hashlib.sha256(os.fsencode(name)).hexdigest()[:24]


def _alive(pid: int) -> bool:
    if pid <= 0:
        return True  # not a process id we wrote: leave the file alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except OverflowError:
        return False
    return True


def stale_temporaries(path: str | os.PathLike, *, folder: bool = False) -> list[Path]:
    """The temporaries of ``path`` left on this host by processes that are no longer alive.

    Matches only the names :func:`atomic_output` (``folder=False``) or :func:`atomic_directory`
    (``folder=True``) give ``path``, with or without the hashed name, and the names without a
    host that earlier versions wrote.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    suffix = "" if folder else re.escape(path.suffix)
    heads = "|".join(re.escape(h) for h in (path.name, _digest(path.name)))
    pattern = re.compile(rf"\.(?:{heads})\.partial-(?:{re.escape(_host())}-)?(\d+)(?:{suffix})?")
    stale = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return []
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or int(match.group(1)) == os.getpid() or _alive(int(match.group(1))):
            continue
        if entry.is_dir(follow_symlinks=False) == folder:
            stale.append(Path(entry.path))
    return sorted(stale)


def _remove_stale(path: Path, folder: bool) -> None:
    for old in stale_temporaries(path, folder=folder):
        if folder:
            shutil.rmtree(old, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it into place if the block succeeds.

    The temporary name keeps the suffix (``.x.root.partial-HOST-PID.root``) so libraries that
    look at extensions still work. Temporaries of ``path`` left by dead processes are removed.
    """
    path = check_output(path, force)
    _remove_stale(path, folder=False)
    tmp = _temporary(path, path.suffix)
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
    path = _prepare(Path(path), force)
    _remove_stale(path, folder=True)
    tmp = _temporary(path, "")
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
