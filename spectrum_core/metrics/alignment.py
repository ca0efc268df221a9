"""Distributional alignment: the model's distribution over a question's options, by teacher
forcing each option as the answer and renormalising, against the human distribution.

Polis: the vote (agree / disagree / pass) on a statement, against all participants and against
each opinion group (the model gives one distribution; the groups show whose view it is closest
to). AmbiEnt: the NLI label (entailment / neutral / contradiction) against the nine annotators.
Also the probability mass the model puts on the options at all (before renormalising).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..tasks.families import ambient_description, polis_description
from ..tasks.spectrum_format import end_of_turn, sample_prompt
from .divergence import as_distribution, compare_distributions
from .scoring import continuation_logprobs

POLIS_OPTIONS = ["agree", "disagree", "pass"]
AMBIENT_OPTIONS = ["entailment", "neutral", "contradiction"]
MIN_GROUP_VOTES = 5  # opinion groups with fewer votes on a statement are too noisy to compare


def option_distributions(
    model, tokenizer, descriptions: list[str], options: list[str], batch_size: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """(renormalised probabilities (n, k), mass on the options before renormalising (n,)): each
    option is scored as the first output of a Spectrum task with that description."""
    prefixes = [
        tokenizer.apply_chat_template(sample_prompt(d), tokenize=False, add_generation_prompt=True)
        for d in descriptions
    ]
    end = end_of_turn(tokenizer)
    logp = continuation_logprobs(
        model,
        tokenizer,
        [p for p in prefixes for _ in options],
        [o + end for _ in prefixes for o in options],
        batch_size,
    ).reshape(len(prefixes), -1)
    mass = np.exp(logp).sum(axis=1)
    probs = np.exp(logp - logp.max(axis=1, keepdims=True))
    return probs / probs.sum(axis=1, keepdims=True), mass


def _row(
    source: str, item: str, group: str, model_dist: np.ndarray, human: np.ndarray, mass: float, n_votes: float
) -> dict:
    return {
        "source": source,
        "item": item,
        "group": group,
        "votes": n_votes,
        "mass": float(mass),
        **compare_distributions(model_dist, human),
        "model_dist": model_dist.round(4).tolist(),
        "human_dist": human.round(4).tolist(),
    }


def polis_alignment(model, tokenizer, rows: list[dict], batch_size: int = 8) -> pd.DataFrame:
    probs, mass = option_distributions(
        model, tokenizer, [polis_description(r) for r in rows], POLIS_OPTIONS, batch_size
    )
    records = []
    for row, p, m in zip(rows, probs, mass):
        item = f"{row['conversation']}#{row['comment_id']}"
        records.append(_row("polis", item, "all", p, as_distribution(row["dist"], POLIS_OPTIONS), m, row["n_votes"]))
        for group, counts in sorted((row.get("by_opinion_group") or {}).items()):
            if group == "unclustered" or sum(counts.values()) < MIN_GROUP_VOTES:
                continue
            records.append(
                _row(
                    "polis", item, f"group {group}", p, as_distribution(counts, POLIS_OPTIONS), m, sum(counts.values())
                )
            )
    return pd.DataFrame(records)


def ambient_alignment(model, tokenizer, rows: list[dict], batch_size: int = 8) -> pd.DataFrame:
    probs, mass = option_distributions(
        model, tokenizer, [ambient_description(r) for r in rows], AMBIENT_OPTIONS, batch_size
    )
    return pd.DataFrame(
        [
            _row(
                "ambient",
                str(row["id"]),
                "all",
                p,
                as_distribution(row["q0_label_counts"], AMBIENT_OPTIONS),
                m,
                sum(row["q0_label_counts"].values()),
            )
            for row, p, m in zip(rows, probs, mass)
        ]
    )


def summarise(table: pd.DataFrame) -> dict:
    """Means per source over items (all participants), and for Polis the JS to the closest and the
    farthest opinion group of each statement."""
    summary = {}
    for source, frame in table.groupby("source"):
        overall = frame[frame["group"] == "all"]
        entry = {
            "items": int(len(overall)),
            **{k: float(overall[k].mean()) for k in ("js", "kl_human_model", "kl_model_human", "mode_match", "mass")},
            "log10_mass": float(np.log10(overall["mass"].clip(lower=1e-300)).mean()),
        }
        groups = frame[frame["group"] != "all"]
        if len(groups):
            per_item = groups.groupby("item")["js"]
            entry["js_closest_group"] = float(per_item.min().mean())
            entry["js_farthest_group"] = float(per_item.max().mean())
        summary[source] = entry
    return summary
