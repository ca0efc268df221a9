"""What an audit of this size could have found: the verdict sentence and the sign test's power.

An audit with no concept under the FDR threshold is not evidence that the data teach nothing; it
may be too small. This module says which, in numbers a researcher can act on: the smallest effect
the audit's pairs could detect, and roughly how many pairs the strongest candidate would need.

The effect is the one the sign test measures: among the pairs where a concept differs, the share
in which the chosen response has more of it (0.5 = no preference). The bar a single concept must
clear is the Benjamini–Hochberg threshold for the first discovery among ``m`` tested concepts,
p ≤ α / m (Bonferroni's bar is the same for one discovery), so the numbers hold for either
correction. Power is computed exactly from the binomial distribution, not a normal approximation:
audits with few pairs are exactly where the approximation fails.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

POWER = 0.8  # the conventional power target: an effect of this size is found 4 times out of 5
MAX_PAIRS = 10_000_000  # past this many pairs, "more than" is the honest answer
BISECTION_STEPS = 40  # the detectable share to ~1e-12


def critical_count(n: int, alpha: float) -> int | None:
    """The smallest count k of one sign out of n such that the exact two-sided sign test rejects
    at level ``alpha`` (2·P(X ≥ k) ≤ alpha under p = 1/2); None when not even n out of n does."""
    if n <= 0:
        return None
    k = max(int(sps.binom.isf(alpha / 2, n, 0.5)) + 1, n // 2 + 1)
    while k <= n and 2.0 * sps.binom.sf(k - 1, n, 0.5) > alpha:  # guards isf's floating-point edge
        k += 1
    return k if k <= n else None


def sign_test_power(n: int, share: float, alpha: float) -> float:
    """The probability that the sign test rejects at ``alpha`` when a concept differs in n pairs
    and goes the chosen way in ``share`` of them (the other tail counts too)."""
    k = critical_count(n, alpha)
    if k is None:
        return 0.0
    return float(sps.binom.sf(k - 1, n, share) + sps.binom.cdf(n - k, n, share))


def detectable_share(n: int, alpha: float, power: float = POWER) -> float | None:
    """The smallest share (> 0.5) of n differing pairs going one way that the sign test detects
    with the given power at ``alpha``; None when n pairs cannot reach ``alpha`` at all."""
    if sign_test_power(n, 1.0, alpha) < power:
        return None
    low, high = 0.5, 1.0
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        low, high = (middle, high) if sign_test_power(n, middle, alpha) < power else (low, middle)
    return high


def pairs_needed(share: float, alpha: float, power: float = POWER) -> int | None:
    """About the fewest differing pairs at which an effect of ``share`` is detected with the given
    power (None past ``MAX_PAIRS``), by doubling then bisection. Power is not quite monotone in n
    for a discrete test (it saw-tooths by a few points), so this is a size to plan with, not an
    exact minimum; ``roughly`` in the verdict says as much."""
    if not 0 <= share <= 1 or share == 0.5:
        return None
    effect = max(share, 1 - share)
    if sign_test_power(MAX_PAIRS, effect, alpha) < power:
        return None
    low, high = 1, 1
    while sign_test_power(high, effect, alpha) < power:
        low, high = high, high * 2
    while low < high:
        middle = (low + high) // 2
        low, high = (middle + 1, high) if sign_test_power(middle, effect, alpha) < power else (low, middle)
    return high


@dataclass
class PowerSummary:
    n_pairs: int
    n_tested: int  # concepts tested (m)
    alpha: float  # the FDR threshold
    n_significant: int
    per_test_alpha: float  # α / m: the bar for the first discovery
    detectable_share_all_pairs: float | None  # a concept that differs in every pair
    median_differing: int  # pairs where a typical concept differs
    detectable_share_typical: float | None
    strongest: str | None  # the candidate with the smallest sign-test p-value
    strongest_share: float | None
    strongest_differing: int | None
    strongest_pairs_needed: int | None  # pairs of data (not only differing ones) it would need

    def to_dict(self) -> dict:
        return asdict(self)


def power_summary(concepts: pd.DataFrame, n_pairs: int, alpha: float) -> PowerSummary:
    """From the concept table (``p_sign``, ``q_value``, ``n_differ``, ``share_chosen_more``)."""
    tested = concepts[concepts["p_sign"].notna()]
    m = max(1, len(tested))
    per_test = alpha / m
    differing = tested["n_differ"].to_numpy(dtype=np.int64)
    median = int(np.median(differing[differing > 0])) if (differing > 0).any() else 0
    strongest = tested.sort_values(["p_sign", "n_differ"], ascending=[True, False]).head(1)
    name = share = n_differ = needed = None
    if len(strongest) and strongest["n_differ"].iat[0] > 0:
        row = strongest.iloc[0]
        name, share, n_differ = str(row["concept_id"]), float(row["share_chosen_more"]), int(row["n_differ"])
        differing_needed = pairs_needed(share, per_test)
        if differing_needed is not None:
            needed = int(math.ceil(differing_needed * n_pairs / n_differ))  # at the rate it differs here
    return PowerSummary(
        n_pairs=n_pairs,
        n_tested=m,
        alpha=alpha,
        n_significant=int((tested["q_value"] < alpha).sum()),
        per_test_alpha=per_test,
        detectable_share_all_pairs=detectable_share(n_pairs, per_test),
        median_differing=median,
        detectable_share_typical=detectable_share(median, per_test) if median else None,
        strongest=name,
        strongest_share=share,
        strongest_differing=n_differ,
        strongest_pairs_needed=needed,
    )


def _share(value: float | None) -> str:
    return "no share (not even all of them)" if value is None else f"{value:.0%}"


def verdict(summary: PowerSummary) -> str:
    """One plain sentence: how many concepts pass, or why none could and what it would take."""
    s = summary
    if s.n_significant:
        return (
            f"{s.n_significant:,} of {s.n_tested:,} concepts pass the FDR threshold (q < {s.alpha:g}) "
            f"in these {s.n_pairs:,} pairs; they rank first."
        )
    sentence = (
        f"No concept passes the FDR threshold (q < {s.alpha:g}) in these {s.n_pairs:,} pairs: across "
        f"{s.n_tested:,} concepts, one that differs in every pair would have to go one way in at least "
        f"{_share(s.detectable_share_all_pairs)} of them to be found 4 times out of 5, and a typical one "
        f"(differing in {s.median_differing:,} pairs) in at least {_share(s.detectable_share_typical)}"
    )
    if s.strongest is None:
        return sentence + "."
    side = "chosen" if (s.strongest_share or 0.5) >= 0.5 else "rejected"
    effect = max(s.strongest_share or 0.5, 1 - (s.strongest_share or 0.5))
    needed = (
        f"roughly {s.strongest_pairs_needed:,} pairs"
        if s.strongest_pairs_needed is not None
        else f"more than {MAX_PAIRS:,} pairs"
    )
    return (
        f"{sentence}; the strongest candidate, {s.strongest} ({side} has more in {effect:.0%} of the "
        f"{s.strongest_differing:,} pairs where it differs), would need {needed} to be found at that rate."
    )
