"""Model-based metrics with a model whose probabilities are known: it gives every token of the
vocabulary the same probability, so an output of k tokens has loss exactly k·ln V."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from spectrum_core.metrics import alignment, steerability
from spectrum_core.tasks.spectrum_format import SpectrumTask, render_outputs


class UniformModel(torch.nn.Module):
    def __init__(self, vocab_size: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=torch.zeros(*input_ids.shape, self.vocab_size))


@pytest.fixture(scope="module")
def tokenizer(bundled_model):
    return bundled_model.tokenizer


def tokens_of(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"]) + 1  # + the end-of-turn token


def test_loss_of_each_output_given_earlier_samples(tokenizer):
    vocab = len(tokenizer)
    model = UniformModel(vocab)
    outputs = ["red", "blue", "red", "green"]
    tasks = [
        SpectrumTask(
            "urn", "Balls drawn from an urn.", [(None, o) for o in outputs], {"red": 0.5, "blue": 0.25, "green": 0.25}
        ),
        SpectrumTask("coin", None, [(None, "heads"), (None, "tails")], {"heads": 0.9, "tails": 0.1}),
    ]
    losses, calibration = steerability.output_losses(model, tokenizer, tasks)
    expected = [tokens_of(tokenizer, o) * math.log(vocab) for o in outputs + ["heads", "tails"]]
    assert losses["loss"].tolist() == pytest.approx(expected, rel=1e-5)
    assert losses["i"].tolist() == [0, 1, 2, 3, 0, 1]
    assert losses["ideal_loss"].tolist() == pytest.approx([-math.log(p) for p in (0.5, 0.25, 0.5, 0.25, 0.9, 0.1)])
    summary = steerability.summarise(losses, calibration)
    later = [e for e, i in zip(expected, [0, 1, 2, 3, 0, 1]) if i >= 1]
    assert summary["loss_ge1"] == pytest.approx(np.mean(later), rel=1e-5)
    assert summary["loss_first"] == pytest.approx(np.mean([expected[0], expected[4]]), rel=1e-5)
    assert [row["i"] for row in summary["curve"]] == [0, 1, 2, 3]
    # every token has confidence 1/V; the top choice (token 0) is never the output's token
    assert summary["calibration_error"] == pytest.approx(1 / vocab, rel=1e-4)


def test_an_output_cut_by_the_length_limit_is_left_out(tokenizer):
    task = SpectrumTask("urn", "Balls drawn from an urn.", [(None, "red")] * 30, {"red": 1.0})
    full = len(render_outputs(tokenizer, task)["input_ids"])  # ends "<|im_end|>" "\n"
    model = UniformModel(len(tokenizer))
    kept, _ = steerability.output_losses(model, tokenizer, [task], max_length=full - 1)
    assert kept["i"].max() == 29  # only the newline after the last turn was cut
    cut, _ = steerability.output_losses(model, tokenizer, [task], max_length=full - 2)
    assert cut["i"].max() == 28  # the last output lost its end token: not scored


def test_option_distribution_renormalises_teacher_forced_scores(tokenizer):
    vocab = len(tokenizer)
    options = ["agree", "disagree", "pass"]
    probs, mass = alignment.option_distributions(UniformModel(vocab), tokenizer, ["A statement."], options)
    lengths = np.array([tokens_of(tokenizer, o) for o in options])
    expected = np.exp(-lengths * math.log(vocab))
    assert probs[0] == pytest.approx(expected / expected.sum(), rel=1e-4)
    assert mass[0] == pytest.approx(expected.sum(), rel=1e-4)


def test_polis_alignment_by_statement_and_opinion_group(tokenizer):
    row = {
        "conversation": "c",
        "comment_id": 1,
        "topic": "parks",
        "comment": "More parks.",
        "n_votes": 20,
        "dist": {"agree": 0.5, "disagree": 0.25, "pass": 0.25},
        "by_opinion_group": {
            "0": {"agree": 9, "disagree": 1},
            "1": {"disagree": 2, "pass": 1},
            "unclustered": {"agree": 7},
        },
    }
    table = alignment.polis_alignment(UniformModel(len(tokenizer)), tokenizer, [row])
    assert table["group"].tolist() == ["all", "group 0"]  # group 1 has < 5 votes; unclustered is no group
    model = np.array(table["model_dist"].iloc[0])
    assert table["js"].iloc[0] == pytest.approx(
        alignment.compare_distributions(model, [0.5, 0.25, 0.25])["js"], abs=1e-4
    )
    summary = alignment.summarise(table)["polis"]
    assert summary["items"] == 1 and summary["js_closest_group"] == pytest.approx(table["js"].iloc[1])
