"""The model-free task scorers, by hand."""

from __future__ import annotations

import pytest

from spectrum_core.tasks.scorers import BY_NAME, answer_matches, constraints_satisfied, faithfulness, with_constraints


def test_task_scorers_by_hand():
    context = "Arthur's Magazine (1844-1846) was an American literary periodical published in Philadelphia."
    assert faithfulness("Arthur's Magazine was published in Philadelphia.", context) == 1.0
    assert faithfulness("It was published in Boston.", context) == pytest.approx(1 / 2)  # published yes, boston no
    assert faithfulness("", context) == 0.0
    assert answer_matches("I think it was Arthur's Magazine.", "Arthur's Magazine")
    assert not answer_matches("First for Women", "Arthur's Magazine")
    assert constraints_satisfied(
        "why not, because it rains?", ["no_commas", "ends_with_question", "lowercase"]
    ) == pytest.approx(2 / 3)


def test_constraints_follow_the_request():
    asked = with_constraints("Why is the sky blue?", [BY_NAME["no_commas"], BY_NAME["lowercase"]])
    assert asked == "Why is the sky blue?\n\nDo not use any commas. Write the whole answer in lowercase letters."
