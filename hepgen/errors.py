"""The one exception type users see.

Every error that a user can cause (a bad card, a truncated file, a missing branch, an
existing output) is raised as a :class:`HepgenError` with a one-line message. The CLI turns
it into that message on stderr and exit status 2; nothing else is caught there, so real bugs
still show their traceback.
"""

from __future__ import annotations


class HepgenError(Exception):
    """A user-facing error: the message is complete, one line, and says what to do."""

    exit_code = 2


class CardError(HepgenError):
    """A run card has an unknown key, a wrong type or an out-of-range value."""


class InputError(HepgenError):
    """An input file is missing, truncated, malformed or lacks a needed field."""


class OutputError(HepgenError):
    """An output cannot be written (exists without --force, unwritable directory)."""


class ExportError(HepgenError):
    """The generator cannot be written as a graph that C++ frameworks run."""
