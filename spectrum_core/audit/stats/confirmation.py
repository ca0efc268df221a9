"""Discover, then confirm: hypotheses chosen on one part of the pairs are tested on the other.

Everything in the audit that looks at the preference label (statistics, q-values, ranking, the
choice of family candidates, family construction) sees the **discovery** split only. The
**confirmation** split, whole prompts held out (every pair of a prompt on one side, so two
answers to one question never land on both), is used once: the hypotheses carried to it, the
families (and probes) significant on discovery in rank order, are tested there with the same sign
test, corrected over the carried ones only. A hypothesis is **confirmed** when its confirmation
q-value is under the threshold and it leans the way discovery said.

Members were chosen for leaning one way on the discovery pairs, so their discovery statistics are
optimistic by construction; the confirmation statistics are not, because those pairs took no part
in choosing them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ...data.split import assign_split
from .length_control import LENGTH_PROBE, LengthNull, lean_direction, length_lr_pvalue, length_null, score_pvalues
from .pairs import randomised_order
from .power import MAX_PAIRS, detectable_share, pairs_needed
from .sign_test import adjust_pvalues, sign_test

# At most this many hypotheses are carried to confirmation: the head of the review queue. Each one
# carried divides the bar of the first confirmation (α / m), so carrying every significant concept
# of a large audit would leave the held-out pairs nothing to confirm; a researcher reviews a few
# dozen, not thousands (WIMHF and HypotheSAEs hand over 5 to 30).
MAX_CARRIED = 50
# Kinds carried: families summarise the SAE concepts (their members are not tested twice), probes
# are named hypotheses of their own. Audits without families carry single SAE concepts instead.
CARRIED_KINDS = ("family", "probe")
HEAD_KIND = "head"  # heads (heads.py) are carried whole and corrected among themselves
CONFIRMATION_COLUMNS = {
    "carried": False,
    "confirm_n_differ": 0,
    "confirm_share_chosen_more": np.nan,
    "confirm_p_sign": np.nan,
    "confirm_p": np.nan,
    "confirm_q": np.nan,
    "confirmed": False,
}


def discovery_split(prompts: list, confirmation_share: float, seed: int) -> np.ndarray:
    """True for the pairs that discover, False for the confirmation pairs: a seeded share of the
    prompts, grouped (every pair of a prompt on one side). A prompt is a string or a list of
    messages (as the pair table holds it, or as parquet reads it back)."""
    labels = assign_split([prompt_key(p) for p in prompts], held_out_fraction=confirmation_share, seed=seed)
    return np.array([label == "train" for label in labels], dtype=bool)


def prompt_key(prompt) -> str:
    """A prompt as one string: itself, or its messages as canonical JSON."""
    if isinstance(prompt, str):
        return prompt
    return json.dumps([dict(message) for message in prompt], sort_keys=True, ensure_ascii=False)


def carried(concepts: pd.DataFrame, alpha: float, max_carried: int = MAX_CARRIED) -> list[pd.Index]:
    """The groups of rows carried to confirmation, each corrected on its own: the heads (the review
    queue, every one of them), then the rest: significant on discovery, of a carried kind,
    best-ranked first, at most ``max_carried``."""
    heads = concepts.index[concepts["kind"] == HEAD_KIND]
    kinds = CARRIED_KINDS if (concepts["kind"] == "family").any() else ("sae", "probe")
    candidates = concepts[concepts["kind"].isin(kinds) & (concepts["q_value"] < alpha)]
    rest = candidates.sort_values("rank", kind="stable").index[:max_carried]
    return [group for group in (heads, rest) if len(group)]


def confirm(
    concepts: pd.DataFrame,
    mode_data: dict[str, tuple[sp.csr_matrix, sp.csr_matrix]],
    confirmation: np.ndarray,
    alpha: float,
    correction: str = "bh",
    max_carried: int = MAX_CARRIED,
    lengths: tuple[np.ndarray, np.ndarray] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """``concepts`` with the confirmation columns: ``carried``; on the confirmation pairs the sign
    test (``confirm_n_differ``, ``confirm_share_chosen_more``, ``confirm_p_sign``) and the primary,
    length-aware score test (``confirm_p``, against a length-only model fitted on those pairs from
    ``lengths``; the audit's randomised pair order from ``seed``); ``confirm_q`` (``correction`` of
    confirm_p within each carried group) and ``confirmed``. ``mode_data``: mode → (chosen,
    rejected), pairs × concepts; ``confirmation``: the mask of the confirmation pairs. Only the
    carried concepts' columns are read."""
    table = concepts.assign(**CONFIRMATION_COLUMNS)
    groups = carried(concepts, alpha, max_carried)
    if not groups:
        return table.astype({"carried": bool, "confirmed": bool, "confirm_n_differ": np.int64})
    n_pairs = next(iter(mode_data.values()))[0].shape[0]
    order = randomised_order(n_pairs, seed)
    if lengths is None:  # no lengths given: the score test against "no preference" alone
        lengths = (np.zeros(n_pairs), np.zeros(n_pairs))
    signs, null = order[confirmation], length_null(*lengths, order, rows=confirmation)
    # A head standing for length is tested as discovery tested it: does length predict at all?
    chosen_len, rejected_len = (np.asarray(side, dtype=np.float64)[confirmation] for side in lengths)
    length_p = length_lr_pvalue(chosen_len, rejected_len, signs)
    for rows in groups:
        n_pos, n_neg, p_sign, score, p = _held_out_tests(concepts.loc[rows], mode_data, confirmation, signs, null)
        differ = n_pos + n_neg
        share = np.divide(n_pos, differ, out=np.full(len(rows), np.nan), where=differ > 0)
        # the same direction by the same test as on discovery (``direction``: the score's sign)
        same_way = lean_direction(score, p, share) == concepts.loc[rows, "direction"].to_numpy()
        if "source" in concepts.columns:
            p = np.where((concepts.loc[rows, "source"] == LENGTH_PROBE).to_numpy(), length_p, p)
        q = adjust_pvalues(p, method=correction)
        table.loc[rows, "carried"] = True
        table.loc[rows, "confirm_n_differ"] = differ
        table.loc[rows, "confirm_share_chosen_more"] = share
        table.loc[rows, "confirm_p_sign"] = p_sign
        table.loc[rows, "confirm_p"] = p
        table.loc[rows, "confirm_q"] = q
        table.loc[rows, "confirmed"] = (q < alpha) & same_way
    return table.astype({"carried": bool, "confirmed": bool, "confirm_n_differ": np.int64})


def _held_out_tests(rows: pd.DataFrame, mode_data, confirmation: np.ndarray, signs: np.ndarray, null: LengthNull):
    """Each row's Δ on the confirmation pairs: the sign test (n chosen more, n rejected more, p)
    and the primary, length-aware score test against ``null`` (its score and p)."""
    n_pos = np.zeros(len(rows), dtype=np.int64)
    n_neg = np.zeros(len(rows), dtype=np.int64)
    p_sign, score, p = np.ones(len(rows)), np.zeros(len(rows)), np.ones(len(rows))
    for mode in rows["mode"].unique():
        at = np.flatnonzero(rows["mode"].to_numpy() == mode)
        features = rows["feature"].to_numpy(dtype=np.int64)[at]
        chosen, rejected = (side[confirmation][:, features] for side in mode_data[mode])
        n_pos[at], n_neg[at], p_sign[at] = sign_test(chosen - rejected)
        score[at], p[at] = score_pvalues(sp.csc_matrix(chosen - rejected), signs, null)
    return n_pos, n_neg, p_sign, score, p


@dataclass
class ConfirmationSummary:
    n_discovery: int  # pairs
    n_confirmation: int
    share: float  # the confirmation share of prompts asked for
    alpha: float
    n_carried: int
    n_confirmed: int
    per_test_alpha: float  # α / carried: the bar of the first confirmation
    detectable_share: float | None  # the least lean of a hypothesis differing in every confirmation pair
    strongest: str | None  # the carried hypothesis with the smallest confirmation p-value
    strongest_pairs_needed: int | None  # confirmation pairs it would need at its discovery lean and rate
    kind: str | None = HEAD_KIND  # what is counted: the heads (None: every carried row)

    def sentence(self) -> str:
        """What the confirmation split says, in one sentence (CLI, Audit page, report)."""
        held = f"the {self.n_confirmation:,} confirmation pairs (held-out prompts)"
        what = "heads" if self.kind == HEAD_KIND else "hypotheses"
        if not self.n_carried:
            return (
                f"Nothing to confirm: no {what[:-1]} was found on the {self.n_discovery:,} discovery pairs, so "
                f"none was tested on {held}."
            )
        text = (
            f"{self.n_confirmed} of the {self.n_carried} {what} found on the {self.n_discovery:,} discovery "
            f"pairs are confirmed on {held} (q < {self.alpha:g} over the {self.n_carried} carried, same direction)"
        )
        if self.detectable_share is None:
            needed = (
                f"roughly {self.strongest_pairs_needed:,}"
                if self.strongest_pairs_needed is not None
                else f"more than {MAX_PAIRS:,}"
            )
            return (
                f"{text}; the confirmation split is too small to confirm anything at this level: even a "
                f"hypothesis that differs in every pair, all one way, would not pass, and the strongest, "
                f"{self.strongest}, would need {needed} confirmation pairs."
            )
        return text + "."


def confirmation_summary(
    concepts: pd.DataFrame,
    n_discovery: int,
    n_confirmation: int,
    share: float,
    alpha: float,
    kind: str | None = HEAD_KIND,
) -> ConfirmationSummary:
    """What the confirmation split says about the carried rows of ``kind`` (the heads: the review
    queue; None: every carried row)."""
    carried_rows = concepts["carried"].to_numpy(dtype=bool)
    rows = concepts[carried_rows & ((concepts["kind"] == kind).to_numpy() if kind else True)]
    m = max(1, len(rows))
    per_test = alpha / m
    strongest = needed = None
    if len(rows):
        best = rows.sort_values(["confirm_p", "rank"], kind="stable").iloc[0]
        strongest = str(best["concept_id"])
        differing = pairs_needed(float(best["share_chosen_more"]), per_test)
        rate = float(best["n_differ"]) / max(n_discovery, 1)  # the share of pairs it differs in
        if differing is not None and rate > 0:
            needed = int(np.ceil(differing / rate))
    return ConfirmationSummary(
        n_discovery=n_discovery,
        n_confirmation=n_confirmation,
        share=share,
        alpha=alpha,
        n_carried=len(rows),
        n_confirmed=int(rows["confirmed"].sum()),
        per_test_alpha=per_test,
        detectable_share=detectable_share(n_confirmation, per_test) if n_confirmation else None,
        strongest=strongest,
        strongest_pairs_needed=needed,
        kind=kind,
    )


def confirmed_first(concepts: pd.DataFrame) -> pd.DataFrame:
    """Heads, then families, then single concepts, each re-ranked with the confirmed ones first
    (in their discovery order), then the rest as discovery ranked them."""
    kind = concepts["kind"]
    blocks = []
    for block in (concepts[kind == HEAD_KIND], concepts[kind == "family"], concepts[~kind.isin([HEAD_KIND, "family"])]):
        order = np.lexsort((block["rank"].to_numpy(), ~block["confirmed"].to_numpy(dtype=bool)))
        block = block.iloc[order].copy()
        block["rank"] = np.arange(1, len(block) + 1)
        blocks.append(block)
    return pd.concat(blocks, ignore_index=True)
