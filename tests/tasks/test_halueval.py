"""The bundled HaluEval questions: asked with their passage, in a seeded order, the evaluation quarter apart."""

from __future__ import annotations

from spectrum_core.tasks.halueval import halueval_questions


def test_questions_come_with_their_passage_and_keep_the_evaluation_quarter_apart():
    train, held = halueval_questions(500, seed=0), halueval_questions(500, seed=0, split="eval")
    assert len(train) + len(held) == 500 and 0.2 < len(held) / 500 < 0.3
    assert not {q.question for q in train} & {q.question for q in held}
    assert halueval_questions(3, seed=0, offset=2, split="eval") == held[2:5]
    asked = held[0].messages[0]["content"]
    assert asked.startswith("Answer the question using only the passage below.")
    assert held[0].context in asked and asked.endswith(f"Question: {held[0].question}")
