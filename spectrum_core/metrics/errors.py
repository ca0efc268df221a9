"""The evaluation's input errors (importable without loading the metrics' heavy dependencies)."""


class EvaluationError(ValueError):
    """An evaluation that cannot run as asked (unknown run, unfinished audit, ...)."""
