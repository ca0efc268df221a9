"""Preference data: read any accepted file and schema into one table of pairs, with a report."""

from .loader import DEFAULT_MAX_TEXT_CHARS, PreferenceDataset, describe_pair, load_preferences, make_pair_id
from .readers import FORMATS
from .report import DataLoadError, LoadReport, Rejection
from .schemas import SCHEMAS, SchemaError
from .split import assign_split

__all__ = [
    "DEFAULT_MAX_TEXT_CHARS",
    "FORMATS",
    "SCHEMAS",
    "DataLoadError",
    "LoadReport",
    "PreferenceDataset",
    "Rejection",
    "SchemaError",
    "assign_split",
    "describe_pair",
    "load_preferences",
    "make_pair_id",
]
