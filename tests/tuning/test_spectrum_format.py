"""The Spectrum format: what is scored, what is not, and the task families from the bundled data."""

from __future__ import annotations

import pytest

from spectrum_core.tuning.config import SpectrumRunConfig
from spectrum_core.tuning.runs import spectrum_examples
from spectrum_core.tuning.spectrum_format import FAMILIES, SpectrumTask, build_mixture, render


@pytest.fixture(scope="module")
def tokenizer(bundled_model):
    return bundled_model.tokenizer


def scored_text(tokenizer, example) -> list[str]:
    return [tokenizer.decode([i]) for i, label in zip(example["input_ids"], example["labels"]) if label != -100]


def test_mask_covers_exactly_the_outputs_and_their_end_token(tokenizer):
    task = SpectrumTask("urn", "Balls from an urn with 2 red and 1 blue.", [(None, "red"), (None, "blue"), (None, "red")])
    example = render(tokenizer, task)
    assert "".join(scored_text(tokenizer, example)) == "red<|im_end|>blue<|im_end|>red<|im_end|>"
    # Everything else, the description, the user turns and the role markers included, is unscored.
    unscored = tokenizer.decode([i for i, label in zip(example["input_ids"], example["labels"]) if label == -100])
    assert "Balls from an urn" in unscored and "Another sample." in unscored
    assert unscored.count("assistant\n\n") == 3  # each output (and its end token) cut out


def test_first_output_is_unscored_without_a_description_or_inputs(tokenizer):
    bare = render(tokenizer, SpectrumTask("categorical", None, [(None, "abc"), (None, "xyz")]))
    assert "".join(scored_text(tokenizer, bare)) == "xyz<|im_end|>"
    with_input = render(tokenizer, SpectrumTask("chat", None, [("Say hi", "hi")]))
    assert "".join(scored_text(tokenizer, with_input)) == "hi<|im_end|>"


def test_every_family_builds_from_the_bundled_data():
    records = [{"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "a"}],
                "weight": 1.0}]
    tasks = build_mixture(FAMILIES, tasks_per_family=3, samples_per_task=5, seed=0, chat_records=records)
    assert {t.family for t in tasks} == set(FAMILIES)
    polis = next(t for t in tasks if t.family == "polis")
    assert {o for _, o in polis.samples} <= {"agree", "disagree", "pass"} and len(polis.samples) == 5
    ambient = next(t for t in tasks if t.family == "ambient")
    assert {o for _, o in ambient.samples} <= {"entailment", "neutral", "contradiction"}
    assert build_mixture(("coin",), 4, 6, seed=3)[0].samples == build_mixture(("coin",), 4, 6, seed=3)[0].samples
    # Every prompt of a family can be drawn (the open-ended ones without a valid set are skipped).
    diffuse = build_mixture(("diffuse",), 300, 2, seed=0)
    assert len(diffuse) == 300 and all(o.startswith("{") for t in diffuse for _, o in t.samples)


def test_held_out_families_stay_out_of_training(tokenizer):
    config = SpectrumRunConfig(families="polis,ambient,coin", held_out_families="ambient", tasks_per_family=4)
    examples, held_out = spectrum_examples(config, [], tokenizer)
    assert len(examples) == 8 and {t.family for t in held_out} == {"ambient"}
    assert all("Annotators' labels" not in tokenizer.decode(e["input_ids"]) for e in examples)
