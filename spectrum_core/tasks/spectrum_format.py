"""The Spectrum format: a task is an optional description turn followed by input / output turns of
i.i.d. samples from one distribution, with the loss on the output contents and their end token.

Rendering uses the model's own chat template: the description is the system turn, each sample's
input is a user turn ("Another sample." when a task has no inputs) and its output an assistant
turn. The loss mask covers exactly each assistant turn's content and the end-of-turn token after
it (the one the template closes the turn with, ``end_of_turn``); the first output is left unscored when a task has neither a description nor inputs (nothing
could predict it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

NO_INPUT = "Another sample."


@dataclass
class SpectrumTask:
    family: str
    description: str | None
    samples: list[tuple[str | None, str]] = field(default_factory=list)  # (input or None, output)
    distribution: dict[str, float] | None = None  # the distribution the outputs were drawn from, when known


def sample_prompt(description: str) -> list[dict]:
    """A task's first sample asked for: its description and the no-input turn, as Spectrum
    Tuning trains (the prompt of the distributional and yield metrics, for every model alike)."""
    return [{"role": "system", "content": description}, {"role": "user", "content": NO_INPUT}]


# A string no template rewrites, to find what a template puts after an assistant turn's content.
_CONTENT_MARK = "Zq7xSPECTRUMxq7Z"


def end_of_turn(tokenizer) -> str:
    """The text the chat template closes an assistant turn with: the token a model emits to end
    an output (``<|im_end|>`` for SmolLM2, ``<|eot_id|>`` for Llama 3, ``<end_of_turn>`` for
    Gemma), which is not always the tokenizer's ``eos_token`` (Llama 3's and Gemma's base
    tokenizers end documents with another). The ``eos_token`` when the template adds nothing."""
    messages = [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": _CONTENT_MARK}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    closing = text.split(_CONTENT_MARK, 1)[1].split() if _CONTENT_MARK in text else []
    return closing[0] if closing else tokenizer.eos_token or ""


def messages_of(task: SpectrumTask) -> list[dict]:
    messages = [{"role": "system", "content": task.description}] if task.description else []
    for given, output in task.samples:
        messages.append({"role": "user", "content": given if given is not None else NO_INPUT})
        messages.append({"role": "assistant", "content": output})
    return messages


def _output_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered text and each assistant turn's character span (content and end-of-turn token)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    end_token = end_of_turn(tokenizer)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prefix = tokenizer.apply_chat_template(messages[:index], tokenize=False, add_generation_prompt=True)
        if not text.startswith(prefix):
            raise ValueError(
                "the chat template does not render a conversation as a prefix of its extension; "
                "Spectrum tuning needs one that does"
            )
        start = len(prefix)
        end = start + len(message["content"])
        if end_token and text.startswith(end_token, end):
            end += len(end_token)
        spans.append((start, end))
    return text, spans


def render_outputs(tokenizer, task: SpectrumTask, max_length: int | None = None) -> dict:
    """``input_ids`` and ``output_index``: for each token, the index of the sample whose output
    (content and end token) it belongs to, or −1."""
    text, spans = _output_spans(tokenizer, messages_of(task))
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    owners = []
    for a, b in encoded["offset_mapping"]:
        owners.append(next((i for i, (s, e) in enumerate(spans) if a < e and b > s), -1))
    ids = encoded["input_ids"]
    if max_length is not None:
        ids, owners = ids[:max_length], owners[:max_length]
    return {"input_ids": ids, "output_index": owners}


def render(tokenizer, task: SpectrumTask, max_length: int | None = None) -> dict:
    """``input_ids`` and ``labels`` (−100 outside the scored output spans)."""
    rendered = render_outputs(tokenizer, task, max_length)
    skip_first = task.description is None and all(given is None for given, _ in task.samples)
    labels = [
        token_id if index >= (1 if skip_first else 0) else -100
        for token_id, index in zip(rendered["input_ids"], rendered["output_index"])
    ]
    return {"input_ids": rendered["input_ids"], "labels": labels}
