"""HaluEval QA questions with the passage that grounds their answer: asked with the passage they test
faithfulness to a context (ReSet's context prompts, the evaluation's grounded questions); asked
without it they carry checkable constraints instead. The evaluation quarter (by a hash of the
question, as for the Spectrum families) is never trained on."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from ..bundled import HALUEVAL_QA, bundled_file
from .eval_split import in_split

CONTEXT_INSTRUCTION = "Answer the question using only the passage below.\n\nPassage: {context}\n\nQuestion: {question}"


@dataclass(frozen=True)
class HaluEvalQuestion:
    question: str
    context: str  # the knowledge passage
    grounded_answer: str
    hallucinated_answer: str = ""  # HaluEval's plausible but unsupported answer

    @property
    def messages(self) -> list[dict]:
        """The question asked with its passage, as one user turn."""
        return [{"role": "user", "content": CONTEXT_INSTRUCTION.format(context=self.context, question=self.question)}]


def cut_passage(passage: str, max_chars: int | None) -> str:
    """``passage`` cut at a word boundary to at most ``max_chars`` (and an ellipsis); CPU-sized
    benchmarks use it, and check that the answer survived."""
    if max_chars is None or len(passage) <= max_chars:
        return passage
    return passage[:max_chars].rsplit(" ", 1)[0] + " …"


def halueval_questions(n: int, seed: int, *, offset: int = 0, split: str = "train") -> list[HaluEvalQuestion]:
    """``n`` HaluEval QA items of the split in a seeded order, from ``offset`` on."""
    rows = [json.loads(line) for line in open(bundled_file(HALUEVAL_QA), encoding="utf-8")]
    rows = [r for r in rows if in_split(f"halueval:{r['question']}", split)]
    random.Random(seed).shuffle(rows)
    return [
        HaluEvalQuestion(r["question"], r["context"], r["grounded_answer"], r.get("hallucinated_answer_one_turn", ""))
        for r in rows[offset : offset + n]
    ]
