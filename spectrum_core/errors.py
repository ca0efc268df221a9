"""The root of every error Spectrum raises for a person to read.

An error under ``SpectrumError`` means the input or the request cannot be served as given (a
missing plan, a malformed file, a setting out of range), not a bug: the command line prints it as
one line and exits 2, the app shows its message. Each subclass also keeps the built-in base it
had (``ValueError``, ``KeyError``, ...), so code that catches those keeps working.
"""

from __future__ import annotations


class SpectrumError(Exception):
    """An error whose message is meant for the user, printed without a traceback."""


class NotFoundError(SpectrumError, KeyError):
    """A workspace record (dataset, job, plan, decision) or an artifact that does not exist."""

    def __str__(self) -> str:  # KeyError's own str() quotes the message
        return str(self.args[0]) if self.args else ""


class ConfigError(SpectrumError, ValueError):
    """A setting that cannot be used (an unknown name, a value outside its choices)."""


class UsageError(SpectrumError, ValueError):
    """A command asked for something it cannot do as written."""
