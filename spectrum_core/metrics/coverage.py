"""Valid output coverage: of many samples for a prompt with a known valid set, how many are
valid, how many distinct valid outputs there are, and how much of the valid set they cover."""

from __future__ import annotations

import re

_BRACED = re.compile(r"\{[^{}]*\}")


def normalise_output(text: str) -> str:
    """Case, surrounding space and punctuation folded; the first ``{...}`` span when there is one
    (the diffuse-distribution prompts ask for the answer between braces)."""
    text = " ".join(text.split()).casefold()
    braced = _BRACED.search(text)
    if braced:
        text = braced.group(0)
    return text.strip(" .!\"'")


def coverage_metrics(samples: list[str], valid: list[str]) -> dict:
    """``valid_share``: valid samples / samples; ``yield``: distinct valid outputs; ``coverage``:
    distinct valid outputs / size of the valid set; ``uniqueness``: distinct valid / valid samples."""
    valid_set = {normalise_output(v) for v in valid}
    normalised = [normalise_output(s) for s in samples]
    hits = [s for s in normalised if s in valid_set]
    distinct = len(set(hits))
    return {
        "samples": len(samples),
        "valid_share": len(hits) / len(samples) if samples else 0.0,
        "yield": distinct,
        "coverage": distinct / len(valid_set) if valid_set else 0.0,
        "uniqueness": distinct / len(hits) if hits else 0.0,
    }
