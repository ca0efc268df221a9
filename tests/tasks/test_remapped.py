"""The remapped-label task: arbitrary words for the labels, balanced demonstrations that never
include the query, and the bundled sources read the way their docstrings say."""

from __future__ import annotations

from collections import Counter

import pytest

from spectrum_core.tasks.remapped import (
    LABEL_WORDS,
    SUPPORTED,
    UNSUPPORTED,
    LabelledText,
    build_episodes,
    entailment_items,
    remap_labels,
    support_items,
)
from spectrum_core.tasks.scorers import answer_matches

ITEMS = [LabelledText(f"text {i}", "a" if i % 3 else "b") for i in range(12)]  # 8 of a, 4 of b


def test_labels_get_distinct_words_by_seed_only():
    mapping = remap_labels(["b", "a", "a"], seed=3)
    assert set(mapping) == {"a", "b"} and len(set(mapping.values())) == 2
    assert set(mapping.values()) <= set(LABEL_WORDS)
    assert remap_labels(["a", "b"], seed=3) == mapping  # the order labels come in does not matter
    assert any(remap_labels(["a", "b"], seed=s) != mapping for s in range(10))
    with pytest.raises(ValueError):
        remap_labels([str(i) for i in range(len(LABEL_WORDS) + 1)], seed=0)


def test_episodes_balance_their_demonstrations_and_leave_the_query_out():
    mapping = {"a": "apple", "b": "river"}
    episodes = build_episodes(ITEMS, mapping, n_demos=4, n_episodes=12, seed=0)
    assert sorted(e.query for e in episodes) == sorted(i.text for i in ITEMS)  # every item queried once
    for episode in episodes:
        words = Counter(word for _, word in episode.demonstrations)
        assert words == {"apple": 2, "river": 2}  # even although the items are 2:1
        assert episode.query not in {text for text, _ in episode.demonstrations}
        assert len({text for text, _ in episode.demonstrations}) == 4
        answer = next(mapping[i.label] for i in ITEMS if i.text == episode.query)
        assert episode.answer == answer
    assert build_episodes(ITEMS, mapping, 4, 12, seed=0) == episodes  # seeded
    turns = episodes[0].messages()
    assert [t["role"] for t in turns] == ["user", "assistant"] * 4 + ["user"]
    assert [t["content"] for t in turns[1:8:2]] == [word for _, word in episodes[0].demonstrations]
    assert turns[-1]["content"].endswith(f"Input: {episodes[0].query}\nLabel:")
    assert episodes[0].messages(with_demonstrations=False) == turns[-1:]


def test_a_query_never_sees_its_own_groups_items():
    """One question's supported and unsupported answers share a group: neither demonstrates the other."""
    grouped = [LabelledText(f"q{i // 2} answer {i % 2}", "ab"[i % 2], group=f"q{i // 2}") for i in range(12)]
    episodes = build_episodes(grouped, {"a": "apple", "b": "river"}, 6, 12, seed=1)
    for episode in episodes:
        group = episode.query.split()[0]
        assert all(not text.startswith(group + " ") for text, _ in episode.demonstrations)
    ungrouped = [LabelledText(i.text, i.label) for i in grouped]
    shared = build_episodes(ungrouped, {"a": "apple", "b": "river"}, 6, 12, seed=1)
    assert any(text.split()[0] == e.query.split()[0] for e in shared for text, _ in e.demonstrations)


def test_bundled_sources():
    support = support_items(30, seed=0)
    assert Counter(i.label for i in support) == {SUPPORTED: 30, UNSUPPORTED: 30}
    assert all("Passage:" in i.text and "Answer:" in i.text for i in support)
    assert all(len({i.group for i in support[k : k + 2]}) == 1 for k in range(0, 60, 2))  # a question's two answers
    cut = support_items(30, seed=0, max_passage_chars=120)
    passages = [i.text.split(" Question: ")[0].removeprefix("Passage: ") for i in cut]
    assert all(len(p) <= 120 + 2 for p in passages) and any(p.endswith(" …") for p in passages)
    assert Counter(i.label for i in cut) == {SUPPORTED: 30, UNSUPPORTED: 30}
    # A cut passage still holds its grounded answer (questions whose answer was cut away are skipped).
    grounded = [i for i in cut if i.label == SUPPORTED]
    assert all(answer_matches(i.text.split(" Question: ")[0], i.text.split(" Answer: ")[1]) for i in grounded)
    assert {i.group for i in cut} != {i.group for i in support}  # some questions were skipped for it
    entail = entailment_items("train")
    assert {i.label for i in entail} == {SUPPORTED, UNSUPPORTED} and len(entail) > 50
    assert all(i.text.startswith("Premise:") for i in entail)
