"""Interpretable probes: exact counts on hand-written responses, the known HH-RLHF preference for
refusing and deflecting, and the correlation helpers against numpy."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from spectrum_core.audit.probes import (
    PROBES,
    Probe,
    compute_probes,
    nearest_probes,
    probe_correlations,
    probe_deltas,
)
from spectrum_core.data import load_preferences
from tests.conftest import LLAMAFACTORY_FILE

EXPECTED_PROBES = [
    "length_tokens",
    "markdown_list",
    "markdown_header",
    "markdown_bold",
    "code_block",
    "inline_code",
    "refusal",
    "deflection",
    "apology",
    "hedging",
    "praise_of_user",
    "sycophantic_opener",
    "question_back",
    "exclamation",
    "emoji",
    "second_person",
]


def measure(name: str, text: str) -> float:
    return PROBES[name].measure(text)


def test_registry_has_the_probes_in_order():
    assert list(PROBES) == EXPECTED_PROBES
    for name, probe in PROBES.items():
        assert isinstance(probe, Probe)
        assert probe.name == name
        assert probe.description
        assert isinstance(probe.measure("Some text."), float)


# Each case: probe, text, exact expected value. Every probe has positives and negatives.
CASES = [
    # length_tokens fallback: word runs plus each punctuation mark
    ("length_tokens", "Hello, world! It's me.", 9),  # Hello , world ! It ' s me .
    ("length_tokens", "", 0),
    # markdown_list
    ("markdown_list", "Steps:\n- one\n* two\n+ three\n1. four\n2) five\n  - nested\n", 6),
    ("markdown_list", "-not a list\n*emphasis* here\n1.5 is a number\n**bold** start\n2020. A year", 0),
    # markdown_header
    ("markdown_header", "# Title\n## Sub\n###### Six\nText", 3),
    ("markdown_header", "#hashtag\n####### seven\nNot # a header\n```\n# comment in code\n```", 0),
    # markdown_bold
    ("markdown_bold", "This is **bold** and __also bold__ and **more**.", 3),
    ("markdown_bold", "2 ** 3 = 8, a ** b, snake__case__name, *italic*", 0),
    # code_block: fenced blocks only; an unclosed fence counts as one
    ("code_block", "Here:\n```python\nprint(1)\n```\nand\n~~~\nx = 2\n~~~\n", 2),
    ("code_block", "```\nprint(1)\n", 1),
    ("code_block", "Use ```inline``` and `x`, no fences.", 0),
    # inline_code: spans outside fenced blocks
    ("inline_code", "Use ```inline``` and `x`, no fences.", 2),
    ("inline_code", "Call `foo()` then `bar`.", 2),
    ("inline_code", "```\n`not inline`\n```\nBut `this` is.", 1),
    ("inline_code", "No code here, just a lone ` backtick.", 0),
    # refusal
    ("refusal", "I'm sorry, but I can't help with that. As an AI, I must decline.", 4),
    # typographic apostrophes, as in HH-RLHF
    ("refusal", "I can\u2019t assist with that. That\u2019s illegal.", 2),
    ("refusal", "No, I\u2019m not comfortable with that.", 1),
    ("refusal", "I don't think you should do that. It is not appropriate.", 2),
    (
        "refusal",
        "Sure, here is how to bake bread. I can't wait for you to try it! "
        "I can't help but smile. The harmful effects of smoking are well known.",
        0,
    ),
    # deflection
    ("deflection", "I'm not sure what you mean. Why do you want to know? Let's talk about something else.", 3),
    ("deflection", "I don\u2019t understand. Can you explain?", 2),
    ("deflection", "Paris is the capital of France. You can take the train there.", 0),
    # apology
    ("apology", "Sorry! I apologize for the confusion. My apologies.", 3),
    ("apology", "You should apologize to her. I am not sorrowful.", 0),
    # hedging ("may" the modal counts, "May" the month does not)
    ("hedging", "It might rain; perhaps it may snow. I think it depends.", 5),
    ("hedging", "May I suggest tea? It probably helps.", 2),
    ("hedging", "We met in May, and again on May 5. May 2020 was warm.", 0),
    ("hedging", "The answer is 4. Water boils at 100 degrees Celsius.", 0),
    # praise_of_user
    ("praise_of_user", "Great question! You're absolutely right, and what a wonderful idea.", 3),
    ("praise_of_user", "That is not a good question to ask. My smart phone is right here.", 0),
    # sycophantic_opener
    ("sycophantic_opener", "Absolutely! Here is the recipe.", 1),
    ("sycophantic_opener", "Great question! The answer is 42.", 1),
    ("sycophantic_opener", "I'd be happy to help. First, preheat the oven.", 1),
    ("sycophantic_opener", "**Sure!** Here you go.", 1),
    ("sycophantic_opener", "Hello! What a fascinating topic.", 1),
    ("sycophantic_opener", "Absolutely not. I won't do that.", 0),
    ("sycophantic_opener", "Sure, here it is.", 0),
    ("sycophantic_opener", "The recipe is great! Absolutely delicious.", 0),
    # question_back
    ("question_back", "Why do you ask? What do you need?? See https://x.com/?q=1 for more.", 2),
    ("question_back", 'She asked "why?" and left.', 1),
    ("question_back", "This is a statement. See https://example.com/search?q=test", 0),
    # exclamation (outside code)
    ("exclamation", "Wow! Great!! Ok", 3),
    ("exclamation", "Use `a != b` here.", 0),
    # emoji: 😊, 👍 with a skin tone, a flag, a ZWJ family, ❤️, a keycap, ©️ with VS16
    (
        "emoji",
        "Great job \U0001f60a\U0001f44d\U0001f3fd \U0001f1eb\U0001f1f7 "
        "\U0001f468\u200d\U0001f469\u200d\U0001f467 \u2764\ufe0f 1\ufe0f\u20e3 "
        "\u00a9\ufe0f",
        7,
    ),
    ("emoji", "\u00a9 2024 Company\u2122. Check \u2713 and \u2192 arrows \u2605", 0),
    # second_person
    ("second_person", "You and your friend did it yourself; it's yours. You're welcome, yourselves.", 6),
    ("second_person", "Young people value their youth.", 0),
]


@pytest.mark.parametrize(("name", "text", "expected"), CASES)
def test_probe_counts_on_handwritten_text(name, text, expected):
    assert measure(name, text) == expected, (name, text)


def test_compute_probes_matches_each_probe_and_uses_token_counts():
    texts = [text for _, text, _ in CASES]
    table = compute_probes(texts)
    assert list(table.columns) == EXPECTED_PROBES
    assert (table.dtypes == np.float32).all()
    assert len(table) == len(texts)
    for i, (name, text, expected) in enumerate(CASES):
        assert table.iloc[i][name] == expected, (name, text)
        # the batched fast path and the public per-text measure agree on every probe
        assert table.iloc[i].tolist() == [PROBES[p].measure(text) for p in EXPECTED_PROBES]

    with_tokens = compute_probes(["a b c", "d"], token_counts=[11, 4])
    assert with_tokens["length_tokens"].tolist() == [11.0, 4.0]
    assert compute_probes(["a b c", "d"])["length_tokens"].tolist() == [3.0, 1.0]
    with pytest.raises(ValueError, match="token_counts"):
        compute_probes(["a", "b"], token_counts=[1])
    empty = compute_probes([])
    assert empty.shape == (0, len(EXPECTED_PROBES))


def test_compute_probes_honours_a_probe_added_to_the_registry(monkeypatch):
    digits = Probe("digits", "Digits.", lambda t: float(sum(map(str.isdigit, t))))
    monkeypatch.setitem(PROBES, "digits", digits)
    monkeypatch.setitem(PROBES, "exclamation", Probe("exclamation", "Replaced.", lambda t: -1.0))
    table = compute_probes(["Call 555-0100!"])
    assert table.columns[-1] == "digits"
    assert table.loc[0, "digits"] == 7
    assert table.loc[0, "exclamation"] == -1


def test_probe_deltas_indexes_by_pair_id():
    pairs = pd.DataFrame(
        {
            "pair_id": ["p1", "p2"],
            "chosen": ["I can't help with that.", "- a\n- b"],
            "rejected": ["Sure! Here is how.", "Plain text"],
        }
    )
    chosen, rejected = probe_deltas(pairs, chosen_tokens=[6, 4], rejected_tokens=[5, 2])
    assert list(chosen.index) == ["p1", "p2"] and chosen.index.name == "pair_id"
    assert list(rejected.index) == ["p1", "p2"]
    delta = chosen - rejected
    assert delta.loc["p1", "refusal"] == 1
    assert delta.loc["p1", "sycophantic_opener"] == -1
    assert delta.loc["p2", "markdown_list"] == 2
    assert delta["length_tokens"].tolist() == [1.0, 2.0]


# ---------------------------------------------------------------------------------------------
# Real data
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hh_probes(hh_dataset):
    return probe_deltas(hh_dataset.pairs)


def _share(frame: pd.DataFrame, *names: str) -> float:
    return float((frame[list(names)].sum(axis=1) > 0).mean())


def test_hh_harmless_prefers_refusing_and_deflecting(hh_probes):
    chosen, rejected = hh_probes
    assert len(chosen) == 2303
    shares = {
        name: (_share(chosen, name), _share(rejected, name))
        for name in ("refusal", "deflection", "apology", "question_back")
    }
    shares["refusal|deflection"] = (_share(chosen, "refusal", "deflection"), _share(rejected, "refusal", "deflection"))
    message = ", ".join(f"{k}: chosen {c:.1%} vs rejected {r:.1%}" for k, (c, r) in shares.items())
    c, r = shares["refusal|deflection"]
    assert c > r + 0.03, message  # measured: 21.2% vs 14.0%
    assert shares["refusal"][0] > shares["refusal"][1], message  # 7.4% vs 3.6%
    assert shares["deflection"][0] > shares["deflection"][1], message  # 14.3% vs 10.7%
    # both probes actually fire on real text, not only on the hand-written cases
    assert (chosen["refusal"] > 0).sum() >= 50 and (chosen["deflection"] > 0).sum() >= 100, message
    # and the pairwise delta points the same way: more pairs where chosen refuses/deflects more
    both = ["refusal", "deflection"]
    delta = chosen[both].sum(axis=1) - rejected[both].sum(axis=1)
    assert (delta > 0).sum() > (delta < 0).sum() * 1.3, message


def test_hh_chosen_responses_are_shorter(hh_probes):
    chosen, rejected = hh_probes
    c, r = chosen["length_tokens"].median(), rejected["length_tokens"].median()
    # word pieces (fallback): 26 vs 34; in whitespace words it is 21 vs 27
    assert c < r, f"median length chosen {c} vs rejected {r}"


def test_llamafactory_demo_rejected_responses_are_more_sycophantic():
    chosen, rejected = probe_deltas(load_preferences(LLAMAFACTORY_FILE).pairs)
    for name in ("sycophantic_opener", "exclamation", "emoji"):
        c, r = _share(chosen, name), _share(rejected, name)
        # measured: openers 9.5% vs 22.0%, "!" 12.5% vs 30.8%, emoji 0.3% vs 3.1%
        assert c < r, f"{name}: chosen {c:.1%} vs rejected {r:.1%}"
    # the demo has real markdown and code, so those probes fire there
    assert (chosen["markdown_list"] > 0).mean() > 0.3
    assert (chosen["code_block"] > 0).sum() >= 10


def test_ten_thousand_responses(hh_dataset):
    """A 10,000-response batch of real text runs through (its time shows in --durations)."""
    pairs = hh_dataset.pairs
    demo = load_preferences(LLAMAFACTORY_FILE).pairs
    texts = (
        pairs["chosen"].tolist() + pairs["rejected"].tolist() + demo["chosen"].tolist() + demo["rejected"].tolist()
    ) * 2
    texts = texts[:10_000]
    table = compute_probes(texts)
    assert table.shape == (10_000, len(EXPECTED_PROBES))
    assert np.isfinite(table.to_numpy()).all()
    assert (table["length_tokens"] > 0).all()


# ---------------------------------------------------------------------------------------------
# Correlations
# ---------------------------------------------------------------------------------------------


def _probe_frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    frame = pd.DataFrame(rng.integers(-3, 4, size=(n, 4)).astype(float), columns=list("abcd"))
    frame["d"] = 2.0  # constant
    return frame


def test_probe_correlations_match_numpy_corrcoef():
    rng = np.random.default_rng(0)
    probes = _probe_frame(rng, 60)
    features = rng.normal(size=(60, 5))
    features[:, 1] = probes["a"] * 3 - 1 + rng.normal(scale=0.1, size=60)
    features[:, 4] = 7.0  # constant
    corr = probe_correlations(features, probes)
    assert corr.shape == (5, 4) and list(corr.columns) == list("abcd")
    for i in range(5):
        for j, name in enumerate(probes.columns):
            if i == 4 or name == "d":
                assert math.isnan(corr.iloc[i, j])
            else:
                expected = np.corrcoef(features[:, i], probes[name])[0, 1]
                assert corr.iloc[i, j] == pytest.approx(expected, abs=1e-12)
    assert corr.iloc[1]["a"] > 0.99


@pytest.mark.parametrize("kind", [sp.csr_matrix, sp.csc_matrix, sp.csr_array, sp.coo_array])
def test_probe_correlations_sparse_equals_dense(kind):
    rng = np.random.default_rng(1)
    probes = _probe_frame(rng, 300)
    dense = sp.random(300, 40, density=0.05, random_state=2, format="csr").toarray() * 5
    dense[:, 3] = 0.0  # an SAE feature that never fires: constant
    dense[:, 7] = 1.5  # constant but non-zero
    dense[:, 9] = np.where(probes["b"] > 0, probes["b"] + 10.0, 0.0)  # large offset, sparse
    corr_dense = probe_correlations(dense, probes)
    corr_sparse = probe_correlations(kind(dense), probes)
    np.testing.assert_allclose(corr_sparse.to_numpy(), corr_dense.to_numpy(), atol=1e-10, equal_nan=True)
    assert corr_sparse.iloc[[3, 7]].isna().all().all()
    assert corr_sparse["d"].isna().all()
    assert corr_sparse.drop(index=[3, 7]).drop(columns="d").notna().all().all()


def test_probe_correlations_does_not_densify_a_large_sparse_matrix():
    rng = np.random.default_rng(3)
    n_pairs, n_features = 2_000, 20_000  # dense float64 would be 320 MB
    features = sp.random(n_pairs, n_features, density=2e-4, random_state=4, format="csr")
    probes = _probe_frame(rng, n_pairs)
    tracemalloc.start()
    try:
        corr = probe_correlations(features, probes)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert corr.shape == (n_features, 4)
    assert peak < 40 * 2**20, f"peak {peak / 2**20:.0f} MiB"


def test_probe_correlations_rejects_misaligned_rows():
    with pytest.raises(ValueError, match="feature_deltas"):
        probe_correlations(np.zeros((5, 2)), pd.DataFrame({"a": np.arange(4.0)}))


def test_nearest_probes_picks_the_largest_absolute_correlation():
    rng = np.random.default_rng(5)
    probes = _probe_frame(rng, 80)
    feature = -2.0 * probes["c"].to_numpy() + rng.normal(scale=0.05, size=80)
    features = np.column_stack([feature, np.full(80, 3.0)])
    names, r = nearest_probes(features, probes)
    assert names[0] == "c"
    assert r[0] == pytest.approx(np.corrcoef(feature, probes["c"])[0, 1])
    assert r[0] < -0.99  # the sign is kept
    assert names[1] == "" and math.isnan(r[1])  # a constant feature has no nearest probe
    sparse_names, sparse_r = nearest_probes(sp.csr_matrix(features), probes)  # sparse input, same answer
    assert list(sparse_names) == list(names) and sparse_r[0] == pytest.approx(r[0])
    names, r = nearest_probes(features, probes[["d"]])
    assert list(names) == ["", ""] and np.isnan(r).all()
