"""A single-token classification task with remapped labels, for IA2's benchmark: each input gets
an arbitrary word as its label (a seeded permutation of unrelated words), so what the model knows
about the real labels cannot solve it and only the demonstrations can teach the mapping.

Built from bundled text, offline. The in-distribution task asks whether an answer is supported by
its passage (HaluEval QA: the grounded answer is supported, the hallucinated one is not); the
out-of-distribution variant asks the same of a hypothesis and its premise (AmbiEnt pairs whose
crowd majority is entailment or contradiction), with the same two words for the same two labels.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from .families import ambient_rows
from .halueval import cut_passage, halueval_questions
from .scorers import answer_matches

SUPPORTED, UNSUPPORTED = "supported", "unsupported"
# Candidate label words: common, unrelated to the task, each one token for typical BPE
# vocabularies (the benchmark checks this for the model at hand and refuses otherwise).
LABEL_WORDS = ("apple", "river", "stone", "cloud", "table", "horse")
INSTRUCTION = "Label each input with one word."


@dataclass(frozen=True)
class LabelledText:
    text: str
    label: str
    group: str = ""  # items sharing a group (one question's two answers) never demonstrate each other


@dataclass(frozen=True)
class Episode:
    """k demonstrations (input, word) and a query whose right answer is ``answer``."""

    demonstrations: tuple[tuple[str, str], ...]
    query: str
    answer: str

    def messages(self, with_demonstrations: bool = True) -> list[dict]:
        """The demonstrations as earlier turns (user: an input, assistant: its word), the way IA2
        priming's teacher sees demonstrations, then the query as the last user turn."""
        turns: list[dict] = []
        for text, word in self.demonstrations if with_demonstrations else ():
            turns += [query_turn(text), {"role": "assistant", "content": word}]
        return turns + [query_turn(self.query)]


def query_turn(text: str) -> dict:
    return {"role": "user", "content": f"{INSTRUCTION}\nInput: {text}\nLabel:"}


def remap_labels(labels: list[str], seed: int, words: tuple[str, ...] = LABEL_WORDS) -> dict[str, str]:
    """Each label a different word, by a seeded draw (labels sorted first, so the mapping depends
    only on the label set and the seed)."""
    labels = sorted(set(labels))
    if len(labels) > len(words):
        raise ValueError(f"{len(labels)} labels but only {len(words)} label words")
    return dict(zip(labels, random.Random(seed).sample(list(words), len(labels))))


def build_episodes(
    items: list[LabelledText],
    mapping: dict[str, str],
    n_demos: int,
    n_episodes: int,
    seed: int,
    queries: list[LabelledText] | None = None,
) -> list[Episode]:
    """``n_episodes`` episodes, each query a different item of ``queries`` (default: ``items``)
    in a seeded order, its ``n_demos`` demonstrations drawn from the other ``items`` with the
    labels as even as ``n_demos`` allows (round robin over the labels from a seeded start), then
    shuffled. Held-out queries take their demonstrations from the training items this way."""
    queries = items if queries is None else queries
    if n_episodes > len(queries):
        raise ValueError(f"{n_episodes} episodes need as many queries; there are {len(queries)}")
    rng = random.Random(seed)
    order = list(range(len(queries)))
    rng.shuffle(order)
    by_label: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        by_label.setdefault(item.label, []).append(index)
    labels = sorted(by_label)
    episodes = []
    for position in order[:n_episodes]:
        query = queries[position]
        start = rng.randrange(len(labels))
        chosen: list[int] = []
        for slot in range(n_demos):
            label = labels[(start + slot) % len(labels)]
            pool = [
                i
                for i in by_label[label]
                if items[i].text != query.text
                and i not in chosen
                and not (query.group and items[i].group == query.group)
            ]
            chosen.append(rng.choice(pool))
        rng.shuffle(chosen)
        demos = tuple((items[i].text, mapping[items[i].label]) for i in chosen)
        episodes.append(Episode(demos, query.text, mapping[query.label]))
    return episodes


def support_items(n: int, seed: int, split: str = "train", max_passage_chars: int | None = None) -> list[LabelledText]:
    """In-distribution: HaluEval passages with a question and an answer, supported (grounded) or
    not (hallucinated); ``n`` questions give 2n items, balanced, grouped by question.
    ``max_passage_chars`` cuts long passages at a word boundary (a CPU-sized benchmark); a question
    whose grounded answer the cut passage no longer contains is skipped, so no label is wrong."""
    items: list[LabelledText] = []
    kept = 0
    for question in halueval_questions(10**6, seed, split=split):
        if kept == n:
            break
        passage = cut_passage(question.context, max_passage_chars)
        if passage != question.context and not answer_matches(passage, question.grounded_answer):
            continue
        kept += 1
        for answer, label in ((question.grounded_answer, SUPPORTED), (question.hallucinated_answer, UNSUPPORTED)):
            if answer:
                text = f"Passage: {passage} Question: {question.question} Answer: {answer}"
                items.append(LabelledText(text, label, group=question.question))
    if kept < n:
        raise ValueError(
            f"only {kept} HaluEval {split} questions keep their answer within {max_passage_chars} characters"
        )
    return items


def entailment_items(split: str = "train") -> list[LabelledText]:
    """Out of distribution: AmbiEnt premise and hypothesis pairs whose annotators' majority is
    entailment (supported) or contradiction (unsupported); neutral and tied pairs are left out."""
    items = []
    for row in ambient_rows(split):
        votes = Counter(row.get("q0_label_counts") or {})  # nine annotators on the pair as written
        if not votes:
            continue
        (top, count), *rest = votes.most_common()
        if rest and rest[0][1] == count or top not in ("entailment", "contradiction"):
            continue
        label = SUPPORTED if top == "entailment" else UNSUPPORTED
        items.append(LabelledText(f"Premise: {row['premise']} Hypothesis: {row['hypothesis']}", label))
    return items
