"""The predictor, the scatter's summary and the re-emergence flag on hand-made values with known
answers; the realised (standardised) shift on hand-made encodings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from spectrum_core.metrics.agreement import agreement, realised_shifts
from spectrum_core.metrics.prediction import (
    GROUP_DECIDED,
    GROUP_HEAD,
    GROUP_SAMPLE,
    GROUP_SIGNIFICANT,
    MIN_SAMPLE,
    SURPRISE_AGAINST,
    SURPRISE_UNSEEN,
    PromptValues,
    predicted_shift,
    predicted_shifts,
    prediction_concepts,
    prediction_summary,
    reemerged,
    scatter_summary,
)
from spectrum_core.metrics.prevalence import Generations, compare_prevalence
from spectrum_core.reward.encoder import EncodedResponses


def test_predicted_shift_is_the_weighted_mean_of_signed_standardised_deltas():
    delta = np.array([2.0, 1.0, -1.0, 4.0])
    # weights 1, 3, 2, 0 (a dropped pair weighs nothing); the third pair flipped
    by_hand = (1 * 2.0 + 3 * 1.0 + 2 * 1.0 + 0) / (2.0 * 6)
    assert predicted_shift(delta, np.array([1, 3, 2, 0.0]), np.array([0, 0, 1, 0]), 2.0) == pytest.approx(by_hand)
    assert predicted_shift(delta, np.ones(4), np.zeros(4), 0.0) == 0.0  # never differs
    assert predicted_shift(delta[:0], np.ones(0), np.zeros(0), 1.0) == 0.0  # no training pair


def test_predicted_shifts_read_the_training_pairs_and_family_parts():
    pair_ids = pd.Index(["a", "b", "c", "d"])
    deltas = {"x": np.array([1.0, 1.0, -1.0, 3.0]), "y": np.array([0.0, 2.0, 0.0, -2.0])}
    training = pd.DataFrame(
        {"pair_id": ["b", "d", "zz"], "weight": [1.0, 1.0, 5.0], "flipped": [False, True, False]}
    )  # "zz" was not audited: left out
    concepts = [{"concept_id": "x"}, {"concept_id": "family:0", "parts": [("x", 1.0), ("y", 0.5)]}]
    out = predicted_shifts(concepts, deltas.__getitem__, pair_ids, training)
    sd_x = deltas["x"].std()
    assert out["x"] == pytest.approx((1.0 - 3.0) / 2 / sd_x)
    family = deltas["x"] + 0.5 * deltas["y"]  # [1, 2, -1, 2]
    assert out["family:0"] == pytest.approx((2.0 - 2.0) / 2 / family.std())


def _table(rows):
    return pd.DataFrame(
        rows, columns=["concept_id", "label", "predicted", "shift", "shift_low", "shift_high", "q_value"]
    )


def test_scatter_summary_counts_agreement_and_surprises():
    table = _table(
        [
            ("f1", "a", 0.4, 0.8, 0.5, 1.1, 0.001),  # moved up as predicted
            ("f2", "b", -0.2, -0.5, -0.7, -0.3, 0.01),  # moved down as predicted
            ("f3", "c", 0.1, -0.4, -0.6, -0.2, 0.02),  # moved against the prediction
            ("f4", "d", 0.01, 0.3, 0.1, 0.5, 0.6),  # moved while the audit saw nothing
            ("f5", "e", 0.05, 0.02, -0.2, 0.24, 0.3),  # did not move
        ]
    )
    summary = scatter_summary(table, alpha=0.05)
    assert summary["concepts"] == 5 and summary["moved"] == 4
    # over every concept, moved or not: f1, f2, f4 and f5 agree in sign; f3 does not
    assert summary["sign_agreement"] == pytest.approx(4 / 5)
    r = np.corrcoef(table["predicted"], table["shift"])[0, 1]
    assert summary["r2"] == pytest.approx(r * abs(r))
    assert summary["spearman"] == pytest.approx(pd.Series(table["predicted"]).corr(table["shift"], method="spearman"))
    assert {(s["concept_id"], s["why"]) for s in summary["surprises"]} == {
        ("f3", SURPRISE_AGAINST),
        ("f4", SURPRISE_UNSEEN),
    }


def test_prediction_summary_reports_each_group_of_concepts_on_its_own():
    """Heads realised as predicted, a sampled group whose realised shifts are unrelated to its
    small predictions: the heads' figures say so on their own, the figure over all sits between."""
    rng = np.random.default_rng(0)
    heads = np.array([1.0, -0.8, 0.6, -0.5, 0.9, -0.7])
    sample = 0.05 * rng.normal(size=6)
    predicted = np.concatenate([heads, sample])
    base = rng.normal(size=(40, 12))
    tuned = base + np.concatenate([heads, 0.5 * rng.normal(size=6)]) + 0.1 * rng.normal(size=(40, 12))
    table = pd.DataFrame(
        {
            "concept_id": [f"c{i}" for i in range(12)],
            "label": "x",
            "group": [GROUP_HEAD] * 6 + [GROUP_SAMPLE] * 6,
            "predicted": predicted,
            "predicted_length": 0.0,
            "predicted_words": rng.normal(size=12),
            "predicted_without_length": predicted,
            "shift": realised_shifts(base, tuned),
            "shift_low": -9.0,
            "shift_high": 9.0,
            "q_value": [0.001] * 6 + [0.5] * 6,
        }
    )
    lengths = np.full(40, 10.0)
    summary = prediction_summary(table, PromptValues(base, tuned, lengths, lengths), alpha=0.05, seed=0)
    head = summary["by_group"][GROUP_HEAD]
    assert head["concepts"] == 6 and head["sign_agreement"] == 1.0 and head["sign_agreement_low"] == 1.0
    assert head["r2"] == pytest.approx(agreement(heads, table["shift"][:6])["r2"]) and head["r2"] > 0.9
    assert summary["by_group"][GROUP_SAMPLE]["concepts"] == 6
    assert summary["sign_agreement"] == pytest.approx(agreement(predicted, table["shift"])["sign_agreement"])
    assert summary["sign_agreement"] < head["sign_agreement"]


def test_scatter_summary_with_too_few_concepts_has_no_fit():
    summary = scatter_summary(_table([("f1", "a", 0.4, 0.8, 0.5, 1.1, 0.001)]), alpha=0.05)
    assert summary["r2"] is None and summary["spearman"] is None and summary["sign_agreement"] == 1.0


def test_reemerged_needs_a_held_point_before_a_risen_one():
    curve = pd.DataFrame(
        {
            "concept_id": ["back"] * 3 + ["always"] * 3 + ["held"] * 3 + ["early"] * 3,
            "position": [0, 1, 2] * 4,
            "rose": [False, False, True, True, True, True, False, False, False, True, False, False],
        }
    )
    assert reemerged(curve) == ["back"]  # "always" rose from the start: flagged elsewhere, not a return


def _generations(values: np.ndarray) -> Generations:
    n = len(values)
    features = sp.csr_matrix(np.column_stack([values, np.zeros(n)]))
    encoded = EncodedResponses(features=features, pooled=np.zeros((n, 4)), lengths=np.full(n, 10))
    return Generations([[{"role": "user", "content": f"q{i}"}] for i in range(n)], ["r"] * n, encoded)


def test_realised_shift_is_the_paired_change_in_pooled_standard_deviations():
    base = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    tuned = base + np.array([1.0, 2.0, 1.0, 2.0, 1.0, 2.0])
    table = compare_prevalence(_generations(base), _generations(tuned), [{"concept_id": "token:0"}], {})
    row = table.iloc[0]
    scale = np.sqrt((base.var(ddof=1) + tuned.var(ddof=1)) / 2)
    assert row["difference"] == pytest.approx(1.5)
    assert row["scale"] == pytest.approx(scale)
    assert row["shift"] == pytest.approx(1.5 / scale)
    assert row["shift_low"] == pytest.approx(row["difference_low"] / scale) and row["shift_low"] > 0
    assert row["rose"]


class _View:
    """What ``prediction_concepts`` reads of an audit: its concept table, α, heads' sources and
    families' members."""

    def __init__(self, concepts: pd.DataFrame, sources: dict[str, str]):
        self.concepts = concepts.set_index("concept_id", drop=False)
        self.report = type("Report", (), {"fdr_threshold": 0.05})()
        self.sources = sources

    def head_source(self, head_id: str) -> str:
        return self.sources[head_id]

    def family_members(self, concept_id: str) -> dict[str, float]:
        source = self.sources.get(concept_id, concept_id)
        return {f"token:{source.split(':')[1]}": 1.0}


def _audit_table(n_heads: int) -> pd.DataFrame:
    """``n_heads`` heads standing for families 0.., 4 more significant families, 12 non-significant."""
    rows = [(f"head:{i}", "head", 0.001, i + 1) for i in range(n_heads)]
    rows += [(f"family:{i}", "family", 0.01, 10 + i) for i in range(n_heads + 4)]
    rows += [(f"family:{i}", "family", 0.5, 50 + i) for i in range(n_heads + 4, n_heads + 16)]
    frame = pd.DataFrame(rows, columns=["concept_id", "kind", "q_value", "rank"])
    return frame.assign(label=frame["concept_id"], effect_size=0.1)


def test_prediction_concepts_are_every_head_and_as_many_sampled_non_significant_families():
    view = _View(_audit_table(3), {f"head:{i}": f"family:{i}" for i in range(3)})
    decided = [{"concept_id": "family:5", "label": "x", "action": "suppress", "parts": [("token:5", 1.0)]}]
    concepts = prediction_concepts(view, decided, seed=0)
    groups = pd.Series([c["group"] for c in concepts]).value_counts().to_dict()
    assert groups == {GROUP_HEAD: 3, GROUP_SAMPLE: 3, GROUP_DECIDED: 1}
    sampled = [c for c in concepts if c["group"] == GROUP_SAMPLE]
    assert all(view.concepts.at[c["concept_id"], "q_value"] >= 0.05 for c in sampled)
    assert [c["parts"] for c in concepts[:3]] == [[("token:0", 1.0)], [("token:1", 1.0)], [("token:2", 1.0)]]
    # seeded: the same sample again, another with another seed
    again = [c["concept_id"] for c in prediction_concepts(view, decided, seed=0)]
    assert again == [c["concept_id"] for c in concepts]
    others = {c["concept_id"] for c in prediction_concepts(view, decided, seed=1) if c["group"] == GROUP_SAMPLE}
    assert others != {c["concept_id"] for c in sampled}


def test_without_heads_the_significant_families_are_predicted_and_an_empty_audit_gets_a_sample():
    view = _View(_audit_table(0), {})
    groups = pd.Series([c["group"] for c in prediction_concepts(view, [], seed=0)]).value_counts().to_dict()
    assert groups == {GROUP_SIGNIFICANT: 4, GROUP_SAMPLE: 4}
    nothing = _audit_table(0).assign(q_value=0.9)  # shuffled preferences: nothing significant
    concepts = prediction_concepts(_View(nothing, {}), [], seed=0)
    assert len(concepts) == min(MIN_SAMPLE, 16) and {c["group"] for c in concepts} == {GROUP_SAMPLE}
