"""Task scorers that need no model: faithfulness of an answer to its context, and checkable
instruction constraints (IFEval-style), each returning a value in [0, 1]."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

_WORD = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset(
    """a an the and or but if then than of to in on at by for with from as is are was were be been
being it its this that these those there here he she they them his her their we you your i me my our not no yes do
does did so such can could would should will may might must have has had what which who whom whose when where why
how all any some one two also just about into over under more most very""".split()
)


def content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if len(w) > 2 and w not in STOPWORDS]


def faithfulness(answer: str, context: str) -> float:
    """Share of the answer's content words that the context contains (1 when it adds nothing the
    context does not support; 0 for an answer with no content words)."""
    words = content_words(answer)
    if not words:
        return 0.0
    known = set(_WORD.findall(context.lower()))
    return sum(w in known for w in words) / len(words)


def answer_matches(answer: str, reference: str) -> bool:
    """The reference answer's content words all appear in the answer (case-insensitive)."""
    needed = content_words(reference) or _WORD.findall(reference.lower())
    found = set(_WORD.findall(answer.lower()))
    return bool(needed) and all(w in found for w in needed)


@dataclass(frozen=True)
class Constraint:
    name: str
    instruction: str
    check: Callable[[str], bool]


def _sentences(text: str) -> int:
    return len([s for s in re.split(r"[.!?]+", text) if s.strip()])


CONSTRAINTS = (
    Constraint("max_words_40", "Answer in at most 40 words.", lambda t: len(t.split()) <= 40),
    Constraint("no_commas", "Do not use any commas.", lambda t: "," not in t),
    Constraint("lowercase", "Write the whole answer in lowercase letters.", lambda t: t == t.lower()),
    Constraint("ends_with_question", "End your answer with a question.", lambda t: t.strip().endswith("?")),
    Constraint("word_because", 'Use the word "because" at least once.', lambda t: "because" in t.lower()),
    Constraint("three_sentences", "Use at least three sentences.", lambda t: _sentences(t) >= 3),
)
BY_NAME = {c.name: c for c in CONSTRAINTS}


def pick_constraints(rng: random.Random, n: int = 2) -> list[Constraint]:
    return rng.sample(CONSTRAINTS, n)


def with_constraints(request: str, constraints: list[Constraint]) -> str:
    """The request followed by the constraints' instructions, as both training and evaluation ask it."""
    return request + "\n\n" + " ".join(c.instruction for c in constraints)


def constraints_satisfied(text: str, names: list[str]) -> float:
    if not names:
        return 0.0
    return sum(BY_NAME[n].check(text) for n in names) / len(names)
