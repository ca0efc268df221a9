"""Text normalisation shared by the probes and the offline labeller."""

from __future__ import annotations

# Typographic apostrophes (right and left single quote, modifier letter, prime, fullwidth) become
# ASCII, so "I can\u2019t" and "I can't" are one word to every pattern and n-gram (HH-RLHF uses the
# typographic one).
APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'", "\uff07": "'"})


def straighten_apostrophes(text: str) -> str:
    return text.translate(APOSTROPHES)
