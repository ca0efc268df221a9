"""Spectrum tuning's training examples: a held-out family is never trained on."""

from __future__ import annotations

import pytest

from spectrum_core.tuning.config import SpectrumRunConfig
from spectrum_core.tuning.trainers import spectrum_examples


@pytest.fixture(scope="module")
def tokenizer(bundled_model):
    return bundled_model.tokenizer


def test_held_out_families_stay_out_of_training(tokenizer):
    config = SpectrumRunConfig(families="polis,ambient,coin", held_out_families="ambient", tasks_per_family=4)
    examples, held_out = spectrum_examples(config, [], tokenizer)
    assert len(examples) == 8 and {t.family for t in held_out} == {"ambient"}
    assert all("Annotators' labels" not in tokenizer.decode(e["input_ids"]) for e in examples)
