"""Errors an audit reports as a message, not a traceback: bad input, not a bug."""

from ..errors import SpectrumError


class AuditInputError(SpectrumError, ValueError):
    """The audit cannot run with this input (too few pairs, a mismatched SAE, a bad layer)."""
