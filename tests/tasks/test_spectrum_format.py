"""The Spectrum format: what is scored and what is not."""

from __future__ import annotations

import pytest

from spectrum_core.tasks.spectrum_format import SpectrumTask, _output_spans, messages_of, render


@pytest.fixture(scope="module")
def tokenizer(bundled_model):
    return bundled_model.tokenizer


def scored_text(tokenizer, example) -> list[str]:
    return [tokenizer.decode([i]) for i, label in zip(example["input_ids"], example["labels"]) if label != -100]


def test_mask_covers_exactly_the_outputs_and_their_end_token(tokenizer):
    task = SpectrumTask(
        "urn", "Balls from an urn with 2 red and 1 blue.", [(None, "red"), (None, "blue"), (None, "red")]
    )
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


# Llama 3's template, shortened: its turns end with <|eot_id|>, while its base tokenizer's
# eos_token is <|end_of_text|>.
LLAMA3_TEMPLATE = (
    "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] }}<|eot_id|>"
    "{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def test_the_end_token_is_the_one_the_template_closes_a_turn_with(tokenizer):
    import copy

    from spectrum_core.tasks.spectrum_format import end_of_turn

    assert end_of_turn(tokenizer) == "<|im_end|>" == tokenizer.eos_token  # SmolLM2: the same token
    llama = copy.deepcopy(tokenizer)
    llama.chat_template = LLAMA3_TEMPLATE
    assert end_of_turn(llama) == "<|eot_id|>" != llama.eos_token
    task = SpectrumTask("urn", "Balls from an urn.", [(None, "red"), (None, "blue")])
    # The outputs are scored with the turn's end, not left ending without it. (Character spans: in
    # this vocabulary <|eot_id|> is several tokens, one of which straddles the span's end.)
    text, spans = _output_spans(llama, messages_of(task))
    assert [text[a:b] for a, b in spans] == ["red<|eot_id|>", "blue<|eot_id|>"]
