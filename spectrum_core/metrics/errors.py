"""The evaluation's input errors (importable without loading the metrics' heavy dependencies)."""

from ..errors import SpectrumError


class EvaluationError(SpectrumError, ValueError):
    """An evaluation that cannot run as asked (unknown run, unfinished audit, ...)."""
