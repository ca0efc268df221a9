"""The predictors without the SAE: length alone and a bag of words, on hand-made pairs."""

from __future__ import annotations

import numpy as np
import pytest

from spectrum_core.metrics.baselines import length_parts, word_counts, word_deltas
from spectrum_core.metrics.prediction import every_prediction

WORDS = "the a of answer help please thanks idea plan note fact step".split()


def _pairs(n: int, seed: int):
    """Texts of random filler words; "sorry" in a random subset of chosen and rejected answers."""
    rng = np.random.default_rng(seed)

    def text(sorry: bool) -> str:
        words = list(rng.choice(WORDS, size=rng.integers(5, 30)))
        return " ".join(words + (["sorry"] if sorry else []))

    chosen_sorry, rejected_sorry = rng.random(n) < 0.6, rng.random(n) < 0.3
    chosen = [text(s) for s in chosen_sorry]
    rejected = [text(s) for s in rejected_sorry]
    return chosen, rejected, chosen_sorry.astype(float) - rejected_sorry.astype(float), rng


def test_word_counts_and_length_parts():
    assert word_counts(["a b  c", "", "one"]).tolist() == [3.0, 0.0, 1.0]
    length = np.array([3.0, -1.0, 0.0, 2.0, -4.0])
    rest = np.array([1.0, 1.0, -1.0, 0.0, -1.0])
    rest = rest - (rest - rest.mean()) @ (length - length.mean()) / ((length - length.mean()) ** 2).sum() * length
    deltas = np.column_stack([2 * length + rest, rest])
    explained, left = length_parts(deltas, length)
    np.testing.assert_allclose(explained[:, 0], 2 * length, atol=1e-12)
    np.testing.assert_allclose(left, np.column_stack([rest, rest]), atol=1e-12)


def test_the_bag_of_words_reads_a_word_concept_and_not_a_wordless_one():
    chosen, rejected, sorry, rng = _pairs(400, 0)
    wordless = rng.normal(size=400)
    predicted = word_deltas(np.column_stack([sorry, wordless]), chosen, rejected, seed=0)
    assert np.corrcoef(predicted[:, 0], sorry)[0, 1] > 0.9  # out of fold, still the word
    assert abs(np.corrcoef(predicted[:, 1], wordless)[0, 1]) < 0.2  # nothing in the words to find
    again = word_deltas(np.column_stack([sorry, wordless]), chosen, rejected, seed=0)
    np.testing.assert_array_equal(predicted, again)


def test_a_concept_that_is_length_is_predicted_by_length_and_nothing_is_left_without_it():
    chosen, rejected, sorry, _ = _pairs(300, 1)
    length = word_counts(chosen) - word_counts(rejected)
    deltas = np.column_stack([0.5 * length, sorry])
    training = (np.arange(300), np.ones(300), np.zeros(300, dtype=bool))
    out = every_prediction(deltas, training, chosen, rejected, seed=0)
    assert out["predicted_length"][0] == pytest.approx(out["predicted"][0])
    assert out["predicted_without_length"][0] == pytest.approx(0.0, abs=1e-9)
    # "sorry" is not length: length alone predicts little of it, the words most of it
    assert abs(out["predicted_length"][1]) < 0.2 * abs(out["predicted"][1])
    assert out["predicted_words"][1] == pytest.approx(out["predicted"][1], rel=0.25)
