"""The evaluation quarter of the bundled benchmark items: a fixed quarter of every bundled source's
items (Polis statements, AmbiEnt items, diffuse prompts, HaluEval questions), chosen by a hash of
the item rather than by seed, so no seed or run ever trains on what the evaluation asks.
``split="eval"`` draws only from that quarter, ``split="train"`` never does."""

from __future__ import annotations

import hashlib

EVAL_SHARE = 0.25
SPLITS = ("train", "eval")


def is_eval_item(key: str) -> bool:
    """Whether a bundled item belongs to the evaluation quarter (stable across runs and seeds)."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF < EVAL_SHARE


def in_split(key: str, split: str) -> bool:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return is_eval_item(key) == (split == "eval")
